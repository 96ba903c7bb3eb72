"""Reflinks: a copy of a file that shares its blocks, made without reading them (FICLONE).

XFS (made with reflink=1), btrfs, bcachefs and a few others clone a whole file in one ioctl,
in about the time of a `stat`, whatever its size; the copy is a file of its own (a later write
to either side copies the blocks it touches), and the clone is taken under the source's inode
lock, so it is one consistent state of the file even while another process writes it. ext4,
tmpfs and overlayfs do not have it: the ioctl fails at once and the caller copies instead.
"""

from __future__ import annotations

import errno
import fcntl

FICLONE = 0x40049409
"""_IOW(0x94, 9, int), from linux/fs.h."""

# What a file system or a pair of files without reflinks answers: then copy the bytes.
_NOT_HERE = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EPERM}


def clone_file(src_fd: int, dst_fd: int) -> bool:
    """Make the (empty) file `dst_fd` a reflink of `src_fd`; False when the file system cannot
    (the caller then copies the bytes). Other errors (a full disk, an I/O error) raise OSError."""
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as exc:
        if exc.errno in _NOT_HERE:
            return False
        raise
    return True

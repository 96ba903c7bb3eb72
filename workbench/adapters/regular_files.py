"""Reading a file the host does not trust, and hashing it.

What the host reads on a stage's behalf (its outputs, the JSON files of the stage protocol, a
model file on its way to deploy or MLflow) is never followed anywhere: only a regular file is
opened (a symlink to a root-only file or to /dev/zero is refused, not read, and a FIFO or
device is never opened at all), and no more is read than the size fstat saw.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.errors import WorkbenchError

CHUNK = 1024 * 1024
JSON_FILE_CAP = 64 * 1024**2
"""The most the host reads of a JSON file a stage wrote (metrics, params, artifacts, reports)."""
# O_NONBLOCK: opening a FIFO for reading must not wait for a writer before fstat can refuse it.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class FileEntry:
    path: str
    """Relative to the project, with forward slashes."""
    sha256: str
    size: int


class NotRegularFile(WorkbenchError):
    """A path the host was about to read is not a regular file it may read: a symlink, device,
    FIFO or socket (or, for read_regular_bytes, larger than its cap)."""


def file_kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def open_regular(path: Path | str, *, follow: bool = False, dir_fd: int | None = None) -> tuple[int, os.stat_result]:
    """An fd for reading a regular file, and its fstat; NotRegularFile for anything else.

    lstat first, so a device is never opened (opening one can have effects of its own); then
    open without blocking and, unless `follow`, without following a final symlink, and fstat
    the fd, so a path swapped between the two calls is caught rather than read."""
    seen = os.stat(path, dir_fd=dir_fd, follow_symlinks=follow)
    if not stat.S_ISREG(seen.st_mode):
        raise NotRegularFile(f"{path} is {file_kind(seen.st_mode)}, not a regular file")
    flags = _READ_FLAGS | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(f"{path} is a symbolic link, not a regular file") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino):
        os.close(fd)
        raise NotRegularFile(f"{path} was replaced while it was being opened ({file_kind(st.st_mode)})")
    return fd, st


def read_fd(fd: int, limit: int, sink) -> int:
    """Feed at most `limit` bytes of fd to `sink`; the bytes read. The limit is the size fstat
    saw: a file that grows while it is read is not followed beyond that."""
    done = 0
    while done < limit:
        chunk = os.read(fd, min(CHUNK, limit - done))
        if not chunk:
            break
        sink(chunk)
        done += len(chunk)
    return done


def read_regular_bytes(path: Path | str, cap: int) -> bytes:
    """A small regular file's bytes, never following a symlink; NotRegularFile if it is not one
    or holds more than `cap` bytes (the protocol's JSON files are small)."""
    fd, st = open_regular(path)
    try:
        if st.st_size > cap:
            raise NotRegularFile(f"{path} holds {st.st_size} bytes, more than the {cap} allowed")
        parts: list[bytes] = []
        read_fd(fd, st.st_size, parts.append)
        return b"".join(parts)
    finally:
        os.close(fd)


def read_protocol_json(path: Path | str) -> Any:
    """A JSON file a stage wrote (metrics, params, artifacts, a report), read as
    read_regular_bytes reads it, up to JSON_FILE_CAP. Raises NotRegularFile, OSError, or
    ValueError (UnicodeDecodeError among them) for a file that cannot be read as JSON."""
    return json.loads(read_regular_bytes(path, JSON_FILE_CAP))


def hash_file(path: Path, *, follow: bool = True) -> str:
    """sha256 of a regular file (following a symlink to one, unless not `follow`: a model file
    on its way out is hashed as it is, and a symlink in its place refused); NotRegularFile for
    a FIFO or device, which would otherwise block or never end. Reads no more than the size it saw."""
    fd, st = open_regular(path, follow=follow)
    digest = hashlib.sha256()
    try:
        read_fd(fd, st.st_size, digest.update)
    finally:
        os.close(fd)
    return digest.hexdigest()

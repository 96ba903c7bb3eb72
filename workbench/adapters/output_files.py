"""Reading what a stage wrote, without following anything it left in its output folder.

A stage's outputs must be regular files of their own: symlinks (to files or folders), devices,
FIFOs, sockets and files hard-linked from outside are reported, never opened, and reads are
bounded by the sizes fstat saw and by the caps below, so a stage cannot make the host read a
root-only file, /dev/zero or more than it meant to.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from workbench.adapters.regular_files import FileEntry, NotRegularFile, file_kind, open_regular, read_fd
from workbench.core.planning import tree_digest

OUTPUT_BYTES_CAP = 16 * 1024**3
"""The most a stage's outputs may hold: the host reads (hashes) all of them after the stage."""
OUTPUT_FILES_CAP = 100_000
OUTPUT_DEPTH_CAP = 64
OUTPUT_FILE_MODE = 0o444
OUTPUT_DIR_MODE = 0o555
"""Recorded outputs are read-only, and their folders closed to new files: what a run recorded
cannot change afterwards. Other users still read them (stage containers run as `nobody`, and
read upstream outputs through their bind mounts); the state folder (0700) keeps out the rest."""


@dataclass
class OutputTree:
    files: dict[str, FileEntry]
    """The regular files, by path relative to the folder."""
    problems: list[str]
    """Everything that is not a regular file of its own (named), or over a cap."""

    @property
    def digest(self) -> str:
        return tree_digest({p: f.sha256 for p, f in self.files.items()})


def read_outputs(root: Path, lock: bool = False) -> OutputTree:
    """Hash a stage's output folder without following anything in it.

    Symlinks (to files or folders), devices, FIFOs and sockets are reported, never opened, and
    so is a file with hard links outside the folder (it would change when they do). Reads are
    bounded by the sizes fstat saw and by OUTPUT_BYTES_CAP. `lock`: first make each file
    read-only (OUTPUT_FILE_MODE) and each folder closed (OUTPUT_DIR_MODE), owned by the
    workbench's user, so a process the stage left behind cannot change what is recorded."""
    return read_tree(root, lock=lock)


def read_tree(root: Path, lock: bool = False, shared_links: bool = False) -> OutputTree:
    """read_outputs; `shared_links` accepts files hard-linked elsewhere (a snapshot's objects)."""
    tree = OutputTree({}, [])
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return tree  # no folder, no outputs: declared ones are then missing
    except OSError as exc:
        tree.problems.append(f"the output folder {root} cannot be read ({exc.strerror or exc})")
        return tree
    walker = _TreeReader(tree, lock, shared_links)
    try:
        walker.folder(root_fd, "", 0)
    finally:
        os.close(root_fd)
    walker.check_links()
    tree.files = dict(sorted(tree.files.items()))
    return tree


class _TreeReader:
    """One pass over a folder through directory fds (openat), so a folder swapped for a
    symlink while it is read is not followed either."""

    def __init__(self, tree: OutputTree, lock: bool, shared_links: bool):
        self.tree, self.lock, self.shared_links = tree, lock, shared_links
        self.budget = OUTPUT_BYTES_CAP
        self.count = 0
        self.links: dict[tuple[int, int], tuple[int, list[str]]] = {}
        """(dev, inode) -> (st_nlink, the names it has in the folder)"""
        self.owner = (os.getuid(), os.getgid())

    def problem(self, text: str) -> None:
        self.tree.problems.append(text)

    def _lock(self, fd: int, mode: int) -> None:
        st = os.fstat(fd)
        if os.getuid() == 0 and (st.st_uid, st.st_gid) != self.owner:
            os.fchown(fd, *self.owner)  # written as `nobody` in a container: take it back
        os.fchmod(fd, mode)

    def folder(self, fd: int, prefix: str, depth: int) -> None:
        if depth > OUTPUT_DEPTH_CAP:
            self.problem(f"{prefix or '.'} is nested more than {OUTPUT_DEPTH_CAP} folders deep")
            return
        if self.lock:
            try:
                self._lock(fd, OUTPUT_DIR_MODE)  # first, so nothing is added while it is read
            except OSError as exc:
                self.problem(f"cannot make {prefix or 'the output folder'} read-only: {exc.strerror or exc}")
        try:
            names = sorted(os.listdir(fd))
        except OSError as exc:
            self.problem(f"cannot list {prefix or 'the output folder'}: {exc.strerror or exc}")
            return
        for name in names:
            rel = prefix + name
            self.count += 1
            if self.count > OUTPUT_FILES_CAP:
                self.problem(f"more than {OUTPUT_FILES_CAP} files and folders; the rest were not read")
                return
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                try:
                    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except OSError as exc:
                    self.problem(f"{rel} cannot be read ({exc.strerror or exc})")
                    continue
                try:
                    self.folder(sub, rel + "/", depth + 1)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(st.st_mode):
                self.file(fd, name, rel)
            elif stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(name, dir_fd=fd)
                except OSError:
                    target = "?"
                self.problem(f"{rel} is a symbolic link (to {target}); outputs must be regular files")
            else:
                self.problem(f"{rel} is {file_kind(st.st_mode)}; outputs must be regular files")

    def file(self, dir_fd: int, name: str, rel: str) -> None:
        try:
            fd, st = open_regular(name, dir_fd=dir_fd)
        except NotRegularFile:
            self.problem(f"{rel} was replaced by something that is not a regular file while it was read")
            return
        except OSError as exc:
            self.problem(f"{rel} cannot be read ({exc.strerror or exc})")
            return
        try:
            if self.lock:
                self._lock(fd, OUTPUT_FILE_MODE)
            if st.st_size > self.budget:
                self.problem(f"{rel} ({st.st_size} bytes) takes the outputs over the "
                             f"{OUTPUT_BYTES_CAP // 1024**3} GiB the workbench reads")
                return
            digest = hashlib.sha256()
            size = read_fd(fd, st.st_size, digest.update)
            self.budget -= size
        except OSError as exc:
            self.problem(f"{rel} cannot be read ({exc.strerror or exc})")
            return
        finally:
            os.close(fd)
        self.tree.files[rel] = FileEntry(rel, digest.hexdigest(), size)
        if st.st_nlink > 1:
            self.links.setdefault((st.st_dev, st.st_ino), (st.st_nlink, []))[1].append(rel)

    def check_links(self) -> None:
        """A hard link is refused unless all its names are in the folder: the others could be
        anywhere the stage could reach, and would change the recorded file with theirs."""
        if self.shared_links:
            return
        for nlink, names in self.links.values():
            if len(names) < nlink:
                for rel in names:
                    self.tree.files.pop(rel, None)
                self.problem(f"{names[0]} is a hard link to a file outside the output folder ({nlink} links); "
                             "outputs must be files of their own")

"""A warm worker's control folder: private to the workbench process that started the worker.

`<state>/workers/<key>-<pid>-<token>/` holds
  owner.lock   locked (flock) by the owning process for as long as it lives
  sock/        where the host listens for the worker's one connection (read-only in the container)
  slot/        the stage's folders (worker_slot.py)

Every process gets its own folder, so a CLI run beside a watch or the TUI never replaces the
other's worker. A folder whose lock nobody holds belongs to a process that died (flock is
released by the kernel, in any PID namespace), so it is removed; a live owner's folder never is.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import socket
from pathlib import Path

from workbench.adapters.worker_slot import NOBODY, WorkerSlot

LOCK_NAME = "owner.lock"
SOCKET_NAME = "host.sock"


class ControlFolder:
    def __init__(self, path: Path, lock_fd: int):
        self.path = path
        self._lock_fd = lock_fd
        self.socket_dir = path / "sock"
        self.slot = WorkerSlot(path / "slot")

    @classmethod
    def create(cls, workers_dir: Path, key_short: str) -> "ControlFolder":
        """A new folder, locked before it gets its final name, so no other process can see it
        unlocked and take it for abandoned."""
        workers_dir.mkdir(parents=True, exist_ok=True)
        remove_abandoned(workers_dir)
        token = secrets.token_hex(4)
        draft = workers_dir / f".new-{os.getpid()}-{token}"
        draft.mkdir(mode=0o755)
        fd = os.open(draft / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        (draft / "sock").mkdir(mode=0o755)
        final = workers_dir / f"{key_short}-{os.getpid()}-{token}"
        os.rename(draft, final)
        folder = cls(final, fd)
        folder.slot.create()
        return folder

    def listen(self) -> socket.socket:
        """The socket the worker connects to once. Bound through the folder's descriptor: the
        full path of a deep workspace would exceed the 108 bytes a socket address allows."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dir_fd = os.open(self.socket_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            listener.bind(f"/proc/self/fd/{dir_fd}/{SOCKET_NAME}")
        finally:
            os.close(dir_fd)
        socket_path = self.socket_dir / SOCKET_NAME
        os.chmod(socket_path, 0o600)
        if os.getuid() == 0:
            os.chown(socket_path, *NOBODY)  # the worker runs as nobody; connecting needs write access
        listener.listen(1)
        return listener

    def stop_listening(self, listener: socket.socket) -> None:
        listener.close()
        (self.socket_dir / SOCKET_NAME).unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def remove_abandoned(workers_dir: Path) -> None:
    """Remove the control folders of workbench processes that are gone."""
    try:
        entries = list(os.scandir(workers_dir))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(os.path.join(entry.path, LOCK_NAME), os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue  # no lock file: not a folder of ours (or of an older workbench); leave it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its owner is alive
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
        finally:
            os.close(fd)

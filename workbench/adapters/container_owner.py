"""Which workbench a container belongs to, so that cleanup removes only what a dead workbench of
this workspace left behind.

One Docker engine can serve several workbenches at once: other workspaces, other containers
(PID namespaces) or other machines sharing a remote engine. A bare owner pid means nothing
outside its own PID namespace, and a pid is reused once its process is gone. So every container
a workbench starts carries:

- `workbench.workspace`: a random id made once per workspace and kept in its state folder;
- `workbench.host`: this machine (/etc/machine-id, else the kernel's boot id);
- `workbench.pid_ns`: the PID namespace its owner pid is counted in;
- `workbench.boot`: the kernel's boot id (after a reboot every owner is dead);
- `workbench.owner_pid` and `workbench.owner_start`: the owner and when it started (clock
  ticks since boot, from /proc), so a reused pid is not mistaken for the owner.

A container is an orphan only when its workspace, host and PID namespace are ours and its owner
is dead. Containers without these labels (older workbenches) are never touched.
"""

from __future__ import annotations

import functools
import os
import secrets
from pathlib import Path

WORKSPACE_LABEL = "workbench.workspace"
HOST_LABEL = "workbench.host"
PID_NS_LABEL = "workbench.pid_ns"
BOOT_LABEL = "workbench.boot"
OWNER_LABEL = "workbench.owner_pid"
OWNER_START_LABEL = "workbench.owner_start"
WORKSPACE_ID_FILE = "workspace-id"


def workspace_id(state_dir: Path) -> str:
    """The workspace's id, made the first time it is asked for. Two processes asking at once
    agree: the id is written to a private file and linked into place, and a link never
    replaces a file that is already there."""
    path = Path(state_dir) / WORKSPACE_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate = path.with_name(f".{WORKSPACE_ID_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_hex(16) + "\n").encode())
    finally:
        os.close(fd)
    try:
        os.link(candidate, path)
    except FileExistsError:
        pass  # another process made it first: its id is the workspace's
    finally:
        candidate.unlink(missing_ok=True)
    return path.read_text().strip()


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


@functools.cache
def boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id")


@functools.cache
def host_id() -> str:
    return _read("/etc/machine-id") or boot_id() or os.uname().nodename


def pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """When `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat); None if no
    such process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: count from its closing one.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else ""


def owner_labels(state_dir: Path | None) -> dict[str, str]:
    """The labels of a container this process starts for the workspace of `state_dir`."""
    pid = os.getpid()
    return {
        WORKSPACE_LABEL: workspace_id(state_dir) if state_dir is not None else "",
        HOST_LABEL: host_id(),
        PID_NS_LABEL: pid_namespace(),
        BOOT_LABEL: boot_id(),
        OWNER_LABEL: str(pid),
        OWNER_START_LABEL: process_start(pid) or "",
    }


def is_orphan(labels: dict[str, str], state_dir: Path | None) -> bool:
    """Whether a container with these labels was left by a dead workbench of this workspace,
    on this host, in this PID namespace."""
    ours = owner_labels(state_dir)
    if any(labels.get(key) != ours[key] for key in (WORKSPACE_LABEL, HOST_LABEL, PID_NS_LABEL)):
        return False
    if OWNER_START_LABEL not in labels:
        return False  # not labelled by this scheme: not ours to judge
    if labels.get(BOOT_LABEL) != ours[BOOT_LABEL]:
        return True  # the machine restarted since: its owner is gone
    text = labels.get(OWNER_LABEL, "")
    if not text.isdigit() or int(text) <= 0:
        return False
    started = process_start(int(text))
    if started is None:
        return True  # no such process
    if started == "":
        return False  # /proc unreadable: cannot tell, so keep it
    return started != labels[OWNER_START_LABEL]  # the pid now belongs to another process

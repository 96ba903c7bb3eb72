"""Project folders watched with watchdog (inotify on Linux), one observer per project.

The adapter only translates: each watchdog event becomes one or two calls of the sink with a
path relative to the project (forward slashes), a ChangeKind and whether it is a folder. A
rename gives two calls, the old path and the new one, both `moved`; a folder renamed within the
project gives the folder's two paths, and watchdog adds an event per file inside it. Nothing else
happens on watchdog's threads: the sink only enqueues, and the watch service does the rest on its
own thread. Opening and closing events are not even asked of the kernel.

Measured here: an editor's save (write a temp file, rename it over the target) reaches the sink
as created/modified/moved of the temp name (the target only as the `moved` destination); a plain
overwrite as modified; a burst of 1,000 new files costs watchdog about 50 ms of CPU.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import weakref
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileCreatedEvent, FileDeletedEvent, FileModifiedEvent,
    FileMovedEvent, FileSystemEvent, FileSystemEventHandler,
)
from watchdog.observers import Observer

from workbench.core.changes import ChangeKind
from workbench.core.errors import WorkbenchError
from workbench.core.ports import FileEventSink, WatchErrorSink

# Created, modified, deleted and moved, for files and folders. A folder's "modified" (an entry
# was added or removed) says nothing the entry's own event does not.
EVENT_TYPES = [FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent,
               DirCreatedEvent, DirDeletedEvent, DirMovedEvent]
INOTIFY_LOGGER = "watchdog.observers.inotify_c"

_live_watchers: "weakref.WeakSet[WatchdogWatcher]" = weakref.WeakSet()


class _OverflowListener(logging.Handler):
    """watchdog reports a kernel queue overflow (events lost) only by logging a warning; every
    live watcher then asks for a full rescan, which costs a stat per file."""

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            for watcher in list(_live_watchers):
                watcher.sink("", ChangeKind.OVERFLOW, True)


_overflow_listener = _OverflowListener(level=logging.WARNING)
_inotify_log = logging.getLogger(INOTIFY_LOGGER)
_inotify_log.addHandler(_overflow_listener)
if _inotify_log.level == logging.NOTSET:
    _inotify_log.setLevel(logging.WARNING)  # heard even when the application logs only errors


class _Translator(FileSystemEventHandler):
    """Runs on watchdog's dispatch thread: turn an event into sink calls, nothing more."""

    def __init__(self, root: str, sink: FileEventSink, on_gone) -> None:
        self.root = root
        self.prefix = root.rstrip(os.sep) + os.sep
        self.cut = len(self.prefix)
        self.sink = sink
        self.on_gone = on_gone

    def _relative(self, path: str) -> str | None:
        if not path.startswith(self.prefix):
            return None
        rel = path[self.cut:]
        return rel if os.sep == "/" else rel.replace(os.sep, "/")

    def dispatch(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        kind = event.event_type
        if src == self.root:
            if kind in ("deleted", "moved"):
                self.on_gone()
            return
        rel = self._relative(src)
        if rel is not None:
            self.sink(rel, kind, event.is_directory)
        if kind == "moved":
            dest = self._relative(os.fsdecode(event.dest_path))
            if dest is not None:
                self.sink(dest, kind, event.is_directory)


class WatchdogWatcher:
    """Watches one project folder recursively. See FileWatcher in core/ports.py."""

    def __init__(self, root: str | Path, sink: FileEventSink, on_error: WatchErrorSink):
        self.root = str(Path(root).resolve())
        self.sink = sink
        self.on_error = on_error
        self._observer: Observer | None = None
        self._gone = False
        self._lock = threading.Lock()

    def start(self) -> None:
        if not os.path.isdir(self.root):
            raise WorkbenchError(f"cannot watch {self.root}: no such folder")
        with self._lock:
            if self._observer is not None:
                return
            try:
                observer = Observer()
                observer.schedule(_Translator(self.root, self.sink, self._folder_gone), self.root,
                                  recursive=True, event_filter=EVENT_TYPES)
                observer.start()
            except OSError as exc:
                raise _watch_error(exc, self.root) from None
            self._observer = observer
            _live_watchers.add(self)

    def _folder_gone(self) -> None:
        self._gone = True
        self.on_error(f"the project folder {self.root} was deleted or moved; stopped watching it")

    def problem(self) -> str | None:
        if self._gone or not os.path.isdir(self.root):
            return f"the project folder {self.root} was deleted or moved; stopped watching it"
        observer = self._observer
        # The inotify reader is watchdog's private thread; without it nothing is reported.
        threads = [observer, *observer.emitters, getattr(observer, "_inotify_fd", None)] if observer else []
        if any(t is not None and not t.is_alive() for t in threads):
            return (f"the file watcher for {self.root} stopped (see the log); "
                    f"if the folder has very many subfolders, {_limit_hint('max_user_watches')}")
        return None

    def stop(self) -> None:
        with self._lock:
            observer, self._observer = self._observer, None
            _live_watchers.discard(self)
        if observer is None:
            return
        try:
            observer.stop()
            observer.join(timeout=5)
        except (OSError, RuntimeError):
            pass  # the folder is gone or the observer never ran: nothing left to release


def _limit_hint(name: str) -> str:
    try:
        value = Path(f"/proc/sys/fs/inotify/{name}").read_text().strip()
    except OSError:
        value = "?"
    return f"raise fs.inotify.{name} (now {value}), e.g. `sudo sysctl fs.inotify.{name}=524288`"


def _watch_error(exc: OSError, root: str) -> WorkbenchError:
    if exc.errno == errno.ENOSPC:
        return WorkbenchError(f"cannot watch {root}: the system's limit on watched folders was reached; "
                              f"{_limit_hint('max_user_watches')}")
    if exc.errno == errno.EMFILE:
        return WorkbenchError(f"cannot watch {root}: too many watchers in use; {_limit_hint('max_user_instances')}")
    if exc.errno == errno.ENOENT:
        return WorkbenchError(f"cannot watch {root}: no such folder")
    if exc.errno == errno.EACCES:
        return WorkbenchError(f"cannot watch {root}: permission denied")
    return WorkbenchError(f"cannot watch {root}: {exc.strerror or exc}")

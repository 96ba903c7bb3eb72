"""The warm worker: a long-lived process inside a project's container that has already imported
the heavy libraries and forks a fresh child per stage run.

Standard library only; runs in the user's image. One thread, one selector loop: the server must
stay fork-safe, so it never starts threads and never trains or predicts (OpenMP's thread pool,
used by LightGBM, does not survive a fork once it has run).

The server connects once, at start, to a socket the host listens on (in a folder mounted
read-only, so no stage can replace it), and serves one stage at a time over that connection,
JSON lines:
  server -> {"event": "hello", "preloaded": [...], ...}   (once, after the preload)
  host   -> {"op": "run", "job": J, "command": "...", "cwd": "...", "env": {...}, "stall_s": seconds}
  server -> {"event": "started", "job": J, "pid": N}
  server -> {"event": "log", "job": J, "line": "..."}   (stdout and stderr, merged, in order)
  server -> {"event": "exit", "job": J, "code": N, "signal": S | null, "oom": bool, "stalled": bool,
             "survivors": N}
  host   -> {"op": "cancel", "job": J}                  => the child's process group is killed
The host closing the connection ends the server (and with it the container).

A stage ends when everything it started has ended: after its child exits (or is killed), every
other process in the container except init (PID 1) and this server is killed, the scratch
places a stage can write (/tmp, /dev/shm, /dev/mqueue, System V IPC) are emptied, and only then
is the exit reported. The host moves the outputs only after that, so nothing of the stage can
change them afterwards, and nothing of one stage reaches the next.
"""

import ctypes
import gc
import json
import os
import runpy
import selectors
import shlex
import shutil
import signal
import socket
import sys
import time
import traceback

READ_CHUNK = 65536
STRAY_KILL_S = 5.0
"""How long killing a stage's leftover processes may take; the host removes the container if
any survive (a process stuck in the kernel)."""
SCRATCH_DIRS = ("/tmp", "/dev/shm", "/dev/mqueue")
PR_SET_DUMPABLE = 4
IPC_RMID = 0


def preload(modules):
    started = time.perf_counter()
    loaded, failed = [], {}
    for name in modules:
        try:
            __import__(name)
            loaded.append(name)
        except Exception as exc:  # a missing optional library must not stop the worker
            failed[name] = "%s: %s" % (type(exc).__name__, exc)
    # Move everything imported so far out of the collector's reach: a child's garbage
    # collections then never write to these objects' headers, so their pages stay shared with
    # the server instead of being copied on every fork.
    gc.freeze()
    return loaded, failed, time.perf_counter() - started


def oom_kills():
    """The container's OOM-kill counter (cgroup v2, then v1); None when not readable."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def python_entry(argv):
    """`python script.py args` or `python -m module args` runs in the warm child; anything else
    (a shell pipeline, another program) is exec'ed and gets no head start."""
    if not argv or os.path.basename(argv[0]) not in ("python", "python3", os.path.basename(sys.executable)):
        return None
    rest = argv[1:]
    if len(rest) >= 2 and rest[0] == "-m":
        return ("module", rest[1], rest[2:])
    if rest and not rest[0].startswith("-"):
        return ("script", rest[0], rest[1:])
    return None


def library_modules(names):
    """Of the given module names, those that are installed libraries (the image's site-packages or
    standard library), never the user's own code: that changes between runs and must be imported
    fresh by every child."""
    roots = tuple(p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p
                                                   or p.startswith(sys.base_prefix)))
    found = []
    for name in names:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None) or ""
        if name != "__main__" and path.startswith(roots) and not path.startswith("/wb/"):
            found.append(name)
    return found


def run_child(request, write_fd, close_in_child, learn_fd):
    """In the forked child: become a clean process for one stage, run it, never return."""
    code = 1
    inherited = set(sys.modules)
    try:
        os.setsid()
        # The host connection and the selector must not reach the stage: with the connection a
        # stage could send the host a false "exit" and keep writing its outputs.
        close_in_child()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        os.chdir(request["cwd"])
        os.environ.update(request["env"])  # on top of the image's environment, as in a container
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        command = request["command"]
        entry = python_entry(shlex.split(command)) if _plain(command) else None
        if entry is None:
            os.execvp("sh", ["sh", "-c", request["command"]])
        kind, target, args = entry
        sys.path[:] = [p for p in sys.path if p not in ("", ".")]
        for extra in reversed(request["env"].get("PYTHONPATH", "").split(os.pathsep)):
            if extra and extra not in sys.path:
                sys.path.insert(0, extra)
        if kind == "script":
            sys.argv = [target] + args
            sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
            # Absolute, as python gives a script's __file__ (and so its traceback lines).
            runpy.run_path(os.path.abspath(target), run_name="__main__")
        else:
            sys.argv = [target] + args
            sys.path.insert(0, os.getcwd())
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException as exc:
        print_stage_traceback(exc)
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            # Tell the server which libraries this stage imported that it had not: it imports
            # them too, so the next child starts with them (e.g. sklearn.metrics).
            learned = library_modules(sorted(set(sys.modules) - inherited))
            os.write(learn_fd, json.dumps(learned).encode()[:60000])
        except Exception:
            pass
        os._exit(code & 0xFF)


def print_stage_traceback(exc):
    """The traceback `python script.py` prints: from the stage's own code down, without this
    server's and runpy's frames above it (a user reads those as a crash of the workbench)."""
    tb = exc.__traceback__
    while tb is not None and _machinery(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb if tb is not None else exc.__traceback__)


def _machinery(filename):
    return filename in (__file__, "<frozen runpy>") or os.path.basename(filename) == "runpy.py"


def _plain(command):
    """A command the warm child can run in-process: no shell syntax beyond words."""
    return not any(ch in command for ch in ";&|<>`$(){}*?\n")


def group_cpu_ticks(pgid):
    """CPU time used so far by every process in a process group (a stage may spawn children)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # fields after the command: state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def _process_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def kill_strays(timeout_s=STRAY_KILL_S):
    """Kill every process in the container but init and this server: what a stage left behind
    (a double-forked daemon is reparented to init, outside the stage's process group and
    session, so only a sweep of the container's PID namespace finds it). Repeats until a sweep
    finds nothing alive, so a process forked during a sweep is caught by the next. Returns the
    pids still alive after `timeout_s` (none, unless one is stuck in the kernel)."""
    me = os.getpid()
    deadline = time.monotonic() + timeout_s
    while True:
        alive = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in (1, me):
                continue
            state = _process_state(int(entry))
            if state is None or state in "ZXx":  # gone, or a zombie init will reap: harmless
                continue
            alive.append(int(entry))
            try:
                os.kill(int(entry), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.002)


def _remove_tree(path):
    def retry_writable(function, name, _exc):
        # A stage may leave a folder without write or search permission for its owner.
        try:
            os.chmod(os.path.dirname(name) or "/", 0o700)
            if os.path.isdir(name) and not os.path.islink(name):
                os.chmod(name, 0o700)
            function(name)
        except OSError:
            pass

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, onerror=retry_writable)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def wipe_scratch():
    """Empty every place a stage can write besides its output folder, so a later stage of this
    worker starts as a fresh container would."""
    for folder in SCRATCH_DIRS:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for name in entries:
            _remove_tree(os.path.join(folder, name))
    _remove_ipc_objects()


def _remove_ipc_objects():
    """System V shared memory, message queues and semaphores outlive their processes."""
    found = {}
    for kind in ("shm", "msg", "sem"):
        try:
            with open("/proc/sysvipc/" + kind) as fh:
                rows = [row.split() for row in fh.read().splitlines()[1:]]
        except OSError:
            continue
        found[kind] = [int(fields[1]) for fields in rows if len(fields) > 1 and fields[1].isdigit()]
    if not any(found.values()):
        return
    libc = ctypes.CDLL(None, use_errno=True)  # the interpreter's own libc: no library search
    removers = {"shm": lambda i: libc.shmctl(i, IPC_RMID, None),
                "msg": lambda i: libc.msgctl(i, IPC_RMID, None),
                "sem": lambda i: libc.semctl(i, 0, IPC_RMID)}
    for kind, ids in found.items():
        for ipc_id in ids:
            removers[kind](ipc_id)


def make_undumpable():
    """Stages run as the server's user; without this one could ptrace the server or write its
    memory through /proc and so reach later stages. Non-dumpable needs CAP_SYS_PTRACE for both,
    which the container does not have."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Job:
    def __init__(self, job_id, conn, pid, read_fd, oom_before, stall_s, learn_fd):
        self.job_id = job_id
        self.conn, self.pid, self.read_fd, self.oom_before = conn, pid, read_fd, oom_before
        self.learn_fd = learn_fd
        self.partial = b""
        self.eof = False
        self.stall_s = stall_s
        self.stalled = False
        self.last_ticks = -1
        self.last_progress = time.monotonic()

    def check_stalled(self, now):
        """A child that neither computes nor prints for stall_s is stuck (for example in an
        OpenMP barrier after fork): kill it rather than hang forever."""
        if not self.stall_s or self.stalled:
            return
        ticks = group_cpu_ticks(self.pid)
        if ticks != self.last_ticks:
            self.last_ticks, self.last_progress = ticks, now
        elif now - self.last_progress > self.stall_s:
            self.stalled = True
            self.kill()

    def send(self, message):
        message["job"] = self.job_id
        try:
            self.conn.sendall((json.dumps(message) + "\n").encode())
        except OSError:
            self.kill()  # the host is gone: nobody wants this run any more

    def kill(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Server:
    """Serves the host over one connection, one stage at a time."""

    def __init__(self, conn):
        self.conn = conn
        self.buffer = b""
        self.job = None
        self.selector = selectors.DefaultSelector()
        self.selector.register(conn, selectors.EVENT_READ, ("host", None))
        # A child's exit must wake the loop at once (a cancel is answered within milliseconds):
        # SIGCHLD writes a byte to this pipe, which the selector watches.
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(self.wakeup_w, False)
        signal.set_wakeup_fd(self.wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, ("wakeup", None))

    def serve(self, hello):
        self.hello = hello
        self.conn.sendall((json.dumps(hello) + "\n").encode())
        while True:
            for key, _ in self.selector.select(timeout=0.5):
                kind, data = key.data
                if kind == "host":
                    self.on_host()
                elif kind == "output":
                    self.on_output(data)
                elif kind == "wakeup":
                    try:
                        os.read(self.wakeup_r, 4096)
                    except BlockingIOError:
                        pass
            self.reap()

    def on_host(self):
        try:
            chunk = self.conn.recv(READ_CHUNK)
        except OSError:
            chunk = b""
        if not chunk:  # the host is gone: so is every reason to keep running
            if self.job:
                self.job.kill()
            kill_strays()
            sys.exit(0)
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self.on_request(json.loads(line))

    def on_request(self, request):
        op = request.get("op")
        if op == "cancel":
            if self.job and self.job.job_id == request.get("job"):
                self.job.kill()
        elif op == "run":
            if self.job:  # the host runs one stage at a time; refuse rather than mix two
                message = {"event": "exit", "job": request.get("job"), "code": 125, "signal": None,
                           "oom": False, "stalled": False, "survivors": 0, "busy": True}
                self.conn.sendall((json.dumps(message) + "\n").encode())
            else:
                self.start(request)

    def close_in_child(self):
        self.selector.close()
        self.conn.close()
        signal.set_wakeup_fd(-1)
        os.close(self.wakeup_r)
        os.close(self.wakeup_w)

    def start(self, request):
        read_fd, write_fd = os.pipe()
        learn_r, learn_w = os.pipe()
        oom_before = oom_kills()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            os.close(learn_r)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            run_child(request, write_fd, self.close_in_child, learn_w)
        os.close(write_fd)
        os.close(learn_w)
        job = Job(request.get("job"), self.conn, pid, read_fd, oom_before, float(request.get("stall_s") or 0),
                  learn_r)
        self.job = job
        os.set_blocking(read_fd, False)
        self.selector.register(read_fd, selectors.EVENT_READ, ("output", job))
        job.send({"event": "started", "pid": pid})

    def on_output(self, job):
        try:
            chunk = os.read(job.read_fd, READ_CHUNK)
        except BlockingIOError:
            return
        if not chunk:
            job.eof = True
            self.selector.unregister(job.read_fd)
            os.close(job.read_fd)
            if job.partial:
                job.send({"event": "log", "line": job.partial.decode("utf-8", "replace")})
            return
        job.last_progress = time.monotonic()
        lines = (job.partial + chunk).split(b"\n")
        job.partial = lines.pop()
        for line in lines:
            job.send({"event": "log", "line": line.decode("utf-8", "replace").rstrip("\r")})

    def reap(self):
        job = self.job
        if job is None:
            return
        job.check_stalled(time.monotonic())
        try:
            pid, status = os.waitpid(job.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = job.pid, 0
        if pid == 0:
            return
        # The stage is over when everything it started is: a leftover process could still
        # write its outputs, or hold the output pipe open and keep the drain below waiting.
        survivors = kill_strays()
        if job.eof:
            pass
        elif not survivors:
            os.set_blocking(job.read_fd, True)
            while not job.eof:  # every writer is gone: what is left in the pipe, then EOF
                self.on_output(job)
        else:
            self.selector.unregister(job.read_fd)
            os.close(job.read_fd)
        wipe_scratch()
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + (sig or 0)
        after = oom_kills()
        # Killed by SIGKILL, directly or as a shell's child (exit 137), while the container's
        # OOM-kill counter went up: the memory limit, not a bug in the stage.
        killed = sig == signal.SIGKILL or code == 128 + signal.SIGKILL
        oom = killed and None not in (after, job.oom_before) and after > job.oom_before
        self.job = None
        job.send({"event": "exit", "code": code, "signal": sig, "oom": bool(oom), "stalled": job.stalled,
                  "survivors": len(survivors)})
        self.learn(job)

    def learn(self, job):
        """Import what the finished child imported from installed libraries (import only: the
        server never runs a library's work, which keeps it fork-safe)."""
        try:
            learned = json.loads(os.read(job.learn_fd, 65536) or b"[]")
        except (OSError, ValueError):
            learned = []
        finally:
            os.close(job.learn_fd)
        new = [name for name in learned if name not in sys.modules]
        if new:
            preload(new)
            self.hello.setdefault("learned", []).extend(new)


def main():
    args = sys.argv[1:]
    path = args[args.index("--connect") + 1]
    modules = [m for m in (args[args.index("--preload") + 1] if "--preload" in args else "").split(",") if m]
    make_undumpable()
    # Connect before importing anything of the user's: the host accepts one connection only.
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    loaded, failed, seconds = preload(modules)
    hello = {"event": "hello", "pid": os.getpid(), "python": sys.version.split()[0], "preloaded": loaded,
             "failed": failed, "import_seconds": round(seconds, 3), "threads": len(os.listdir("/proc/self/task"))}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Server(conn).serve(hello)


if __name__ == "__main__":
    main()

"""The warm worker: a long-lived process inside a project's container that has already imported
the heavy libraries and forks a fresh child per stage run.

Standard library only; runs in the user's image. One thread, one selector loop: the server must
stay fork-safe, so it never starts threads and never trains or predicts (OpenMP's thread pool,
used by LightGBM, does not survive a fork once it has run).

Protocol, JSON lines over a Unix socket, one connection per stage run:
  client -> {"op": "run", "command": "...", "cwd": "...", "env": {...}, "stall_s": seconds}
  server -> {"event": "started", "pid": N}
  server -> {"event": "log", "line": "..."}            (stdout and stderr, merged, in order)
  server -> {"event": "exit", "code": N, "signal": S | null, "oom": bool, "stalled": bool}
  client -> {"op": "cancel"} or closes the connection  => the child's process group is killed
"""

import gc
import json
import os
import runpy
import selectors
import shlex
import signal
import socket
import sys
import time
import traceback

READ_CHUNK = 65536


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


def run_child(request, write_fd, listener, learn_fd):
    """In the forked child: become a clean process for one stage, run it, never return."""
    code = 1
    inherited = set(sys.modules)
    try:
        os.setsid()
        listener.close()
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
            runpy.run_path(target, run_name="__main__")
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
    except BaseException:
        traceback.print_exc()
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


class Job:
    def __init__(self, conn, pid, read_fd, oom_before, stall_s, learn_fd):
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
        try:
            self.conn.sendall((json.dumps(message) + "\n").encode())
        except OSError:
            self.kill()  # the client is gone: nobody wants this run any more

    def kill(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Server:
    def __init__(self, path):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, ("accept", None))
        self.pending = {}  # connection -> bytes received before a full request line
        self.jobs = {}  # connection -> Job
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
        while True:
            for key, _ in self.selector.select(timeout=0.5):
                kind, data = key.data
                if kind == "accept":
                    conn, _ = self.listener.accept()
                    self.pending[conn] = b""
                    self.selector.register(conn, selectors.EVENT_READ, ("conn", conn))
                elif kind == "conn":
                    self.on_client(data)
                elif kind == "output":
                    self.on_output(data)
                elif kind == "wakeup":
                    try:
                        os.read(self.wakeup_r, 4096)
                    except BlockingIOError:
                        pass
            self.reap()

    def on_client(self, conn):
        try:
            chunk = conn.recv(READ_CHUNK)
        except OSError:
            chunk = b""
        job = self.jobs.get(conn)
        if not chunk:
            if job:
                job.kill()
            self.selector.unregister(conn)
            self.pending.pop(conn, None)
            if not job:
                conn.close()
            return
        if job:
            if b'"cancel"' in chunk:
                job.kill()
            return
        self.pending[conn] += chunk
        if b"\n" not in self.pending[conn]:
            return
        line = self.pending.pop(conn).split(b"\n", 1)[0]
        request = json.loads(line)
        if request.get("op") == "hello":
            conn.sendall((json.dumps(self.hello) + "\n").encode())
            return
        self.start(conn, request)

    def start(self, conn, request):
        read_fd, write_fd = os.pipe()
        learn_r, learn_w = os.pipe()
        oom_before = oom_kills()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            os.close(learn_r)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.close(self.wakeup_r)
            os.close(self.wakeup_w)
            run_child(request, write_fd, self.listener, learn_w)
        os.close(write_fd)
        os.close(learn_w)
        job = Job(conn, pid, read_fd, oom_before, float(request.get("stall_s") or 0), learn_r)
        self.jobs[conn] = job
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
        now = time.monotonic()
        for conn, job in list(self.jobs.items()):
            job.check_stalled(now)
            try:
                pid, status = os.waitpid(job.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = job.pid, 0
            if pid == 0:
                continue
            if not job.eof:  # output may still be buffered in the pipe: drain it first
                while not job.eof:
                    self.on_output(job)
                    if not job.eof:
                        time.sleep(0.001)
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + (sig or 0)
            after = oom_kills()
            # Killed by SIGKILL, directly or as a shell's child (exit 137), while the container's
            # OOM-kill counter went up: the memory limit, not a bug in the stage.
            killed = sig == signal.SIGKILL or code == 128 + signal.SIGKILL
            oom = killed and None not in (after, job.oom_before) and after > job.oom_before
            job.send({"event": "exit", "code": code, "signal": sig, "oom": bool(oom), "stalled": job.stalled})
            del self.jobs[conn]
            try:
                self.selector.unregister(conn)
            except (KeyError, ValueError):
                pass
            conn.close()
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
    path = args[args.index("--socket") + 1]
    modules = [m for m in (args[args.index("--preload") + 1] if "--preload" in args else "").split(",") if m]
    loaded, failed, seconds = preload(modules)
    hello = {"event": "hello", "pid": os.getpid(), "python": sys.version.split()[0], "preloaded": loaded,
             "failed": failed, "import_seconds": round(seconds, 3), "threads": len(os.listdir("/proc/self/task"))}
    server = Server(path)
    # The host waits for this line on the container's output before it connects.
    print(json.dumps(hello), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve(hello)


if __name__ == "__main__":
    main()

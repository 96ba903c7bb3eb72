"""Stages as local subprocesses: the same protocol as the Docker runner, for machines without
Docker. There is no isolation here beyond the snapshot being a separate folder: no memory or
network limits, which `workbench run` says when it falls back to this runner."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from workbench.core.manifest import EnvironmentSpec
from workbench.core.model import StageStatus
from workbench.core.ports import CancelToken, LogSink, PreparedEnvironment, StageJob, StageOutcome
from workbench.runtime import RUNTIME_DIR

LOG_TAIL = 20
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _now() -> datetime:
    return datetime.now(timezone.utc)


class LocalRunner:
    name = "local"

    def __init__(self, python: str = sys.executable):
        self.python = python

    def prepare(self, project_dir: str, env: EnvironmentSpec, on_log: LogSink,
                project: str | None = None, cancel: CancelToken | None = None) -> PreparedEnvironment:
        """Identify the host environment by the Python and the installed versions of what the
        project requires, so a library upgrade invalidates cached stage results."""
        parts = [f"python {sys.version.split()[0]}"]
        if env.requirements:
            req_path = Path(project_dir) / env.requirements
            for line in req_path.read_text().splitlines() if req_path.exists() else []:
                match = REQUIREMENT_NAME.match(line.split("#", 1)[0])
                if match:
                    try:
                        version = metadata.version(match.group(1))
                    except metadata.PackageNotFoundError:
                        version = "missing"
                        on_log(f"warning: {match.group(1)} (from {env.requirements}) is not installed locally")
                    parts.append(f"{match.group(1)}=={version}")
        identity = "local:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
        return PreparedEnvironment(image_id=identity, image_tag="local (" + ", ".join(parts[:3]) + ")")

    def run_stage(self, job: StageJob, on_log: LogSink, cancel: CancelToken) -> StageOutcome:
        env = dict(os.environ)
        env.update(job.env)  # the protocol's own variables below win, as in a container
        env.update(
            WB_PROJECT_DIR=job.project_dir,
            WB_OUTPUT_DIR=job.output_dir,
            WB_UPSTREAM_DIR=self._upstream_dir(job),
            WB_STAGE=job.stage,
            WB_RUN_ID=str(job.run_id),
            WB_PROJECT=job.project,
            PYTHONPATH=os.pathsep.join(filter(None, [str(RUNTIME_DIR), env.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
            PYTHONDONTWRITEBYTECODE="1",
        )
        # `python` in a stage command means the workbench's interpreter, as `python` in the
        # container means the environment's.
        env["PATH"] = os.pathsep.join([str(Path(self.python).parent), env.get("PATH", "")])
        started = _now()
        tail: deque[str] = deque(maxlen=LOG_TAIL)
        proc = subprocess.Popen(
            ["sh", "-c", job.command], cwd=job.project_dir, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        stop_reason: list[str] = []
        watcher = threading.Thread(target=self._watch, args=(proc, job, cancel, stop_reason), daemon=True)
        watcher.start()
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                tail.append(line)
                on_log(line)
            code = proc.wait()
        except BaseException:  # an interrupt that did not wait for the cancel (a second Ctrl-C)
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: no terminal signal reaches it
            except ProcessLookupError:
                pass
            raise
        watcher.join()
        finished = _now()
        if stop_reason:
            status = StageStatus.CANCELLED if stop_reason[0] == "cancel" else StageStatus.FAILED
            return StageOutcome(status, code, stop_reason[1], list(tail), started, finished)
        if code != 0:
            reason = f"exited with code {code}" if code > 0 else f"killed by signal {signal.Signals(-code).name}"
            return StageOutcome(StageStatus.FAILED, code, reason, list(tail), started, finished)
        return StageOutcome(StageStatus.SUCCEEDED, 0, "", list(tail), started, finished)

    @staticmethod
    def _upstream_dir(job: StageJob) -> str:
        """Upstream outputs live in separate run folders; link them under one directory so a
        stage finds them at $WB_UPSTREAM_DIR/<stage> exactly as in a container."""
        base = Path(job.output_dir).parent / f".upstream-{job.stage}"
        base.mkdir(parents=True, exist_ok=True)
        for name, path in job.upstream_dirs.items():
            link = base / name
            if link.is_symlink() or link.exists():
                link.unlink()
            # Relative: the workspace may be moved or copied, and its run folders with it.
            link.symlink_to(os.path.relpath(path, base), target_is_directory=True)
        return str(base)

    @staticmethod
    def _watch(proc: subprocess.Popen, job: StageJob, cancel: CancelToken, stop_reason: list[str]) -> None:
        deadline = time.monotonic() + job.timeout_s
        while proc.poll() is None:
            if cancel.wait(0.02):
                stop_reason[:] = ["cancel", cancel.reason or "cancelled"]
            elif time.monotonic() > deadline:
                stop_reason[:] = ["timeout", f"timed out after {job.timeout_s:g} s"]
            else:
                continue
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the whole group: shells spawn children
            except ProcessLookupError:
                pass
            return

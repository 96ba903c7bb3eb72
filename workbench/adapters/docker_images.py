"""The project's environment image: the base image it starts from (local, pulled, or the offline
one `workbench env bootstrap` makes), and one build per distinct base, requirements and
Dockerfile, tagged by their hash."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import ssl
import tempfile
import threading
from collections import deque
from pathlib import Path

import certifi
import docker
import docker.errors
from docker.models.images import Image

from workbench.adapters.docker_engine import LineBuffer, engine_calls, explain
from workbench.adapters.pull_failures import PullFailures
from workbench.core.errors import EnvironmentBuildError, RunCancelled, WorkbenchError
from workbench.core.manifest import EnvironmentSpec
from workbench.core.ports import CancelToken, DetailLine, LogSink, PreparedEnvironment, StatusLine

DEFAULT_BASE_IMAGE = "python:3.11-slim"
BOOTSTRAP_BASE_IMAGE = "workbench/python-base:bookworm"
"""Made offline by `workbench env bootstrap` (see base_image.py) where no registry is reachable."""
BASE_IMAGE_VARIABLE = "WORKBENCH_BASE_IMAGE"

# The base image may carry no ENV at all (a `docker import`ed rootfs), so PATH is spelled out
# rather than extended. The host's CA bundle replaces the image's: pip and stages then trust
# what the host trusts, which matters behind a TLS-inspecting proxy.
DOCKERFILE = """\
FROM {base_image}
RUN python3 -m venv /opt/wb-venv
COPY host-ca-bundle.crt /etc/ssl/certs/ca-certificates.crt
{install}ENV PATH=/opt/wb-venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONUNBUFFERED=1 \\
    PYTHONDONTWRITEBYTECODE=1 \\
    HOME=/tmp
"""
INSTALL_REQUIREMENTS = """\
COPY requirements.txt /opt/wb-requirements.txt
RUN PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/wb-venv/bin/pip install \\
    --no-cache-dir --disable-pip-version-check -r /opt/wb-requirements.txt
"""

ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
"""The classic builder paints a step's stderr red; logs and error messages want plain text."""
BUILDER_BOOKKEEPING = re.compile(r"^ ---> |^Removing intermediate container ")


class EnvironmentImages:
    """Builds and finds environment images; a build runs on a thread of its own (see `ensure`)."""

    def __init__(self, client: docker.DockerClient, pull_failures: PullFailures | None = None):
        self.client = client
        self.pull_failures = pull_failures or PullFailures()
        """Pulls that failed a moment ago, in this process or another: not tried again yet."""
        self._builds: dict[str, _Build] = {}
        """Image builds under way, by tag: a second run needing the same image waits for it."""
        self._builds_lock = threading.Lock()

    def ensure(self, project_dir: str, env: EnvironmentSpec, on_log: LogSink, project: str | None = None,
               cancel: CancelToken | None = None) -> PreparedEnvironment:
        """The project's environment image, built when missing."""
        with engine_calls(self.client, EnvironmentBuildError, "preparing the environment image"):
            base_name, base = self._resolve_base_image(env, on_log)
            requirements = read_requirements(project_dir, env)
            dockerfile = DOCKERFILE.format(
                base_image=base_name, install=INSTALL_REQUIREMENTS if requirements is not None else "")
            digest = hashlib.sha256()
            for part in (base.id.encode(), requirements or b"", dockerfile.encode()):
                digest.update(part + b"\0")
            name = _repository_name(project or Path(project_dir).resolve().name)
            tag = f"workbench-env/{name}:{digest.hexdigest()[:16]}"
            existing = self.local_image(tag)
            if existing is not None:
                on_log(DetailLine(f"environment image {tag} is up to date"))
                return PreparedEnvironment(image_id=existing.id, image_tag=tag, built=False)
        image_id = self._await_build(tag, dockerfile, requirements, on_log, cancel)
        return PreparedEnvironment(image_id=image_id, image_tag=tag, built=True)

    def _await_build(self, tag: str, dockerfile: str, requirements: bytes | None, on_log: LogSink,
                     cancel: CancelToken | None) -> str:
        """Build the image on a thread of its own and wait for it. A cancelled run stops waiting
        at once, but the build goes on: the next run (the one that superseded it, or the user's
        retry) joins it instead of starting a pip install of several minutes over."""
        with self._builds_lock:
            build = self._builds.get(tag)
            if build is None:
                build = self._builds[tag] = _Build()
                threading.Thread(target=self._run_build, args=(build, tag, dockerfile, requirements),
                                 name=f"build {tag}", daemon=True).start()
            else:
                on_log(StatusLine(f"waiting for the build of the environment image {tag} already under way…"))
        build.follow(on_log)
        try:
            while not build.done.wait(0.1):
                if cancel is not None and cancel.cancelled:
                    raise RunCancelled(f"{cancel.reason or 'cancelled'} while the environment image {tag} was "
                                       "being built (the build goes on, for the next run)")
        finally:
            build.unfollow(on_log)
        if build.error is not None:
            raise build.error
        assert build.image_id is not None
        return build.image_id

    def _run_build(self, build: _Build, tag: str, dockerfile: str, requirements: bytes | None) -> None:
        try:
            with engine_calls(self.client, EnvironmentBuildError, f"building the environment image {tag}"):
                build.image_id = self._build(tag, dockerfile, requirements, build.log)
        except WorkbenchError as exc:
            build.error = exc
        except Exception as exc:  # a bug must reach the waiting run, not die with this thread
            build.error = EnvironmentBuildError(f"building the environment image {tag}: internal error {exc!r}")
        finally:
            with self._builds_lock:
                self._builds.pop(tag, None)
            build.done.set()

    def _resolve_base_image(self, env: EnvironmentSpec, on_log: LogSink) -> tuple[str, Image]:
        chosen, origin = env.base_image, "environment.base_image"
        if not chosen and os.environ.get(BASE_IMAGE_VARIABLE):
            chosen, origin = os.environ[BASE_IMAGE_VARIABLE], f"${BASE_IMAGE_VARIABLE}"
        if chosen:
            image = self.local_image(chosen) or self._pulled(chosen, on_log)
            if image is None:
                raise EnvironmentBuildError(
                    f"base image {chosen} (from {origin}) is not present locally and could not be pulled"
                    + self._why_not_pulled(chosen))
            _say_base_choice(chosen, None, on_log)
            return chosen, image
        # Unset: a Python base image that is here already (the usual one, else the offline one
        # `workbench env bootstrap` made) is used without asking a registry; only with neither
        # is the usual one pulled.
        for name in (DEFAULT_BASE_IMAGE, BOOTSTRAP_BASE_IMAGE):
            image = self.local_image(name)
            if image is not None:
                offline = f"using the offline base image {name} ({DEFAULT_BASE_IMAGE} is not present locally)"
                _say_base_choice(name, offline if name == BOOTSTRAP_BASE_IMAGE else None, on_log)
                return name, image
        image = self._pulled(DEFAULT_BASE_IMAGE, on_log)
        if image is not None:
            _say_base_choice(DEFAULT_BASE_IMAGE, None, on_log)
            return DEFAULT_BASE_IMAGE, image
        raise EnvironmentBuildError(
            f"no base image: {DEFAULT_BASE_IMAGE} is not present locally and could not be pulled"
            f"{self._why_not_pulled(DEFAULT_BASE_IMAGE)}, and {BOOTSTRAP_BASE_IMAGE} does not exist; run "
            f"`workbench env bootstrap` to build it offline, or set environment.base_image (or "
            f"${BASE_IMAGE_VARIABLE}) to an image you have")

    def local_image(self, name: str) -> Image | None:
        try:
            return self.client.images.get(name)
        except docker.errors.ImageNotFound:
            return None

    def _pulled(self, name: str, on_log: LogSink) -> Image | None:
        """The image pulled from its registry; None when that fails, or failed a moment ago
        (offline, each try waits for a timeout: it is not tried again for a while)."""
        if self.pull_failures.recent(name) is not None:
            return None
        on_log(StatusLine(f"pulling {name}…"))
        try:
            image = self.client.images.pull(name)
        except docker.errors.APIError as exc:
            self.pull_failures.remember(name, explain(exc))
            on_log(f"could not pull {name}: {explain(exc)}")
            return None
        self.pull_failures.forget(name)
        return image

    def _why_not_pulled(self, name: str) -> str:
        failed = self.pull_failures.recent(name)
        if failed is None:
            return ""
        age, reason = failed
        retry_in = max(0.0, self.pull_failures.retry_after_s - age)
        return (f" ({reason}, {age:.0f} s ago; not tried again for {retry_in / 60:.0f} more minutes: "
                f"`docker pull {name}` tries now)")

    def _build(self, tag: str, dockerfile: str, requirements: bytes | None, on_log: LogSink) -> str:
        # A context of its own: sending the project (data files included) to the daemon would
        # be slow, and the image must not depend on anything but its declared inputs.
        with tempfile.TemporaryDirectory(prefix="wb-build-") as context:
            Path(context, "Dockerfile").write_text(dockerfile)
            shutil.copyfile(_host_ca_bundle(), Path(context, "host-ca-bundle.crt"))
            if requirements is not None:
                Path(context, "requirements.txt").write_bytes(requirements)
            on_log(StatusLine(f"building the environment image {tag} (once per base image and requirements; "
                              "installing them can take minutes)…"))
            lines, step_lines = LineBuffer(), deque(maxlen=12)
            chunks = self.client.api.build(
                path=context, tag=tag, rm=True, forcerm=True, pull=False, network_mode="host",
                labels={"workbench.env": "1"}, decode=True)
            for chunk in chunks:
                if "error" in chunk:
                    raise EnvironmentBuildError(
                        f"building the environment image {tag} failed: {chunk['error'].strip()}"
                        + "".join(f"\n  {line}" for line in step_lines))
                for line in lines.feed(ANSI_COLOUR.sub("", chunk.get("stream", ""))):
                    on_log(line)
                    if line.startswith("Step "):
                        step_lines.clear()  # a failure is explained by its own step's output
                    if not BUILDER_BOOKKEEPING.match(line):
                        step_lines.append(line)
        return self.client.images.get(tag).id


class _Build:
    """An image build under way: its log so far, replayed to whoever follows it later."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.image_id: str | None = None
        self.error: WorkbenchError | None = None
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._sinks: list[LogSink] = []

    def follow(self, on_log: LogSink) -> None:
        with self._lock:  # replay and subscribe at once, so no line is missed or repeated
            for line in self._lines:
                on_log(line)
            self._sinks.append(on_log)

    def unfollow(self, on_log: LogSink) -> None:
        with self._lock:
            self._sinks.remove(on_log)

    def log(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            for sink in self._sinks:
                sink(line)


_base_choice_lock = threading.Lock()
_base_choice_said: str | None = None
"""The base image this process last used: its choice is said once, and again when it changes
(every run and every watch rerun said it, which buried what the run was waiting for)."""


def _say_base_choice(name: str, why: str | None, on_log: LogSink) -> None:
    """Say which base image is used (`why`, or plainly when none is given), unless this process
    said so already. The usual image chosen first goes unsaid, as it always did."""
    global _base_choice_said
    with _base_choice_lock:
        previous, _base_choice_said = _base_choice_said, name
    if name == previous:
        return
    if why is not None:
        on_log(why)
    elif previous is not None:
        on_log(f"using the base image {name} (this process used {previous} before)")


def read_requirements(project_dir: str, env: EnvironmentSpec) -> bytes | None:
    if not env.requirements:
        return None
    path = Path(project_dir, env.requirements)
    if not path.is_file():
        raise EnvironmentBuildError(f"requirements file {env.requirements} not found in {project_dir}")
    return path.read_bytes()


def _host_ca_bundle() -> str:
    candidates = [os.environ.get("SSL_CERT_FILE"), ssl.get_default_verify_paths().cafile, certifi.where()]
    return next(path for path in candidates if path and os.path.isfile(path))


def _repository_name(folder: str) -> str:
    """Docker repository names allow lower-case letters, digits and single separators."""
    name = re.sub(r"[^a-z0-9]+", "-", folder.lower()).strip("-")
    return name or "project"

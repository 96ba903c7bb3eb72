"""Talking to the Docker engine: connecting, turning the SDK's errors into ours, and reading
the lines of its streams (build output, container logs)."""

from __future__ import annotations

import codecs
import os
from contextlib import contextmanager
from typing import Iterator

import docker
import docker.errors
import requests

from workbench.core.errors import EngineUnavailable, WorkbenchError

MAX_LINE_CHARS = 64 * 1024
"""A stage that prints without newlines (progress bars) must not grow one line without bound."""


def connect_engine(client: docker.DockerClient | None = None) -> docker.DockerClient:
    """The given client, or one configured from the environment ($DOCKER_HOST), once the
    engine has answered."""
    try:
        client = client or docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise engine_unavailable(client, exc) from None
    return client


@contextmanager
def engine_calls(client: docker.DockerClient | None, failure: type[WorkbenchError], doing: str) -> Iterator[None]:
    """Turn the SDK's exceptions into ours: the user sees what failed, never a traceback."""
    try:
        yield
    except requests.ConnectionError as exc:
        raise engine_unavailable(client, exc) from None
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise failure(f"{doing} failed: {explain(exc)}") from None


def explain(exc: Exception) -> str:
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        return str(exc.explanation)
    return str(exc)


def engine_url(client: docker.DockerClient | None) -> str:
    if client is None:
        return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    # The SDK rewrites unix:// addresses to http+docker://localhost; the adapter keeps the path.
    adapter = client.api.get_adapter(client.api.base_url)
    socket_path = getattr(adapter, "socket_path", None)
    return f"unix://{socket_path}" if socket_path else client.api.base_url


def engine_unavailable(client: docker.DockerClient | None, exc: Exception) -> EngineUnavailable:
    return EngineUnavailable(
        f"no Docker engine is reachable at {engine_url(client)}: {connection_problem(exc)}; "
        "start it or use --runner local")


def connection_problem(exc: BaseException) -> str:
    """The useful part is an OSError buried in requests' and urllib3's wrappers."""
    known = {
        FileNotFoundError: "the socket does not exist",
        PermissionError: "permission denied (is your user in the docker group?)",
        ConnectionRefusedError: "connection refused",
    }
    pending, seen = [exc], set()
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if type(error) in known:
            return known[type(error)]
        pending += [arg for arg in error.args if isinstance(arg, BaseException)]
        pending += [e for e in (error.__cause__, error.__context__) if e is not None]
    return str(exc)


class LineBuffer:
    """Reassembles lines from chunks that cut them anywhere, even inside a UTF-8 character."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, data: bytes | str) -> list[str]:
        text = data if isinstance(data, str) else self._decoder.decode(data)
        *lines, self._partial = (self._partial + text).split("\n")
        if len(self._partial) > MAX_LINE_CHARS:
            lines.append(self._partial)
            self._partial = ""
        return [line.rstrip("\r") for line in lines]

    def flush(self) -> list[str]:
        rest, self._partial = self._partial + self._decoder.decode(b"", final=True), ""
        return [rest.rstrip("\r")] if rest else []

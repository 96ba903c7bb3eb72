"""The serving image: the project's own environment image plus FastAPI and uvicorn, nothing else.

Built FROM the environment image (docker_images.py), so a model is served by exactly the
libraries its stages trained it with, and the stage image stays as it was (its id is part of
every stage's cache key: touching it would rerun every stage of every project). One extra
`pip install` layer, tagged by the environment image's id and the pins below, built once.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import docker
import docker.errors

from workbench.adapters.docker_engine import LineBuffer, engine_calls
from workbench.core.errors import EnvironmentBuildError
from workbench.core.ports import DetailLine, LogSink, StatusLine

SERVING_PACKAGES = ("fastapi==0.165.0", "uvicorn==0.54.0")
"""The versions the in-process tests run (tests/test_serve_app.py); pinned so a serving image is
rebuilt only when they change. FastAPI brings starlette and pydantic."""

DOCKERFILE = """\
FROM {env_image}
RUN PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/wb-venv/bin/pip install \\
    --no-cache-dir --disable-pip-version-check {packages}
"""


def serving_tag(env_image_id: str, project_tag: str) -> str:
    digest = hashlib.sha256((env_image_id + "\0" + " ".join(SERVING_PACKAGES)).encode()).hexdigest()[:16]
    repository = project_tag.split(":", 1)[0].replace("workbench-env/", "workbench-serve/", 1)
    return f"{repository}:{digest}"


def ensure_serving_image(client: docker.DockerClient, env_image_id: str, env_image_tag: str,
                         on_log: LogSink) -> str:
    """The serving image's tag, built when missing."""
    tag = serving_tag(env_image_id, env_image_tag)
    with engine_calls(client, EnvironmentBuildError, f"building the serving image {tag}"):
        try:
            client.images.get(tag)
            on_log(DetailLine(f"serving image {tag} is up to date"))
            return tag
        except docker.errors.ImageNotFound:
            pass
        on_log(StatusLine(f"building the serving image {tag} (FastAPI and uvicorn over {env_image_tag}, once)…"))
        with tempfile.TemporaryDirectory(prefix="wb-serve-build-") as context:
            Path(context, "Dockerfile").write_text(
                DOCKERFILE.format(env_image=env_image_id, packages=" ".join(SERVING_PACKAGES)))
            lines, tail = LineBuffer(), []
            for chunk in client.api.build(path=context, tag=tag, rm=True, forcerm=True, pull=False,
                                          network_mode="host", labels={"workbench.env": "1"}, decode=True):
                if "error" in chunk:
                    raise EnvironmentBuildError(f"building the serving image {tag} failed: {chunk['error'].strip()}"
                                                + "".join(f"\n  {line}" for line in tail[-12:]))
                for line in lines.feed(chunk.get("stream", "")):
                    tail.append(line)
                    on_log(line)
    return tag

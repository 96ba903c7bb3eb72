import os

import pytest


@pytest.fixture(autouse=True)
def _no_outside_mlflow(monkeypatch):
    """A developer's MLflow settings stay out of the tests, and no test starts a detached
    MLflow sync process unless it asks for one (tests/test_mlflow_mirror.py does)."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "WORKBENCH_MLFLOW_URI", "WORKBENCH_USER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKBENCH_MLFLOW_SYNC", "off")
    # Nor a detached alert drainer (tests/test_notify.py starts one where it means to).
    monkeypatch.setenv("WORKBENCH_NOTIFY_SYNC", "off")


def skip_unless_ci(reason: str, module: bool = False) -> None:
    """A missing part (Docker, Postgres, Dask) skips a developer's run, but must never silently pass CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: no test may be skipped for a missing part; scripts/setup.sh installs it)", pytrace=False)
    pytest.skip(reason, allow_module_level=module)


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker client whose engine answers."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # any failure means the same here: no usable engine
        skip_unless_ci(f"no Docker engine is reachable: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def docker_base_image(docker_engine) -> str:
    """A base image present locally: the offline one if it was bootstrapped, else the usual one."""
    import docker

    from workbench.adapters.docker_images import BOOTSTRAP_BASE_IMAGE, DEFAULT_BASE_IMAGE

    for name in (BOOTSTRAP_BASE_IMAGE, DEFAULT_BASE_IMAGE):
        try:
            docker_engine.images.get(name)
            return name
        except docker.errors.ImageNotFound:
            pass
    skip_unless_ci(f"no base image: neither {BOOTSTRAP_BASE_IMAGE} nor {DEFAULT_BASE_IMAGE} is present")

"""The offline base image: a Debian root filesystem made by debootstrap from Debian's own
packages and imported into Docker, for machines (air-gapped teams) that cannot pull
`python:3.11-slim` from a registry."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections import deque
from pathlib import Path

import docker
import docker.errors
import requests
from docker.utils import parse_repository_tag

from workbench.adapters.docker_engine import connect_engine
from workbench.adapters.docker_images import BOOTSTRAP_BASE_IMAGE
from workbench.core.errors import WorkbenchError
from workbench.core.ports import LogSink

PACKAGES = ("python3", "python3-pip", "python3-venv", "libgomp1", "ca-certificates")
"""libgomp1 is the OpenMP runtime LightGBM links against; the rest make a working pip."""
# An imported rootfs has no image config at all; give it what `docker run IMAGE` expects.
IMAGE_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
]


def bootstrap_base_image(tag: str = BOOTSTRAP_BASE_IMAGE, suite: str = "bookworm", on_log: LogSink = print,
                         force: bool = False, client: docker.DockerClient | None = None) -> str:
    """Build the base image with debootstrap (about a minute) and return its id; an existing
    image of that tag is kept unless `force`."""
    client = connect_engine(client)
    if not force:
        try:
            image = client.images.get(tag)
            on_log(f"{tag} already exists ({image.short_id}); pass force to rebuild it")
            return image.id
        except docker.errors.ImageNotFound:
            pass
    if os.geteuid() != 0:
        raise WorkbenchError("building the base image needs root (debootstrap creates device files "
                             "and chroots): run `sudo workbench env bootstrap`")
    # sudo often leaves /usr/sbin, where debootstrap lives, off PATH.
    debootstrap = shutil.which("debootstrap", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if debootstrap is None:
        raise WorkbenchError("debootstrap is not installed: run `apt-get install debootstrap` and try again")

    workdir = Path(tempfile.mkdtemp(prefix="wb-bootstrap-"))
    rootfs, tarball = workdir / "rootfs", workdir / "rootfs.tar"
    try:
        on_log(f"debootstrap {suite} into {rootfs}")
        _run([debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}", suite, str(rootfs)], on_log)
        _drop_package_caches(rootfs)
        on_log("packing the root filesystem")
        _run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(tarball), "."], on_log)
        on_log(f"importing it as {tag}")
        repository, image_tag = parse_repository_tag(tag)
        # A file path (not a stream) makes the SDK upload without a read timeout.
        client.api.import_image(src=str(tarball), repository=repository, tag=image_tag, changes=IMAGE_CHANGES)
        image = client.images.get(tag)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise WorkbenchError(f"importing the root filesystem as {tag} failed: {exc}") from None
    finally:
        _remove_workdir(workdir, on_log)
    on_log(f"built {tag} ({image.short_id})")
    return image.id


def _run(command: list[str], on_log: LogSink) -> None:
    tail: deque[str] = deque(maxlen=15)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            on_log(tail[-1])
    if proc.returncode != 0:
        raise WorkbenchError(f"{Path(command[0]).name} failed with exit code {proc.returncode}:\n"
                             + "\n".join(f"  {line}" for line in tail))


def _drop_package_caches(rootfs: Path) -> None:
    """The downloaded .debs and apt's package lists are about 100 MB an image never needs
    (`apt-get update` fetches fresh lists), as in the official slim images."""
    for leftover in [*rootfs.glob("var/cache/apt/archives/*.deb"), *rootfs.glob("var/lib/apt/lists/*_*")]:
        leftover.unlink()


def _remove_workdir(workdir: Path, on_log: LogSink) -> None:
    """debootstrap bind-mounts /proc, /sys (and /dev inside containers) into the rootfs and
    may leave them mounted when it fails; deleting through a mount would delete the host's
    files, so unmount first and keep the folder if anything is still mounted."""
    for mount_point in sorted(_mounts_under(workdir), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount_point], check=False, capture_output=True)
    still_mounted = _mounts_under(workdir)
    if still_mounted:
        on_log(f"left {workdir} in place: {still_mounted[0]} is still mounted")
        return
    shutil.rmtree(workdir, ignore_errors=True)


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder.resolve()) + "/"
    with open("/proc/self/mountinfo") as fh:
        # The fifth field is the mount point, with spaces and such escaped in octal.
        points = [line.split()[4].encode().decode("unicode_escape") for line in fh]
    return [point for point in points if point.startswith(prefix)]

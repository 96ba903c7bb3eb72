"""Docker's refusals of a container's CPU and memory limits, told in the manifest's words.

The manifest refuses values no machine could give (workbench.core.manifest_reader); what only
the engine knows, how many CPUs it has, comes back from Docker as "Range of CPUs is from 0.01
to 2.00, as there are only 2 CPUs available". A user edits `environment.cpus`, so that is what
the message names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import docker.errors

from workbench.core.errors import WorkbenchError

CPU_RANGE_RE = re.compile(r"Range of CPUs is from [\d.]+ to [\d.]+, as there (?:is|are) only (\d+) CPUs? available",
                          re.IGNORECASE)
MEMORY_MINIMUM_RE = re.compile(r"Minimum memory limit allowed is (\d+)\s*MB", re.IGNORECASE)
UNMARSHAL_RE = re.compile(r"cannot unmarshal number .* field [\w.]*?\.?(\w+) of type", re.IGNORECASE)
CPU_QUOTA_RE = re.compile(r"cpu\.cfs_quota_us: invalid argument", re.IGNORECASE)
MEMORY_KEY = "environment.memory (or the stage's memory)"


class ResourceLimitError(WorkbenchError):
    """The engine refused the manifest's CPU or memory limit: every container of the project
    would be refused the same way, so there is no point trying another one."""


def limits_problem(exc: BaseException, cpus: float, memory_bytes: int) -> str | None:
    """What the manifest should change, when `exc` is Docker refusing a limit; else None."""
    if not isinstance(exc, docker.errors.APIError):
        return None
    text = str(exc.explanation or exc)
    if match := CPU_RANGE_RE.search(text):
        count = int(match.group(1))
        return f"environment.cpus = {cpus:g} but this machine has {count} CPU{'s' if count != 1 else ''}: " \
               "lower it in workbench.toml"
    if CPU_QUOTA_RE.search(text):
        return f"environment.cpus = {cpus:g} is below the smallest share the engine takes (0.01)"
    if match := MEMORY_MINIMUM_RE.search(text):
        return f"{MEMORY_KEY} = {_mib(memory_bytes)} is below Docker's minimum of {match.group(1)} MiB"
    if match := UNMARSHAL_RE.search(text):
        field = match.group(1)
        if field.lower().startswith(("memory", "memoryswap")):
            return f"{MEMORY_KEY} = {_mib(memory_bytes)} is more than Docker can take"
        if "cpu" in field.lower():
            return f"environment.cpus = {cpus:g} is more than Docker can take"
    return None


@contextmanager
def limits_named(cpus: float, memory_bytes: int) -> Iterator[None]:
    """Turn Docker's refusal of a limit into a ResourceLimitError naming the manifest key."""
    try:
        yield
    except docker.errors.APIError as exc:
        problem = limits_problem(exc, cpus, memory_bytes)
        if problem is None:
            raise
        raise ResourceLimitError(problem) from None


def _mib(size: int) -> str:
    return f"{size / 1024**2:g} MiB"

"""Docker's refusals of CPU and memory limits, as the engine words them, come back naming the
manifest key (the CLI tests in test_manifest_cli.py show it on a real engine)."""

from __future__ import annotations

import docker.errors
import pytest

from workbench.adapters.docker_limits import ResourceLimitError, limits_named, limits_problem

MiB = 1024**2
REFUSALS = [
    ("Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available", 64.0, 512 * MiB,
     "environment.cpus = 64 but this machine has 2 CPUs: lower it in workbench.toml"),
    ("Range of CPUs is from 0.01 to 1.00, as there are only 1 CPU available", 4.0, 512 * MiB,
     "environment.cpus = 4 but this machine has 1 CPU: lower it in workbench.toml"),
    ("Minimum memory limit allowed is 6MB", 1.0, 5 * MiB,
     "environment.memory (or the stage's memory) = 5 MiB is below Docker's minimum of 6 MiB"),
    ("json: cannot unmarshal number 1180591620717411303424 into Go struct field HostConfig.HostConfig.Memory "
     "of type int64", 1.0, 2**70, "environment.memory (or the stage's memory) = 1.1259e+15 MiB is more than Docker can take"),
    ("failed to create shim task: OCI runtime create failed: ... cpu.cfs_quota_us: invalid argument: unknown",
     0.001, 512 * MiB, "environment.cpus = 0.001 is below the smallest share the engine takes (0.01)"),
]


@pytest.mark.parametrize("explanation,cpus,memory,message", REFUSALS, ids=[r[3][:40] for r in REFUSALS])
def test_a_refused_limit_names_the_manifest_key(explanation, cpus, memory, message):
    error = docker.errors.APIError("400 Client Error", explanation=explanation)
    assert limits_problem(error, cpus, memory) == message
    with pytest.raises(ResourceLimitError, match="^environment"):
        with limits_named(cpus, memory):
            raise error


def test_other_engine_errors_pass_through_unchanged():
    error = docker.errors.APIError("500 Server Error", explanation="no space left on device")
    assert limits_problem(error, 1.0, 512 * MiB) is None
    assert limits_problem(ValueError("Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"),
                          64.0, MiB) is None
    with pytest.raises(docker.errors.APIError):
        with limits_named(1.0, 512 * MiB):
            raise error

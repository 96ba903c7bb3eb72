"""workspace.toml, parsed by the pure core (core/workspace_config.py), and where the scheduler
comes from: --scheduler, else $WORKBENCH_SCHEDULER, else the file."""

from __future__ import annotations

import pytest

from workbench.adapters.workspace_config_file import read_workspace_config
from workbench.core.errors import WorkbenchError
from workbench.core.workspace_config import (ClusterConfig, SchedulerChoice, WorkspaceConfig, WorkspaceConfigError,
                                             parse_workspace_config, resolve_scheduler)

SOURCE = "/ws/workspace.toml"


@pytest.mark.parametrize("text,expected", [
    ("", ClusterConfig()),
    ('[cluster]\nscheduler = "tcp://10.0.0.5:8786"\n', ClusterConfig("tcp://10.0.0.5:8786")),
    ('[cluster]\nscheduler = "sched.example:8786"\nrunner = "cluster"\n', ClusterConfig("sched.example:8786", "cluster")),
    ('[cluster]\nscheduler = "tls://[::1]:8786"\n', ClusterConfig("tls://[::1]:8786")),
    ('[cluster]\nrunner = "local"\n', ClusterConfig(None, "local")),
    # Tables this version does not know are left for later ones ([notify]).
    ('[notify]\nchannel = "#ml"\n[cluster]\nscheduler = "tcp://s:1"\n', ClusterConfig("tcp://s:1")),
])
def test_good_files(text, expected):
    assert parse_workspace_config(text, SOURCE) == WorkspaceConfig(expected, SOURCE)


@pytest.mark.parametrize("text,message", [
    ("[cluster\n", f"{SOURCE}: is not valid TOML"),
    ("cluster = 1\n", f"{SOURCE}: cluster: must be a table"),
    ('[cluster]\nschedular = "tcp://s:1"\n', f"{SOURCE}: cluster.schedular: unknown key (expected one of: runner, "
                                             "scheduler)"),
    ("[cluster]\nscheduler = 8786\n", f"{SOURCE}: cluster.scheduler: must be a string, got an integer 8786"),
    ('[cluster]\nscheduler = ""\n', f"{SOURCE}: cluster.scheduler: must not be empty"),
    ('[cluster]\nscheduler = "tcp://sched 1:8786"\n', f"{SOURCE}: cluster.scheduler: 'tcp://sched 1:8786' is not a "
                                                      "Dask scheduler address"),
    ('[cluster]\nscheduler = "http://sched:8786"\n', "is not a Dask scheduler address"),
    ('[cluster]\nscheduler = "tcp://sched:99999"\n', "port 99999 is not between 1 and 65535"),
    ('[cluster]\nrunner = "dask"\n', f"{SOURCE}: cluster.runner: must be one of auto, docker, local, cluster, "
                                     "got 'dask'"),
])
def test_bad_files_name_the_file_the_key_and_the_problem(text, message):
    with pytest.raises(WorkspaceConfigError) as caught:
        parse_workspace_config(text, SOURCE)
    assert message in str(caught.value)
    assert caught.value.exit_code == 3


CONFIG = WorkspaceConfig(ClusterConfig("tcp://from-file:8786"), SOURCE)


@pytest.mark.parametrize("flag,variable,config,expected", [
    ("tcp://flag:1", "tcp://var:1", CONFIG, SchedulerChoice("tcp://flag:1", "--scheduler")),
    (None, "tcp://var:1", CONFIG, SchedulerChoice("tcp://var:1", "$WORKBENCH_SCHEDULER")),
    (None, "", CONFIG, SchedulerChoice("tcp://from-file:8786", SOURCE)),  # an empty variable says nothing
    (None, None, CONFIG, SchedulerChoice("tcp://from-file:8786", SOURCE)),
    (None, None, WorkspaceConfig(path=SOURCE), None),
])
def test_the_flag_beats_the_variable_which_beats_the_file(flag, variable, config, expected):
    assert resolve_scheduler(flag, variable, config) == expected


@pytest.mark.parametrize("flag,variable,source", [("not an address", None, "--scheduler"),
                                                   (None, "tcp://a b:1", "$WORKBENCH_SCHEDULER")])
def test_a_bad_address_names_where_it_was_given(flag, variable, source):
    with pytest.raises(WorkbenchError, match=f"^{source.replace('$', '[$]')}: .* is not a Dask scheduler address"):
        resolve_scheduler(flag, variable, CONFIG)


def test_the_file_is_read_from_the_workspace_root(tmp_path):
    assert read_workspace_config(tmp_path) == WorkspaceConfig(path=str(tmp_path / "workspace.toml"))
    (tmp_path / "workspace.toml").write_bytes(b'[cluster]\nscheduler = "tcp://s:1"\n')
    assert read_workspace_config(tmp_path).cluster.scheduler == "tcp://s:1"
    (tmp_path / "workspace.toml").write_bytes(b'[cluster]\nscheduler = "\xff"\n')
    with pytest.raises(WorkspaceConfigError, match="workspace.toml: is not UTF-8 text .* on line 2"):
        read_workspace_config(tmp_path)

"""`--runner` and `--scheduler`, the same on every command that runs stages (run, watch, tui,
sweep, reproduce, drift): added by one function, so their choices and defaults cannot drift apart.

`--runner` defaults to None, not `auto`: left out, the workspace's default applies
(`[cluster] runner` in workspace.toml, else auto); `--runner auto` says auto whatever the
workspace says. The session resolves both (workbench.services.session).
"""

from __future__ import annotations

import argparse

from workbench.services.session import RUNNER_CHOICES


def add_runner_options(parser: argparse.ArgumentParser, what: str = "stages") -> None:
    """`what`: what the runner runs, for the help (`scoring and the retrain`)."""
    parser.add_argument("--runner", choices=RUNNER_CHOICES, default=None,
                        help=f"where {what} run: docker, local processes, or a Dask cluster (default: workspace.toml's "
                             "[cluster] runner, else auto: Docker when reachable, else local processes)")
    parser.add_argument("--scheduler", default=None, metavar="ADDR",
                        help="--runner cluster: the Dask scheduler, tcp://HOST:PORT (default: $WORKBENCH_SCHEDULER, "
                             "else workspace.toml's [cluster] scheduler)")

"""The `workbench` command: headless and scriptable. Every listing has `--json`.

Exit codes: 0 success; 1 a run failed or was cancelled; 2 a gate failed; 3 bad input or
environment (manifest, workspace, Docker); 4 a promotion or rollback was refused; 64 a usage
error (the command line itself: sysexits' EX_USAGE, not argparse's 2, which means a gate here);
128 + the number of the signal that stopped it (130 Ctrl-C/SIGINT, 143 SIGTERM, 129 SIGHUP; 141 when
the reader of its output went away, as with `| head`), after the run in flight is recorded cancelled.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from workbench import __version__
from workbench.cli.interrupts import Interrupted, guard, silence_output
from workbench.cli.runner_options import add_runner_options
from workbench.core.errors import WorkbenchError

EXIT_OK, EXIT_RUN_FAILED, EXIT_GATE_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_USAGE = 64


class UsageParser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; here 2 means "a gate failed"."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _global_options_everywhere(parser: argparse.ArgumentParser) -> None:
    """`-w/--workspace` after the subcommand too (`workbench run X -w WS`). SUPPRESS as the
    default: a subcommand that was not given it keeps the top-level value."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                sub.add_argument("--workspace", "-w", default=argparse.SUPPRESS,
                                 help="workspace folder (also accepted before the command)")
                _global_options_everywhere(sub)


def _jobs(text: str) -> int:
    """`--jobs N`: a whole number of stages, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of stages, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="workbench",
        description="Watched, containerized ML pipeline runs with lineage. See README.md and docs/.",
    )
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    parser.add_argument("--workspace", "-w", default=os.environ.get("WORKBENCH_WORKSPACE", "."),
                        help="workspace folder (default: the current folder, or $WORKBENCH_WORKSPACE)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a project's pipeline (unchanged stages are reused)")
    run.add_argument("project", help="project name in the workspace, or a path to its folder")
    run.add_argument("--stage", action="append", dest="stages", metavar="NAME",
                     help="run only this stage and what it depends on (repeatable)")
    add_runner_options(run)
    run.add_argument("--cold", action="store_true",
                     help="a fresh container per stage instead of the project's warm worker")
    run.add_argument("--jobs", "-j", type=_jobs, default=None, metavar="N",
                     help="stages that may run at once (default: environment.jobs, else CPUs / stage cpus)")
    run.add_argument("--fail-fast", action="store_true",
                     help="the first failed stage cancels the others (default: independent stages finish)")
    run.add_argument("--quiet", "-q", action="store_true", help="do not print stage logs")
    run.add_argument("--verbose", "-v", action="store_true",
                     help="also print routine lines (the environment image is up to date)")
    run.add_argument("--json", action="store_true", help="print the finished run as JSON")

    runs = sub.add_parser("runs", help="list recorded runs, newest first")
    runs.add_argument("project", nargs="?", help="only this project's runs")
    runs.add_argument("--limit", type=int, default=50, help="at most this many (default 50; 0 = all)")
    runs.add_argument("--offset", type=int, default=0)
    runs.add_argument("--json", action="store_true")

    show = sub.add_parser("show", help="one run: stages, metrics, gates")
    show.add_argument("run_id", type=int)
    show.add_argument("--json", action="store_true")

    lineage = sub.add_parser("lineage", help="what exactly produced a run: code, data, params, image")
    lineage.add_argument("run_id", type=int)
    lineage.add_argument("--json", action="store_true")

    from workbench.cli.compare_command import add_parser as add_compare

    add_compare(sub)

    from workbench.cli.explain_command import add_parser as add_explain

    add_explain(sub)

    from workbench.cli.card_command import add_parser as add_card

    add_card(sub)

    from workbench.cli.gc_command import add_parser as add_gc

    add_gc(sub)

    from workbench.cli.cluster_command import add_parser as add_cluster

    add_cluster(sub)

    from workbench.cli.serve_command import add_parser as add_serve

    add_serve(sub)

    from workbench.cli.sweep_command import add_parser as add_sweep

    add_sweep(sub)

    from workbench.cli.notify_command import add_parser as add_notify

    add_notify(sub)

    from workbench.cli.contract_command import add_parser as add_contract

    add_contract(sub)

    reproduce = sub.add_parser("reproduce", help="rerun a run's exact snapshot cold, nothing reused, and compare")
    reproduce.add_argument("run_id", type=int)
    add_runner_options(reproduce)
    reproduce.add_argument("--quiet", "-q", action="store_true", help="do not print stage logs")
    reproduce.add_argument("--verbose", "-v", action="store_true",
                     help="also print routine lines (the environment image is up to date)")
    reproduce.add_argument("--json", action="store_true")

    projects = sub.add_parser("projects", help="list the workspace's projects")
    projects.add_argument("--json", action="store_true")

    init = sub.add_parser("init", help="write a first workbench.toml for a folder of ML code")
    init.add_argument("folder", help="the project's folder (relative to the workspace, or a path)")
    init.add_argument("--force", action="store_true", help="replace an existing workbench.toml")
    init.add_argument("--json", action="store_true")

    watch = sub.add_parser("watch", help="rerun what each file change affects, until Ctrl-C")
    watch.add_argument("projects", nargs="*", metavar="PROJECT",
                       help="projects to watch (default: every project with watch.enabled)")
    add_runner_options(watch)
    watch.add_argument("--quiet", "-q", action="store_true", help="do not print stage logs")
    watch.add_argument("--verbose", "-v", action="store_true",
                     help="also print routine lines (the environment image is up to date)")
    watch.add_argument("--debounce-ms", type=int, default=None, metavar="MS",
                       help="quiet period before a burst of file events becomes one change "
                            "(default: each manifest's watch.debounce_ms, 300)")

    models = sub.add_parser("models", help="a project's model versions and which holds staging and production")
    models.add_argument("project")
    models.add_argument("--json", action="store_true")

    promote = sub.add_parser("promote", help="move staging or production to a model version (gated, audited)")
    promote.add_argument("project")
    promote.add_argument("version", type=int)
    promote.add_argument("--to", required=True, choices=["staging", "production"])
    promote.add_argument("--reason", help="why, for the audit trail")
    promote.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    promote.add_argument("--dry-run", action="store_true", help="only show the decision (exit 4 if refused)")
    promote.add_argument("--json", action="store_true")

    rollback = sub.add_parser("rollback", help="put production back on the version it replaced")
    rollback.add_argument("project")
    rollback.add_argument("--to", type=int, metavar="VERSION", help="a version that held the alias before")
    rollback.add_argument("--alias", choices=["staging", "production"], default="production")
    rollback.add_argument("--reason", help="why, for the audit trail")
    rollback.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    rollback.add_argument("--dry-run", action="store_true", help="only show the decision (exit 4 if refused)")
    rollback.add_argument("--json", action="store_true")

    history = sub.add_parser("history", help="the audit trail: promotions, rollbacks and refusals, newest first")
    history.add_argument("project")
    history.add_argument("--limit", type=int, default=100, help="at most this many (default 100; 0 = all)")
    history.add_argument("--verify", action="store_true", help="check the audit trail: its keyed chain and anchor, the version seals, and that the aliases match it")
    history.add_argument("--json", action="store_true")

    mirror = sub.add_parser("mirror", help="the MLflow mirror: status, sync")
    mirror_sub = mirror.add_subparsers(dest="mirror_command", metavar="MIRROR_COMMAND")
    mirror_status = mirror_sub.add_parser("status", help="in sync, N pending, or the last error")
    mirror_status.add_argument("--json", action="store_true")
    mirror_sync = mirror_sub.add_parser("sync", help="send what is pending to MLflow now")
    mirror_sync.add_argument("--timeout", type=float, default=None, help="seconds to spend at most (default 60)")
    mirror_sync.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    mirror_sync.add_argument("--json", action="store_true")

    drift = sub.add_parser("drift", help="drift checks of new data: latest batches, or check one now")
    drift.add_argument("project")
    drift.add_argument("batch", nargs="?", metavar="BATCH",
                       help="a batch file (a path, or a name in the project's [data] incoming folder): check it now "
                            "if not checked yet, and retrain if the manifest's policy says so")
    drift.add_argument("--no-retrain", action="store_true", help="check only, even if the policy would retrain")
    add_runner_options(drift, "scoring and the retrain")
    drift.add_argument("--quiet", "-q", action="store_true", help="do not print stage logs")
    drift.add_argument("--verbose", "-v", action="store_true",
                     help="also print routine lines (the environment image is up to date)")
    drift.add_argument("--json", action="store_true")

    doctor = sub.add_parser("doctor", help="check Docker, the base image and the workspace")
    doctor.add_argument("--json", action="store_true")

    tui = sub.add_parser("tui", help="the terminal workbench (the default with no command)")
    tui.add_argument("tui_workspace", nargs="?", metavar="WORKSPACE", help="workspace folder (default: --workspace)")
    add_runner_options(tui)
    tui.add_argument("--no-watch", action="store_true",
                     help="do not start watching projects on opening (w toggles watching per project)")

    env = sub.add_parser("env", help="execution environments")
    env_sub = env.add_subparsers(dest="env_command", metavar="ENV_COMMAND")
    boot = env_sub.add_parser("bootstrap", help="build the offline Python base image (debootstrap, no registry)")
    boot.add_argument("--tag", default=None, help="image tag (default: workbench/python-base:bookworm)")
    boot.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    _global_options_everywhere(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from workbench.cli import commands
    from workbench.cli.compare_command import glue_dash_values
    from workbench.cli.render import Printer

    parser = build_parser()
    argv = glue_dash_values(list(argv if argv is not None else sys.argv[1:]))
    args = parser.parse_args(argv)
    printer = Printer(json_mode=getattr(args, "json", False))
    printer.verbose = getattr(args, "verbose", False)
    if args.command is None:  # `workbench` alone opens the TUI on the workspace
        args = parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "tui"])
    if args.command == "env" and args.env_command is None:
        parser.parse_args(["env", "--help"])
    if args.command == "mirror" and args.mirror_command is None:
        parser.parse_args(["mirror", "--help"])
    if args.command == "cluster" and args.cluster_command is None:
        parser.parse_args(["cluster", "--help"])
    if args.command == "notify" and args.notify_command is None:
        parser.parse_args(["notify", "--help"])
    if args.command == "contract" and args.contract_command is None:
        parser.parse_args(["contract", "--help"])
    handler = getattr(commands, f"cmd_{args.command}")
    # SIGTERM, SIGHUP and a closed pipe take Ctrl-C's path: the run in flight is cancelled and
    # recorded, its containers removed, and the exit code says which signal (cli/interrupts.py).
    guard.install()
    for console in (printer.out, printer.err):
        console.on_broken_pipe = guard.output_closed  # rich's default exits with 1 mid-run
    try:
        code = handler(args, printer, Path(args.workspace))
        return guard.exit_code or code
    except WorkbenchError as exc:
        printer.error(str(exc))
        return guard.exit_code or exc.exit_code
    except KeyboardInterrupt as exc:
        if guard.signum != signal.SIGPIPE:
            printer.error(str(exc) or "interrupted")
        return exc.exit_code if isinstance(exc, Interrupted) else EXIT_INTERRUPTED
    except BrokenPipeError:  # a plain write (--json) to a reader that went away
        silence_output(1)
        return 128 + signal.SIGPIPE
    finally:
        guard.uninstall()



if __name__ == "__main__":
    sys.exit(main())

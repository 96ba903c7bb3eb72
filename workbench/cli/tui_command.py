"""`workbench` / `workbench tui [WORKSPACE]`: open the Textual workbench on a workspace."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.cli.render import Printer
from workbench.services.session import WorkbenchSession

EXIT_OK, EXIT_BAD_INPUT = 0, 3


def cmd_tui(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        printer.error("the workbench TUI needs a terminal; for scripts use the commands (`workbench --help`)")
        return EXIT_BAD_INPUT
    root = Path(args.tui_workspace) if args.tui_workspace else workspace
    session = WorkbenchSession(root, runner=args.runner, scheduler=args.scheduler)  # a bad folder fails here

    from workbench.ui.app import WorkbenchApp

    app = WorkbenchApp(root, args.runner, session=session, watch_on_start=False if args.no_watch else None)
    app.run()
    return app.return_code or EXIT_OK

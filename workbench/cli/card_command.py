"""`workbench card PROJECT VERSION [--json]`: the model card of a version (Markdown by default):
lineage, data profile, metrics, evaluation slices, gates, explanations, promotions and the
reproducibility verdict. A promotion writes the same card into the deploy release."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.cli.render import Printer
from workbench.core.model_card import render_markdown
from workbench.services.model_card import model_card
from workbench.services.session import WorkbenchSession

EXIT_OK = 0


def add_parser(sub) -> None:
    card = sub.add_parser("card", help="a model version's card: lineage, data, metrics, slices, gates, "
                                       "explanations, promotions, reproducibility (Markdown or --json)")
    card.add_argument("project")
    card.add_argument("version", type=int)
    card.add_argument("--json", action="store_true", help="the card as JSON (what model-card.json in a release holds)")


def cmd_card(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    session = WorkbenchSession(workspace, notice=printer.notice)
    card = model_card(session, args.project, args.version)
    # Written as is, not through Rich: Markdown's brackets and pipes must reach a file intact.
    text = json.dumps(card, indent=2, default=str) + "\n" if args.json else render_markdown(card)
    sys.stdout.write(text)
    sys.stdout.flush()
    return EXIT_OK

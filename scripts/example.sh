#!/usr/bin/env bash
# From a fresh clone: set up, run the example project's pipeline, then open the TUI on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
workbench --workspace projects run telco-churn "$@" || echo "(the run did not pass; the TUI shows why)"
# Then the workbench itself, on a terminal: it watches the project, so edit
# projects/telco-churn/params.toml and watch the affected stages rerun.
if [ -t 1 ]; then exec workbench --workspace projects; fi

#!/usr/bin/env bash
# From a fresh clone: set up, then run the example project's pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec workbench --workspace projects run telco-churn "$@"

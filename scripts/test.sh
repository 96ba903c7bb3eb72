#!/usr/bin/env bash
# From a fresh clone: set up (Docker, base image, package), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec python3 -m pytest "$@"

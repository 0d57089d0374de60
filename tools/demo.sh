#!/usr/bin/env bash
# Quick start 1: set up .venv (first run only) and continue a rough mask on a real MRI slice
# with the CPU defaults. Extra arguments go to `ibisagent demo` (see --help).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/tools/setup_env.sh" demo
cd "$root"
exec "$root/.venv/bin/ibisagent" demo "$@"

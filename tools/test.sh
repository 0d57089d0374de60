#!/usr/bin/env bash
# Quick start 2: set up .venv with the test packages (first run only) and run the whole test
# suite. Extra arguments go to pytest. Exits non-zero on any failure, and also when no test ran.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/tools/setup_env.sh" test || exit $?
cd "$root"
"$root/.venv/bin/python" -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: treating that as a failure" >&2
  exit 1
fi
exit "$status"

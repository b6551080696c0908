#!/usr/bin/env bash
# The GPU check, one command for a lent GPU machine (no network, Python 3.12 with torch, numpy, scipy, xarray,
# pandas, safetensors and tqdm): installs what the check needs from the wheels that benchmarks/gpu_prepare.sh
# downloaded into .whl/ (only when they do not import already), then runs benchmarks/gpu_check.py: the
# CUDA-relevant tests and the headline figures with --device cuda, one JSON of results.
#
#   bash benchmarks/gpu_check.sh [--device cuda|cpu] [--quick] [--out DIR] [--parts a,b] [--emulate-image]
#
# Writes gpu_check.json, gpu_check.log and pytest.log to --out DIR, else $OUT, else runs/gpu-check. About
# 8 minutes at most on a GPU machine (the parts' budgets: see benchmarks/gpu_check.py); about a minute with
# --device cpu --quick. Exits 1 when a part failed (the JSON says which and why), 0 when all passed.
set -u
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/site}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

start=$(date +%s.%N)
if "$PY" -m benchmarks.gpu_check --check-imports 2>/dev/null; then
    GPU_CHECK_INSTALL="skipped: every carried package imports already"
elif compgen -G ".whl/*.whl" >/dev/null; then
    n=$(ls .whl/*.whl | wc -l)
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            .whl/*.whl; then
        export PYTHONPATH="$SITE:$PYTHONPATH"
        GPU_CHECK_INSTALL="installed $n wheels from .whl/ into $SITE"
        missing=$("$PY" -m benchmarks.gpu_check --check-imports 2>&1) \
            || GPU_CHECK_INSTALL="$GPU_CHECK_INSTALL, but some do not import: $missing"
    else
        GPU_CHECK_INSTALL="failed: pip could not install the $n wheels of .whl/ into $SITE"
    fi
else
    GPU_CHECK_INSTALL="failed: packages missing ($("$PY" -m benchmarks.gpu_check --check-imports 2>&1)) and no\
 wheels in .whl/ (run benchmarks/gpu_prepare.sh where pip reaches an index, and carry .whl)"
fi
GPU_CHECK_INSTALL_SECONDS=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
export GPU_CHECK_INSTALL GPU_CHECK_INSTALL_SECONDS
echo "gpu_check: install $GPU_CHECK_INSTALL ($GPU_CHECK_INSTALL_SECONDS s)" >&2
exec "$PY" -m benchmarks.gpu_check "$@"

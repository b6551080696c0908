#!/usr/bin/env bash
# Prepare the GPU check (benchmarks/gpu_check.sh) here, where pip reaches a package index, for a GPU machine
# that reaches nothing:
#   .whl/       the cp312 manylinux x86-64 (or pure-Python) wheels of the packages the check needs that the GPU
#               image lacks, at the versions benchmarks/gpu_check.py pins (CARRIED), nothing else;
#   .gpu-data/  byrd_mcor/ (the Byrd tensors) and diffice/SynData_exp1.mat from ../shared/data (or
#               $ICEVIZ_SHARED_DATA), and cache/sim/ the default ensemble's spin-up (computed here once if the
#               cache lacks it, so the GPU machine runs no 100-year spin-up).
# Both folders are ignored by git; the device tool sends them when `carry` names them. Prints their sizes and
# the total that would travel (the tool's limit: 64 MiB with the working tree).
#
#   bash benchmarks/gpu_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SHARED=${ICEVIZ_SHARED_DATA:-../shared/data}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# --- wheels: a fresh folder, so that no second version of a package stays behind -------------------------------
new=$(mktemp -d)
trap 'rm -rf "$new"' EXIT
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
specs=$("$PY" -m benchmarks.gpu_check --wheels)
for spec in $specs; do
    echo "gpu_prepare: $spec" >&2
    get() { "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
                "${platforms[@]}" "$@" -d "$new" "$spec"; }
    if ! get 2>/dev/null; then
        extra=()
        for n in 24 31 34 35 39; do extra+=(--platform "manylinux_2_${n}_x86_64"); done
        get "${extra[@]}"  # fails the script, loudly, when no wheel for Python 3.12 exists at that version
    fi
done
rm -rf .whl
mkdir .whl
mv "$new"/*.whl .whl/

# --- data ------------------------------------------------------------------------------------------------------
rm -rf .gpu-data
mkdir -p .gpu-data/byrd_mcor .gpu-data/diffice .gpu-data/cache/sim
cp "$SHARED"/byrd_mcor/*.pt .gpu-data/byrd_mcor/
cp "$SHARED"/diffice/SynData_exp1.mat .gpu-data/diffice/
chmod -R u+w .gpu-data
"$PY" - <<'EOF'
import shutil
import sys

from iceviz.sim.ensemble import DEFAULT_SCENARIO
from iceviz.sim.model import Simulator
from iceviz.sim.scenarios import get_scenario
from iceviz.sim.spinup import spin_up_path, spun_up

simulator = Simulator(get_scenario(DEFAULT_SCENARIO))
path = spin_up_path(simulator)
if not path.is_file():
    print(f"gpu_prepare: spinning up {DEFAULT_SCENARIO} (once; cached in {path.parent})", file=sys.stderr)
    spun_up(simulator)
shutil.copy2(path, f".gpu-data/cache/sim/{path.name}")
EOF

# --- sizes -----------------------------------------------------------------------------------------------------
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | du -cb --files0-from=- 2>/dev/null \
        | tail -1 | cut -f1)
whl=$(du -sb .whl | cut -f1)
data=$(du -sb .gpu-data | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo ".whl: $(ls .whl | wc -l) wheels, $(mib "$whl"); .gpu-data: $(mib "$data"); working tree: $(mib "$tree");" \
     "together $(mib $((tree + whl + data))) of the 64 MiB that may travel"
if [ $((tree + whl + data)) -gt $((64 * 1048576)) ]; then
    echo "gpu_prepare: too large to travel" >&2
    exit 1
fi

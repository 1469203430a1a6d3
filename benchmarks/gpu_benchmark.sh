#!/usr/bin/env bash
# The replay benchmark on a GPU node, in one command:
#
#     bash benchmarks/gpu_benchmark.sh OUTDIR [--max-episodes 1e5] [--grid-stores one]
#
# writes OUTDIR/RESULTS_GPU.md (and OUTDIR/gpu_benchmark.log).  Needs Python with JAX (a CUDA
# build to measure a GPU), numpy, scipy and h5py; nothing is installed and Hydra is not needed:
# the package runs from this checkout through PYTHONPATH.  Takes under 8 minutes with the
# defaults (no measurement starts that would end after --budget-s, 390 s); on a CPU,
# --max-episodes 1e5 --grid-stores one is a smoke run of a few minutes.
set -euo pipefail

if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: bash benchmarks/gpu_benchmark.sh OUTDIR [gpu_benchmark.py options]" >&2
    exit 2
fi
out=$1
shift
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

{
    echo "gpu_benchmark: $("$python" --version 2>&1), repo $repo, $(date -u +%FT%TZ)"
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    fi
    "$python" -c 'import jax; print("jax", jax.__version__, jax.devices())'
    "$python" "$repo/benchmarks/gpu_benchmark.py" --out "$out/RESULTS_GPU.md" "$@"
} 2>&1 | tee "$out/gpu_benchmark.log"
test -s "$out/RESULTS_GPU.md"
echo "gpu_benchmark: wrote $out/RESULTS_GPU.md"

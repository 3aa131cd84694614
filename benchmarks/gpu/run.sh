#!/usr/bin/env bash
# GPU throughput of the Ray workers: evaluations per minute, peak GPU memory per actor
# and mean GPU utilisation for MiniLM and for a ~270 M-parameter Llama built from config
# (random weights), each on 1 actor (1 GPU) and on 2 actors (0.5 GPU each), bf16.
# Sized to finish in under 8 minutes on one GPU (a hard timeout of 470 s guards it).
# Writes benchmarks/results/gpu.json and prints a table and a RESULT line.
#
#   bash benchmarks/gpu/run.sh                # uses .venv/bin/python
#   PY=/path/to/python bash benchmarks/gpu/run.sh --evals 10
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "error: $PY has no CUDA-enabled torch or sees no GPU; install a CUDA build of torch" \
         "(pip install torch) or point PY at a Python that has one" >&2
    exit 2
fi
"$PY" -c 'import ray, prunetune' || { echo "error: $PY lacks ray or prunetune: pip install -e ." >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export PRUNETUNE_CACHE=${PRUNETUNE_CACHE:-$(mktemp -d /tmp/pt-gpu-cache-XXXX)}
timeout 470 "$PY" benchmarks/gpu/gpu_bench.py "$@"

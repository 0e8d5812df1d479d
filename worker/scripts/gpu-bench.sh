#!/usr/bin/env bash
# Packed training on a GPU: jsc-tiny over the seed grid (batch 64/128/256/512) with packs of
# K = 1, 8, 64, 512 trials (seeds 0..max(8,K)-1 per batch size), plus the PyTorch reference one
# trial at a time on the same GPU; prints trials/hour and trial-samples/s for each. One call, well
# under 10 minutes on an H200 with the defaults.
#
# Build here (no GPU needed), then carry the binary to the GPU machine and run it there:
#   CUDARC_CUDA_VERSION=13000 cargo build --release -p jetsweep-worker --features cuda
#   worker/scripts/gpu-bench.sh [PATH/TO/jetsweep-worker]
#
# Environment: DEVICE (cuda:0; `cpu` runs the same steps on one CPU core, to check the script),
# DATASET (synthetic:630000), EPOCHS (2), PACKS ("1 8 64 512"), BATCH_SIZES ("64 128 256 512"),
# PYTHON (python3: the reference runs only where it imports torch with CUDA), STEP_LIMIT (seconds
# one training command may take, 240). burn-cuda compiles kernels with NVRTC, which needs the CUDA
# headers: CUDA_PATH from the environment, else from nvcc's location, else /usr/local/cuda.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-${CARGO_TARGET_DIR:-target}/release/jetsweep-worker}
[ -x "$bin" ] || { echo "error: no jetsweep-worker at $bin (build it with --features cuda)" >&2; exit 2; }
device=${DEVICE:-cuda:0}
dataset=${DATASET:-synthetic:630000}
epochs=${EPOCHS:-2}
packs=${PACKS:-1 8 64 512}
batch_sizes=${BATCH_SIZES:-64 128 256 512}
python=${PYTHON:-python3}
limit=${STEP_LIMIT:-240}
if [ -z "${CUDA_PATH:-}" ]; then
  if command -v nvcc >/dev/null; then CUDA_PATH=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")"); else CUDA_PATH=/usr/local/cuda; fi
fi
export CUDA_PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" prepare --dataset "$dataset" --out "$work/data" >/dev/null 2>&1
rows=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['train_rows'])" "$work/data/provenance.json" 2>/dev/null \
  || python3 -c "import numpy as np,sys; print(np.load(sys.argv[1], mmap_mode='r').shape[0])" "$work/data/y_train.npy")
echo "device $device, dataset $dataset ($rows training rows), $epochs epochs per trial"
printf '%-22s %8s %10s %14s %18s\n' run trials "wall (s)" "trials/hour" "trial-samples/s"

report() { # name trials start end
  python3 -c "
import sys
name, trials, rows, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[5]), int(sys.argv[6])
wall = float(sys.argv[4]) - float(sys.argv[3])
print(f'{name:22} {trials:8d} {wall:10.1f} {trials / wall * 3600:14,.0f} {trials * rows * epochs / wall:18,.0f}')
" "$1" "$2" "$3" "$4" "$rows" "$epochs"
}

for k in $packs; do
  seeds=$(( k > 8 ? k : 8 ))
  start=$(date +%s.%N)
  for bs in $batch_sizes; do
    timeout "$limit" "$bin" train --device "$device" --dataset "$work/data" --batch-size "$bs" \
      --max-epochs "$epochs" --lr 1e-3 --seed "0-$((seeds - 1))" --pack "$k" --json \
      > "$work/k$k-b$bs.jsonl" 2> "$work/k$k-b$bs.err" \
      || { echo "K=$k batch $bs failed or ran past ${limit}s:"; tail -3 "$work/k$k-b$bs.err"; continue 2; }
  done
  end=$(date +%s.%N)
  report "jetsweep K=$k" $(( seeds * $(echo $batch_sizes | wc -w) )) "$start" "$end"
done

if [ "$device" != cpu ] && ! "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "reference skipped: $python has no torch with CUDA here"
else
  tdev=${device/cuda:*/cuda}
  start=$(date +%s.%N)
  for bs in $batch_sizes; do
    timeout "$limit" "$python" "$here/../../../shared/bench/jsc_reference.py" "$work/data" --device "$tdev" \
      --batch-size "$bs" --max-epochs "$epochs" --lr 1e-3 > /dev/null 2> "$work/ref-b$bs.err" \
      || { echo "reference batch $bs failed:"; tail -3 "$work/ref-b$bs.err"; }
  done
  end=$(date +%s.%N)
  report "PyTorch reference (1)" "$(echo $batch_sizes | wc -w)" "$start" "$end"
fi

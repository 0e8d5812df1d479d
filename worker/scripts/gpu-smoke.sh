#!/usr/bin/env bash
# GPU smoke test: on a machine with an NVIDIA GPU, a 2-epoch jsc-tiny training on cuda:0 from a
# jetsweep-worker built here with `CUDARC_CUDA_VERSION=13000 cargo build --release -p jetsweep-worker
# --features cuda`; prints samples/s per batch size, next to the same run on one CPU core.
#
#   worker/scripts/gpu-smoke.sh [PATH/TO/jetsweep-worker]
#
# burn-cuda compiles its kernels with NVRTC, which needs the CUDA headers: CUDA_PATH is taken from the
# environment, else from nvcc's location, else /usr/local/cuda.
set -euo pipefail
bin=${1:-${CARGO_TARGET_DIR:-target}/release/jetsweep-worker}
[ -x "$bin" ] || { echo "error: no jetsweep-worker at $bin (build it with --features cuda)" >&2; exit 2; }
if [ -z "${CUDA_PATH:-}" ]; then
  if command -v nvcc >/dev/null; then CUDA_PATH=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")"); else CUDA_PATH=/usr/local/cuda; fi
fi
export CUDA_PATH
echo "CUDA_PATH=$CUDA_PATH"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "(nvidia-smi not found)"

for bs in ${BATCH_SIZES:-128 1024 8192}; do
  for dev in cuda:0 cpu; do
    start=$(date +%s.%N)
    out=$("$bin" train --device "$dev" --model jsc-tiny --dataset synthetic --batch-size "$bs" --max-epochs 2 --lr 1e-3 --json 2>/tmp/gpu-smoke.err) || {
      echo "error: $dev batch $bs failed:"; cat /tmp/gpu-smoke.err; exit 1; }
    end=$(date +%s.%N)
    echo "$out" | python3 -c '
import json, sys
dev, bs, wall = sys.argv[1], sys.argv[2], float(sys.argv[4]) - float(sys.argv[3])
lines = [json.loads(l) for l in sys.stdin if l.startswith("{")]
epochs = [l for l in lines if "epoch" in l]
fin = [l for l in lines if l.get("final")][0]
sps = ", ".join(f"{e[\"samples_per_second\"]:.0f}" for e in epochs)
print(f"{dev:7} batch {bs:>5}: samples/s per epoch [{sps}]  test acc {fin[\"test_acc\"]:.4f}  wall {wall:.1f} s")
' "$dev" "$bs" "$start" "$end"
  done
done

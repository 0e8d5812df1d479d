#!/usr/bin/env bash
# The FPGA flow, end to end: a small jsc-tiny sweep run by jetsweep, its best model exported to
# ONNX by `jetsweep model`, converted by hls4ml at ap_fixed<16,6> (rounding to nearest, saturating)
# and compiled to its C++ emulation, which must classify >= 99 % of the test rows as the float
# model does (hls4ml_check.py). Run by .ci/run.
#
#     coordinator/scripts/fpga_check.sh BIN_DIR PYTHON
#
# BIN_DIR holds jetsweep and jetsweep-worker; PYTHON has hls4ml, onnx, qonnx and onnxruntime.
set -euo pipefail
BIN=$1
PY=$2
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
SERVE=
cleanup() {
  [ -n "$SERVE" ] && kill "$SERVE" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
cat > "$WORK/sweep.toml" <<'TOML'
name = "fpga"
dataset = "synthetic:20000"
val_fraction = 0.2
[defaults]
model = "jsc-tiny"
max_epochs = 6
batch_size = 256
learning_rate = 3e-3
[grid]
seed = [0, 1]
TOML
"$BIN/jetsweep" run "$WORK/sweep.toml" --workers 2 --state "$WORK/state/state.db" > /dev/null 2> "$WORK/run.log"
"$BIN/jetsweep" serve --state "$WORK/state/state.db" --listen 127.0.0.1:0 > "$WORK/url" 2> "$WORK/serve.log" &
SERVE=$!
for _ in $(seq 100); do
  [ -s "$WORK/url" ] && break
  sleep 0.1
done
URL=$(head -1 "$WORK/url")
"$BIN/jetsweep" model fpga-1 --out "$WORK/best.onnx" --coordinator "$URL"
"$BIN/jetsweep-worker" prepare --dataset synthetic:20000 --val-fraction 0.2 --out "$WORK/data" > /dev/null 2>&1
"$PY" "$HERE/hls4ml_check.py" "$WORK/best.onnx" "$WORK/data" 2>&1 | tail -1
# The script's own exit status (1 below 99 % agreement), not tail's.
exit "${PIPESTATUS[0]}"

#!/usr/bin/env python3
"""An exported model into the FPGA flow: the ONNX file `jetsweep model` writes, converted by hls4ml
(qonnx's cleanup first, the Vivado backend, io_parallel) at ap_fixed<16,6>, compiled to hls4ml's C++
emulation (g++ only, no vendor tools) and run on a prepared dataset's test split. Reports how many
rows the fixed-point model classifies as the float model does (onnxruntime), the largest output
difference, and the test accuracy of both.

    target/release/jetsweep-worker prepare --dataset synthetic:20000 --val-fraction 0.2 --out DATA
    jetsweep model SWEEP --out best.onnx
    python3 coordinator/scripts/hls4ml_check.py best.onnx DATA [--precision 'fixed<16,6,RND_CONV,SAT>']

Needs `pip install hls4ml onnx qonnx onnxruntime` and g++. Rounding and overflow: hls4ml's default
is truncation and wrap-around (AP_TRN, AP_WRAP), under which a ReLU output past the type's range
comes out negative; this script asks for rounding to nearest and saturation (RND_CONV, SAT) unless
--precision says otherwise. Exits 1 when fewer than --min-agreement (default 0.99) of the rows
agree.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="the exported .onnx file")
    ap.add_argument("data", help="a prepared .npy directory (x_test.npy, y_test.npy)")
    ap.add_argument("--precision", default="fixed<16,6,RND_CONV,SAT>")
    ap.add_argument("--min-agreement", type=float, default=0.99)
    ap.add_argument("--rows", type=int, default=0, help="test rows to use (0: all)")
    args = ap.parse_args()

    import hls4ml
    import onnxruntime
    import qonnx.util.cleanup
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul

    x = np.load(os.path.join(args.data, "x_test.npy")).astype(np.float32)
    y = np.load(os.path.join(args.data, "y_test.npy"))
    if args.rows:
        x, y = x[: args.rows], y[: args.rows]
    session = onnxruntime.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    reference = session.run(["logits"], {"x": x})[0]

    started = time.time()
    model = qonnx.util.cleanup.cleanup_model(ModelWrapper(args.model))
    model = model.transform(ConvertToChannelsLastAndClean()).transform(GemmToMatMul())
    model = qonnx.util.cleanup.cleanup_model(model)
    config = hls4ml.utils.config_from_onnx_model(
        model, granularity="name", backend="Vivado", default_precision=args.precision)
    with tempfile.TemporaryDirectory() as out:
        hls_model = hls4ml.converters.convert_from_onnx_model(
            model, output_dir=os.path.join(out, "prj"), backend="Vivado",
            io_type="io_parallel", hls_config=config)
        hls_model.compile()
        compiled = time.time()
        fixed = np.asarray(hls_model.predict(np.ascontiguousarray(x)), dtype=np.float64).reshape(reference.shape)
    agree = float((fixed.argmax(axis=1) == reference.argmax(axis=1)).mean())
    print(f"{args.model}: hls4ml {hls4ml.__version__}, Vivado backend, io_parallel, {args.precision}: "
          f"{agree:.2%} of {len(x)} test rows classified as the float model "
          f"(max output difference {np.abs(fixed - reference).max():.4f}); "
          f"test accuracy float {(reference.argmax(axis=1) == y).mean():.4f}, "
          f"fixed-point {(fixed.argmax(axis=1) == y).mean():.4f}; "
          f"convert + compile {compiled - started:.1f} s")
    if agree < args.min_agreement:
        sys.exit(1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""An exported model, checked from outside jetsweep: the safetensors file `jetsweep model` writes,
evaluated with plain numpy (no PyTorch), or the ONNX file, checked by `onnx.checker` and run by
onnxruntime, on the test split of a prepared dataset, against the test accuracy its metadata
records for that epoch (what the sweep's results table reports).

    target/release/jetsweep-worker prepare --dataset synthetic:20000 --val-fraction 0.2 --out DATA
    jetsweep model SWEEP --out best.safetensors      # or best.onnx
    python3 coordinator/scripts/check_export.py best.safetensors DATA

Needs `pip install numpy safetensors` (and `onnx onnxruntime` for .onnx). Prints the accuracy;
exits 1 when it differs from the recorded one at 4 decimals, 2 on a file it cannot read.
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

EPS = 1e-5  # BatchNorm1d's default, as MASE and jetsweep train with


def layers(tensors):
    """The model's modules in order, from MASE's state_dict names: container.INDEX.field."""
    by_index = {}
    for name, value in tensors.items():
        _, index, field = name.rsplit(".", 2)
        by_index.setdefault(int(index), {})[field] = value
    return [by_index[i] for i in sorted(by_index)]


def forward(modules, x):
    """BatchNorm in eval mode, Linear, and a ReLU after each BatchNorm-or-Linear block, as MASE's
    Sequential: BN ReLU, then Linear [BN] ReLU stages (ReLUs hold no tensors, so they are implied)."""
    out = x.astype(np.float32)
    for i, m in enumerate(modules):
        if "running_mean" in m:
            out = (out - m["running_mean"]) / np.sqrt(m["running_var"] + EPS) * m["weight"] + m["bias"]
        else:
            out = out @ m["weight"].T + m["bias"]
        following = modules[i + 1] if i + 1 < len(modules) else None
        # A Linear followed by its BatchNorm gets its ReLU after the BatchNorm.
        if not (following is not None and "running_mean" in following and "running_mean" not in m):
            out = np.maximum(out, 0)
    return out


def onnx_accuracy(path, x, y):
    """onnx.checker's verdict, then onnxruntime's predictions: (accuracy, metadata)."""
    import onnx
    import onnxruntime

    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"x": x.astype(np.float32)})[0]
    return float((logits.argmax(axis=1) == y).mean()), meta


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, data = sys.argv[1], sys.argv[2]
    if path.endswith(".onnx"):
        x, y = np.load(f"{data}/x_test.npy"), np.load(f"{data}/y_test.npy")
        try:
            accuracy, meta = onnx_accuracy(path, x, y)
        except Exception as e:  # noqa: BLE001 - a file the checker or the runtime refuses
            print(f"{path}: {e}", file=sys.stderr)
            sys.exit(2)
        report(path, meta, accuracy, "onnxruntime")
        return
    try:
        with safe_open(path, "np") as f:
            meta = f.metadata() or {}
        tensors = {k: v for k, v in load_file(path).items() if not k.endswith("num_batches_tracked")}
    except Exception as e:  # noqa: BLE001 - any unreadable file is one answer
        print(f"{path}: {e}", file=sys.stderr)
        sys.exit(2)
    x = np.load(f"{data}/x_test.npy")
    y = np.load(f"{data}/y_test.npy")
    accuracy = float((forward(layers(tensors), x).argmax(axis=1) == y).mean())
    report(path, meta, accuracy, "numpy")


def report(path, meta, accuracy, by):
    """Prints the accuracy beside the recorded one; exits 1 when they differ at 4 decimals."""
    recorded = json.loads(meta.get("metrics", "{}")).get("test_acc")
    print(f"{path}: {meta.get('model')} after epoch {meta.get('epoch')}: {by} test accuracy "
          f"{accuracy:.4f}; recorded {recorded if recorded is None else f'{recorded:.4f}'}")
    if recorded is None or f"{accuracy:.4f}" != f"{recorded:.4f}":
        sys.exit(1)


if __name__ == "__main__":
    main()

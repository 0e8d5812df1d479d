#!/usr/bin/env python3
"""The peer for jetsweep's end-to-end sweep benchmark: the same grid run by Ray Tune.

Each trial is the PyTorch reference trainer (../shared/bench/jsc_reference.py, MASE's recipe) run
in-process in a Ray worker with one thread, as a Ray Tune user would wrap a training script: one
trial per CPU, `--cpus` at once. Prints one JSON line per trial (its config, final test accuracy,
seconds) and a last line with the wall time of the whole grid, from `Tuner.fit()` to its end
(Ray's own start-up, `ray.init`, is timed apart and not counted).

    python3 -m venv .venv-ray && .venv-ray/bin/pip install "ray[tune]" numpy torch
    target/release/jetsweep-worker prepare --dataset synthetic:630000 --out /tmp/jsc630k
    .venv-ray/bin/python worker/scripts/ray_tune_grid.py /tmp/jsc630k \\
        --batch-sizes 64,128,256,512 --seeds 0 --max-epochs 10 --lr 1e-3 --cpus 2

The jetsweep side of the comparison is `jetsweep run` on a sweep file with the same grid and
dataset (worker/docs/speed.md says how both were run and what they measured).
"""
import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
import time


def reference_path():
    """jsc_reference.py: $JSC_REFERENCE, else ../shared/bench/ beside the repository."""
    if os.environ.get("JSC_REFERENCE"):
        return os.environ["JSC_REFERENCE"]
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "..", "shared", "bench", "jsc_reference.py"))


def trial(config):
    """One trial: the reference trainer's main() with this config's arguments; its per-epoch JSON
    lines are read back and the last epoch's numbers reported to Tune."""
    from ray import tune

    spec = importlib.util.spec_from_file_location("jsc_reference", config["reference"])
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    argv = [
        "jsc_reference.py", config["data"],
        "--model", config["model"],
        "--batch-size", str(config["batch_size"]),
        "--max-epochs", str(config["max_epochs"]),
        "--lr", repr(config["lr"]),
        "--seed", str(config["seed"]),
        "--threads", "1",
    ]
    out = io.StringIO()
    started = time.perf_counter()
    saved = sys.argv
    try:
        sys.argv = argv
        with contextlib.redirect_stdout(out):
            reference.main()
    finally:
        sys.argv = saved
    lines = [json.loads(l) for l in out.getvalue().splitlines() if l.startswith("{")]
    final = lines[-1] if lines else {}
    tune.report({
        "test_acc": final.get("test_acc", final.get("final_test_acc", float("nan"))),
        "seconds": time.perf_counter() - started,
        "epochs": sum(1 for l in lines if "epoch" in l),
    })


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", help="a dataset directory of .npy files (jetsweep-worker prepare --out DIR)")
    ap.add_argument("--model", default="jsc-tiny")
    ap.add_argument("--batch-sizes", default="64,128,256,512")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--lrs", default="1e-3")
    ap.add_argument("--max-epochs", type=int, default=10)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs Ray may use: trials at once")
    args = ap.parse_args()

    import ray
    from ray import tune

    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    space = {
        "reference": reference_path(),
        "data": os.path.abspath(args.data_dir),
        "model": args.model,
        "max_epochs": args.max_epochs,
        "batch_size": tune.grid_search([int(b) for b in args.batch_sizes.split(",")]),
        "lr": tune.grid_search([float(x) for x in args.lrs.split(",")]),
        "seed": tune.grid_search([int(s) for s in args.seeds.split(",")]),
    }
    tuner = tune.Tuner(
        tune.with_resources(trial, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(max_concurrent_trials=args.cpus),
        run_config=tune.RunConfig(verbose=0, storage_path=os.path.abspath(".ray-results")),
    )
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    failed = 0
    for r in results:
        if r.error:
            failed += 1
            continue
        c = r.config
        print(json.dumps({"batch_size": c["batch_size"], "lr": c["lr"], "seed": c["seed"],
                          "test_acc": r.metrics.get("test_acc"), "seconds": r.metrics.get("seconds")}))
    print(json.dumps({"trials": len(results), "failed": failed, "wall_seconds": round(wall, 2),
                      "ray_init_seconds": round(ray_start, 2), "cpus": args.cpus}))
    ray.shutdown()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Packed-training benchmark: trial-samples/s of one training epoch of jsc-tiny on one thread, for
packs of K = 1, 4, 16, 64 trials (`jetsweep-worker train --seed 0-(K-1) --pack K`), next to the
autodiff trainer (`--autodiff`, one trial), the PyTorch reference (`jsc_reference.py --time-epoch
--threads 1`) and the hand-written single-trial floor (`worker/examples/floor.rs`), on the same data
in the same run. Runs are interleaved and repeated; the best of each is kept.

    cargo build --release -p jetsweep-worker --example floor
    python3 worker/scripts/bench_packed.py --python .venv-ref/bin/python --repeats 3

A pack's trial-samples/s is its training rows × K / the epoch's wall time (gather, forward, backward,
Adam; evaluation not counted, as for the others). This is a benchmark, not a test: it reports.
"""
import argparse, json, os, platform, subprocess, sys, tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def json_lines(cmd):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RAYON_NUM_THREADS="1")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", default=os.path.join(TARGET, "release", "jetsweep-worker"))
    ap.add_argument("--floor", default=os.path.join(TARGET, "release", "examples", "floor"))
    ap.add_argument("--python", default=sys.executable, help="a Python with numpy and torch ('' to skip)")
    ap.add_argument("--reference", default=os.path.join(ROOT, "..", "shared", "bench", "jsc_reference.py"))
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--packs", default="1,4,16,64")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    data = os.path.join(tempfile.mkdtemp(prefix="jetsweep-bench-"), "data")
    subprocess.run([a.worker, "prepare", "--dataset", a.dataset, "--out", data], check=True, capture_output=True)
    b = str(a.batch_size)
    train = [a.worker, "train", "--dataset", data, "--batch-size", b, "--max-epochs", "1", "--lr", "1e-3", "--json"]

    def epoch_sps(cmd):
        return [l for l in json_lines(cmd) if "epoch" in l][0]["samples_per_second"]

    runs = {"floor": lambda: json_lines([a.floor, data, "--batch-size", b])[0]["samples_per_second"],
            "autodiff (K=1)": lambda: epoch_sps(train + ["--autodiff"])}
    if a.python:
        runs["PyTorch reference"] = lambda: json_lines([a.python, a.reference, data, "--time-epoch", "--threads", "1",
                                                        "--batch-size", b, "--lr", "1e-3"])[0]["samples_per_second"]
    for k in map(int, a.packs.split(",")):
        runs[f"packed K={k}"] = (lambda k: lambda: k * epoch_sps(train + ["--seed", f"0-{k - 1}", "--pack", str(k)]))(k)
    best = {}
    for r in range(a.repeats):
        for who, run in runs.items():
            sps = run()
            best[who] = max(best.get(who, 0.0), sps)
            print(f"repeat {r + 1}: {who:18} {sps:>12,.0f} trial-samples/s", file=sys.stderr, flush=True)
    floor = best["floor"]
    rows = ["| trainer | trial-samples/s | µs per trial-step | vs floor |", "|---|---|---|---|"]
    for who, sps in best.items():
        rows.append(f"| {who} | {sps:,.0f} | {a.batch_size / sps * 1e6:.1f} | {sps / floor:.2f}x |")
    print(f"jsc-tiny, batch {a.batch_size}, one thread, best of {a.repeats} interleaved runs; dataset {a.dataset}; "
          f"{platform.processor() or platform.machine()}\n\n" + "\n".join(rows))


if __name__ == "__main__":
    main()

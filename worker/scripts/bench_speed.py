#!/usr/bin/env python3
"""Speed benchmark: samples/s of one training epoch of jsc-tiny on one thread, on the same data, for
jetsweep (burn, flex CPU backend), the PyTorch reference (`jsc_reference.py --time-epoch --threads 1`)
and a hand-written f32 loop (`worker/examples/floor.rs`, the floor). Runs are interleaved and repeated;
the best of each is reported (the least disturbed by other work on the machine).

    cargo build --release -p jetsweep-worker --example floor
    python3 worker/scripts/bench_speed.py --python .venv-ref/bin/python --repeats 3 --out worker/docs/speed-table.md

This is a benchmark, not a test: it asserts nothing, it reports.
"""
import argparse, json, os, platform, subprocess, sys, tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def last_json(cmd):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RAYON_NUM_THREADS="1")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", default=os.path.join(TARGET, "release", "jetsweep-worker"))
    ap.add_argument("--floor", default=os.path.join(TARGET, "release", "examples", "floor"))
    ap.add_argument("--python", default=sys.executable, help="a Python with numpy and torch")
    ap.add_argument("--reference", default=os.path.join(ROOT, "..", "shared", "bench", "jsc_reference.py"))
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--batch-sizes", default="64,128,256,512")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out")
    a = ap.parse_args()

    data = os.path.join(tempfile.mkdtemp(prefix="jetsweep-bench-"), "data")
    subprocess.run([a.worker, "prepare", "--dataset", a.dataset, "--out", data], check=True, capture_output=True)
    torch_version = subprocess.run([a.python, "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True).stdout.strip()
    best = {}
    for r in range(a.repeats):
        for b in map(int, a.batch_sizes.split(",")):
            runs = {
                "jetsweep": lambda: [l for l in last_json([a.worker, "train", "--dataset", data, "--batch-size", str(b),
                                                           "--max-epochs", "1", "--lr", "1e-3", "--json"]) if "epoch" in l][0]["samples_per_second"],
                "reference": lambda: last_json([a.python, a.reference, data, "--time-epoch", "--threads", "1",
                                                "--batch-size", str(b), "--lr", "1e-3"])[0]["samples_per_second"],
                "floor": lambda: last_json([a.floor, data, "--batch-size", str(b)])[0]["samples_per_second"],
            }
            for who, run in runs.items():
                sps = run()
                best[(b, who)] = max(best.get((b, who), 0.0), sps)
                print(f"repeat {r + 1}: batch {b:>3} {who:9} {sps:>12,.0f} samples/s", file=sys.stderr, flush=True)

    rows = ["| batch | jetsweep (samples/s) | µs/step | PyTorch reference | floor (hand-written) | jetsweep / reference | floor / jetsweep |",
            "|---|---|---|---|---|---|---|"]
    for b in map(int, a.batch_sizes.split(",")):
        j, ref, fl = best[(b, "jetsweep")], best[(b, "reference")], best[(b, "floor")]
        rows.append(f"| {b} | {j:,.0f} | {b / j * 1e6:.0f} | {ref:,.0f} | {fl:,.0f} | {j / ref:.1f}x | {fl / j:.1f}x |")
    text = (f"One epoch of jsc-tiny, one thread, best of {a.repeats} interleaved runs; dataset {a.dataset} "
            f"(160,000 training rows); {platform.processor() or platform.machine()}, torch {torch_version}.\n\n" + "\n".join(rows) + "\n")
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()

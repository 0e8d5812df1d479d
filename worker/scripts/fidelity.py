#!/usr/bin/env python3
"""Fidelity check: jetsweep's burn trainer against the PyTorch reference (shared/bench/jsc_reference.py).

Both train jsc-tiny on the *same* exported dataset (the synthetic set, in the .npy exchange layout) over
a grid of batch size x learning rate, several seeds per cell, 10 epochs; the mean test accuracy of each
cell must agree within 1.0 point. A step-by-step check then starts both from the same weights and batch
order and compares the first losses.

    python3 worker/scripts/fidelity.py --python .venv-ref/bin/python --seeds 5 --out docs/fidelity-table.md

Needs: a release build of jetsweep-worker (cargo build --release -p jetsweep-worker), and a Python with
numpy and torch for the reference (python3 -m venv .venv-ref && .venv-ref/bin/pip install numpy torch).
"""
import argparse, concurrent.futures as cf, json, os, statistics, subprocess, sys, tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def default_worker():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "jetsweep-worker")


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def final(lines):
    return next(l for l in lines if l.get("final"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", default=default_worker())
    ap.add_argument("--python", default=sys.executable, help="a Python with numpy and torch")
    ap.add_argument("--reference", default=os.path.join(ROOT, "..", "shared", "bench", "jsc_reference.py"))
    ap.add_argument("--dataset", default="synthetic", help="what to export and train on (default: synthetic)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-sizes", default="64,128,256,512")
    ap.add_argument("--lrs", default="1e-3,1e-5")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", help="write the markdown table here too")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="jetsweep-fidelity-")
    data = os.path.join(work, "data")
    subprocess.run([a.worker, "prepare", "--dataset", a.dataset, "--out", data], check=True)

    cells = [(int(b), float(lr)) for b in a.batch_sizes.split(",") for lr in a.lrs.split(",")]
    runs = []
    for b, lr in cells:
        for s in range(a.seeds):
            common = ["--batch-size", str(b), "--max-epochs", str(a.epochs), "--lr", repr(lr), "--seed", str(s)]
            runs.append(((b, lr, s, "reference"), [a.python, a.reference, data, "--threads", "1"] + common))
            runs.append(((b, lr, s, "jetsweep"), [a.worker, "train", "--dataset", data, "--json"] + common))
    results = {}
    with cf.ThreadPoolExecutor(a.jobs) as pool:
        futures = {pool.submit(run_json, cmd): key for key, cmd in runs}
        for i, fut in enumerate(cf.as_completed(futures)):
            key = futures[fut]
            results[key] = final(fut.result())
            print(f"[{i + 1}/{len(runs)}] {key}: test_acc {results[key]['test_acc']:.4f}", file=sys.stderr, flush=True)

    def stats(b, lr, who, field):
        xs = [results[(b, lr, s, who)][field] * 100 for s in range(a.seeds)]
        return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0), xs

    rows = ["| batch | lr | reference test acc % (mean ± sd) | jetsweep test acc % (mean ± sd) | diff (pts) | best-epoch ref / ours | within 1.0 |",
            "|---|---|---|---|---|---|---|"]
    worst = 0.0
    for b, lr in cells:
        rm, rs, _ = stats(b, lr, "reference", "test_acc")
        jm, js, _ = stats(b, lr, "jetsweep", "test_acc")
        rb, _, _ = stats(b, lr, "reference", "best_test_acc")
        jb, _, _ = stats(b, lr, "jetsweep", "best_test_acc")
        d = jm - rm
        worst = max(worst, abs(d))
        rows.append(f"| {b} | {lr:g} | {rm:.2f} ± {rs:.2f} | {jm:.2f} ± {js:.2f} | {d:+.2f} | {rb:.2f} / {jb:.2f} | {'yes' if abs(d) <= 1.0 else 'NO'} |")
    table = "\n".join(rows)

    # Step by step: same initial weights, same batch order.
    init_json, order, npz = (os.path.join(work, n) for n in ("init.json", "order.npy", "init.npz"))
    k = 200
    ours = run_json([a.worker, "train", "--dataset", data, "--batch-size", "128", "--max-epochs", "1", "--lr", "1e-3",
                     "--seed", "0", "--json", "--trace-steps", str(k), "--dump-init", init_json, "--dump-order", order])
    subprocess.run([a.python, "-c", "import json,sys,numpy as np; d=json.load(open(sys.argv[1])); "
                    "np.savez(sys.argv[2], **{k: np.array(v['values'], dtype=np.float32).reshape(v['shape']) for k, v in d.items()})",
                    init_json, npz], check=True)
    ref = run_json([a.python, a.reference, data, "--threads", "1", "--batch-size", "128", "--max-epochs", "1", "--lr", "1e-3",
                    "--seed", "0", "--init-npz", npz, "--order-npy", order, "--trace-steps", str(k)])
    ls_ours = [l["loss"] for l in ours if "step" in l]
    ls_ref = [l["loss"] for l in ref if "step" in l]
    diffs = [abs(x - y) for x, y in zip(ls_ours, ls_ref)]
    step_line = (f"Step-by-step (jsc-tiny, batch 128, lr 1e-3, same initial weights and batch order): first {len(diffs)} losses, "
                 f"max |difference| {max(diffs):.2e}, at step 0 {ls_ours[0]:.6f} vs {ls_ref[0]:.6f}, "
                 f"at step {len(diffs) - 1} {ls_ours[-1]:.6f} vs {ls_ref[-1]:.6f}; final-epoch test acc "
                 f"{final(ours)['test_acc']:.4f} vs {final(ref)['test_acc']:.4f}.")
    text = (f"Dataset: {a.dataset} exported to .npy; {a.seeds} seeds per cell, {a.epochs} epochs, jsc-tiny.\n\n"
            f"{table}\n\nLargest |mean difference|: {worst:.2f} points.\n\n{step_line}\n")
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()

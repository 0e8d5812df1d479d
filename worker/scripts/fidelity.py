#!/usr/bin/env python3
"""Fidelity check: jetsweep's burn trainer against the PyTorch reference (shared/bench/jsc_reference.py).

Both train jsc-tiny on the *same* exported dataset (the synthetic set, in the .npy exchange layout) over
a grid of batch size x learning rate, several seeds per cell, 10 epochs, and the mean test accuracy of
each cell is compared. Two designs:

- independent: each trainer draws its own initial weights and batch orders from the seed. This tests
  the whole pipeline, but jsc-tiny's ReLU on the logits can silence a class for good, so single runs
  land in distinct accuracy regimes and a mean over a few seeds is dominated by which regime each seed
  happened to hit; few-seed means then differ by chance (see worker/docs/fidelity.md).
- paired: the reference starts from jetsweep's initial weights and batch order for the same seed
  (`--init-npz`, `--order-npy`), so both follow the same random draw and any difference is the
  implementation's.

A many-seed check (independent draws, one cell, a smaller dataset so that many runs are affordable)
compares the two distributions of outcomes: the mean and the share of runs in the top regime.
A step-by-step check compares the first losses of one paired run.

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
    ap.add_argument("--mode", choices=["independent", "paired", "both"], default="both")
    ap.add_argument("--many-seeds", type=int, default=60, help="seeds in the many-seed check (0 skips it)")
    ap.add_argument("--many-rows", default="synthetic:25000", help="dataset of the many-seed check")
    ap.add_argument("--results", help="a .jsonl file of finished runs: read to resume, appended to as runs finish")
    ap.add_argument("--out", help="write the markdown tables here too")
    ap.add_argument("--pack", type=int, default=16,
                    help="jetsweep trains the many-seed check's seeds as one command in packs of this many, and the "
                         "step-by-step check's trial (seed 0) in a pack with seeds 1..K-1 (1: one trial at a time)")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="jetsweep-fidelity-")
    data = os.path.join(work, "data")
    subprocess.run([a.worker, "prepare", "--dataset", a.dataset, "--out", data], check=True)

    cells = [(int(b), float(lr)) for b in a.batch_sizes.split(",") for lr in a.lrs.split(",")]
    modes = ["independent", "paired"] if a.mode == "both" else [a.mode]

    def one(mode, b, lr, s):
        """Both trainers for one (cell, seed); returns their final objects."""
        common = ["--batch-size", str(b), "--max-epochs", str(a.epochs), "--lr", repr(lr), "--seed", str(s)]
        ours_cmd = [a.worker, "train", "--dataset", data, "--json"] + common
        ref_cmd = [a.python, a.reference, data, "--threads", "1"] + common
        if mode == "paired":
            tag = os.path.join(work, f"start-b{b}-lr{lr}-s{s}")
            ours_cmd += ["--dump-init", tag + ".json", "--dump-order", tag + "-order.npy"]
            ours = final(run_json(ours_cmd))
            to_npz(tag + ".json", tag + ".npz")
            ref = final(run_json(ref_cmd + ["--init-npz", tag + ".npz", "--order-npy", tag + "-order.npy"]))
            for f in (tag + ".json", tag + ".npz", tag + "-order.npy"):
                os.remove(f)
        else:
            ours, ref = final(run_json(ours_cmd)), final(run_json(ref_cmd))
        return ours, ref

    def to_npz(src, dst):
        subprocess.run([a.python, "-c", "import json,sys,numpy as np; d=json.load(open(sys.argv[1])); "
                        "np.savez(sys.argv[2], **{k: np.array(v['values'], dtype=np.float32).reshape(v['shape']) for k, v in d.items()})",
                        src, dst], check=True)

    # Finished runs are appended to --results, so an interrupted comparison resumes where it stopped.
    results = {}
    if a.results and os.path.exists(a.results):
        for line in open(a.results):
            r = json.loads(line)
            results[tuple(r["key"])] = r["final"]
    jobs = [(m, b, lr, s) for m in modes for b, lr in cells for s in range(a.seeds)
            if (m, b, lr, s, "jetsweep") not in results]
    with cf.ThreadPoolExecutor(a.jobs) as pool:
        futures = {pool.submit(one, *job): job for job in jobs}
        for i, fut in enumerate(cf.as_completed(futures)):
            m, b, lr, s = futures[fut]
            ours, ref = fut.result()
            results[(m, b, lr, s, "jetsweep")], results[(m, b, lr, s, "reference")] = ours, ref
            if a.results:
                with open(a.results, "a") as f:
                    for who, res in (("jetsweep", ours), ("reference", ref)):
                        f.write(json.dumps({"key": [m, b, lr, s, who], "final": res}) + "\n")
            print(f"[{i + 1}/{len(jobs)}] {m} batch {b} lr {lr:g} seed {s}: jetsweep {ours['test_acc']:.4f} "
                  f"reference {ref['test_acc']:.4f}", file=sys.stderr, flush=True)

    def stats(m, b, lr, who, field):
        xs = [results[(m, b, lr, s, who)][field] * 100 for s in range(a.seeds)]
        return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)

    tables = []
    for m in modes:
        rows = [f"**{m}** ({a.seeds} seeds per cell)", "",
                "| batch | lr | reference test acc % (mean ± sd) | jetsweep test acc % (mean ± sd) | diff (pts) | best-epoch test acc ref / ours | within 1.0 |",
                "|---|---|---|---|---|---|---|"]
        worst = 0.0
        for b, lr in cells:
            rm, rs = stats(m, b, lr, "reference", "test_acc")
            jm, js = stats(m, b, lr, "jetsweep", "test_acc")
            rb, _ = stats(m, b, lr, "reference", "best_test_acc")
            jb, _ = stats(m, b, lr, "jetsweep", "best_test_acc")
            d = jm - rm
            worst = max(worst, abs(d))
            rows.append(f"| {b} | {lr:g} | {rm:.2f} ± {rs:.2f} | {jm:.2f} ± {js:.2f} | {d:+.2f} | {rb:.2f} / {jb:.2f} | {'yes' if abs(d) <= 1.0 else 'NO'} |")
        rows += ["", f"Largest |mean difference| ({m}): {worst:.2f} points.", ""]
        tables.append("\n".join(rows))
    table = "\n".join(tables)
    print(table, flush=True)

    # Step by step: same initial weights, same batch order.
    init_json, order, npz = (os.path.join(work, n) for n in ("init.json", "order.npy", "init.npz"))
    k = 200
    ours = run_json([a.worker, "train", "--dataset", data, "--batch-size", "128", "--max-epochs", "1", "--lr", "1e-3",
                     "--seed", f"0-{a.pack - 1}", "--pack", str(a.pack), "--json", "--trace-steps", str(k),
                     "--dump-init", init_json, "--dump-order", order])
    ours = [l for l in ours if l.get("seed", 0) == 0]
    to_npz(init_json, npz)
    ref = run_json([a.python, a.reference, data, "--threads", "1", "--batch-size", "128", "--max-epochs", "1", "--lr", "1e-3",
                    "--seed", "0", "--init-npz", npz, "--order-npy", order, "--trace-steps", str(k)])
    ls_ours = [l["loss"] for l in ours if "step" in l]
    ls_ref = [l["loss"] for l in ref if "step" in l]
    diffs = [abs(x - y) for x, y in zip(ls_ours, ls_ref)]
    step_line = (f"Step-by-step (jsc-tiny, batch 128, lr 1e-3, same initial weights and batch order; jetsweep's trial "
                 f"trained in a pack of {a.pack}): first {len(diffs)} losses, "
                 f"max |difference| {max(diffs):.2e}, at step 0 {ls_ours[0]:.6f} vs {ls_ref[0]:.6f}, "
                 f"at step {len(diffs) - 1} {ls_ours[-1]:.6f} vs {ls_ref[-1]:.6f}; final-epoch test acc "
                 f"{final(ours)['test_acc']:.4f} vs {final(ref)['test_acc']:.4f}.")
    many_line = ""
    if a.many_seeds:
        small = os.path.join(work, "many")
        subprocess.run([a.worker, "prepare", "--dataset", a.many_rows, "--out", small], check=True, capture_output=True)
        common = lambda s: ["--batch-size", "128", "--max-epochs", str(a.epochs), "--lr", "1e-3", "--seed", str(s)]
        cmds = [(("reference", s), [a.python, a.reference, small, "--threads", "1"] + common(s)) for s in range(a.many_seeds)]
        many = {"jetsweep": [], "reference": []}
        # jetsweep: every seed in one command, trained in packs of --pack.
        packed = run_json([a.worker, "train", "--dataset", small, "--json", "--batch-size", "128", "--max-epochs",
                           str(a.epochs), "--lr", "1e-3", "--seed", f"0-{a.many_seeds - 1}", "--pack", str(a.pack)])
        many["jetsweep"] = [l["test_acc"] * 100 for l in packed if l.get("final")]
        with cf.ThreadPoolExecutor(a.jobs) as pool:
            for ((who, _), _), res in zip(cmds, pool.map(lambda c: final(run_json(c[1])), cmds)):
                many[who].append(res["test_acc"] * 100)
        top = max(max(v) for v in many.values()) - 3.0  # the best regime: within 3 points of the best run
        desc = {w: f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f} (standard error {statistics.stdev(v) / len(v) ** 0.5:.2f}), "
                   f"{sum(x >= top for x in v)}/{len(v)} runs in the top regime"
                for w, v in many.items()}
        many_line = (f"Many seeds ({a.many_seeds} independent seeds each, {a.many_rows}, batch 128, lr 1e-3; jetsweep in packs "
                     f"of {a.pack}): "
                     f"reference {desc['reference']}; jetsweep {desc['jetsweep']}; difference of means "
                     f"{statistics.mean(many['jetsweep']) - statistics.mean(many['reference']):+.2f} points.\n")
    text = f"Dataset: {a.dataset} exported to .npy; {a.epochs} epochs, jsc-tiny.\n\n{table}\n{many_line}\n{step_line}\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()

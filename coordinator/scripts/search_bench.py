#!/usr/bin/env python3
"""Search benchmark: jetsweep's sampled search and early stopping against Ray Tune and Optuna.

One space, one dataset, one budget for every method (coordinator/docs/search-bench.md has the
numbers and how to read them):

- space: learning_rate x batch_size x weight_decay, each a choice (SPACE below), jsc-tiny, 9 epochs;
- data: a prepared .npy directory with a held-out validation split, the same rows for everyone;
- oracle: the space's full grid x 32 seeds (0-31) to the last epoch (jetsweep, packed); a point's
  score is its 32-seed mean validation accuracy at the last epoch; target = the best score - 0.5
  points. (The issue asked for 8 seeds; here a seed's run sometimes sticks at 57-68 %, so an 8-seed
  mean moves by up to ~1.5 points with one such seed and the 0.5-point target was decided by which
  seeds stuck. The 8-seed numbers, seeds 0-7, are printed beside the 32-seed ones.)
- methods, each over search seeds 0..N-1:
  ours-sync     jetsweep random points x 3 seeds, sync halving on the seed means (eta 3, rungs 1,3,9);
                search seed s trains seeds 1000+3s, 1000+3s+1, 1000+3s+2 (ours-1seed: 1000+3s)
  ours-async    the same, ASHA with promotions that resume from a checkpoint
  ours-tpe      jetsweep TPE x 3 seeds, ASHA
  ours-1seed    jetsweep random points x 1 seed, sync halving (what the peers decide on)
  ray           Ray Tune random + ASHAScheduler(grace_period=1, reduction_factor=3), one trial per seed
  optuna        Optuna TPESampler + HyperbandPruner(reduction_factor=3), one process per core, a
                shared JournalStorage file
  Every method gets the same number of trials (points x 3); the trial-epochs each spent are reported.
- per run: the wall time until the method's incumbent (by its own rule, on validation accuracy) is a
  point whose oracle score reaches the target; its final pick, scored on 10 fresh seeds (a second
  grid run, seeds 100-109: validation loss and test accuracy at the last epoch); trial-epochs;
  how many of the oracle's top 5 points it sampled and stopped early; and, for search seed 0, a
  rerun (jetsweep: 1 worker instead of 2) compared decision by decision.
- expected running time (ERT, as in COCO's black-box benchmarks): the wall time of every run (its
  time to target, or its whole wall time when it never got there) summed and divided by the runs
  that reached the target: what a user restarting a method until it succeeds waits on average. Our
  searches take seconds, so they run over --our-search-seeds (20) search seeds, the peers over
  --search-seeds (5).
- replay: five searches cannot tell a 30 % method from a 10 % one, so sync halving (ours-sync and
  ours-1seed: their decisions are a pure function of the per-epoch metrics) is also replayed 2000
  times on the fresh grid's epoch-by-epoch curves (random points, random seeds of the 10), each pick
  scored by the oracle.

    target/release/jetsweep-worker prepare --dataset synthetic:126000 --val-fraction 0.2 --out W/data
    python3 -m venv V && V/bin/pip install "ray[tune]" optuna numpy torch
    V/bin/python coordinator/scripts/search_bench.py W --jetsweep target/release/jetsweep --search-seeds 5

Each finished run is kept as W/runs/NAME.json and not run again, so an interrupted benchmark goes
on where it stopped; `--only ours-sync,ray` limits the methods. The last step prints the tables.
"""
import argparse
import importlib.util
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time

SPACE = {
    "learning_rate": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
    "batch_size": [64, 128, 256, 512],
    "weight_decay": [0.0, 1e-4, 1e-3, 1e-2],
}
MAX_EPOCHS = 9
ETA = 3
SEEDS_PER_POINT = 3
ORACLE_SEEDS = list(range(32))
ISSUE_ORACLE_SEEDS = 8  # the first 8 of ORACLE_SEEDS: the oracle the issue asked for
OUR_SEED_BASE = 1000  # our training seeds, disjoint from the oracle's and the fresh ones
REPLAYS = 2000
FRESH_SEEDS = list(range(100, 110))
LOOSER_TARGETS = [1.0, 2.0]  # points below the oracle's best, reported beside the 0.5-point target
METHODS = ["ours-sync", "ours-async", "ours-tpe", "ours-1seed", "ray", "optuna"]


def point_key(lr, bs, wd):
    """A configuration as a hashable key, the same whichever tool reports it."""
    return (float("%.6g" % lr), int(bs), float("%.6g" % wd))


def key_text(k):
    return "lr %g, batch %d, wd %g" % k


# ---------------------------------------------------------------------------------------------
# jetsweep runs

def sweep_toml(name, data, grid_seeds, search=None, stop=None, grid_space=False):
    lines = [f'name = "{name}"', f'dataset = "{data}"', "lease_timeout_s = 120", "",
             "[defaults]", 'model = "jsc-tiny"', f"max_epochs = {MAX_EPOCHS}", ""]
    if search:
        lines += ["[search]"] + [f"{k} = {json.dumps(v)}" for k, v in search.items()]
        lines += ['metric = "val_acc"', "", "[search.space]"]
        lines += [f"{k} = {{ choice = {json.dumps(v)} }}" for k, v in SPACE.items()]
        lines += ["", "[search.stop]"] + [f"{k} = {json.dumps(v)}" for k, v in stop.items()] + [""]
    lines += ["[grid]"]
    if grid_space:
        lines += [f"{k} = {json.dumps(v)}" for k, v in SPACE.items()]
    lines += [f"seed = {json.dumps(grid_seeds)}", ""]
    return "\n".join(lines)


def run_jetsweep(args, folder, toml, workers):
    """`jetsweep run` on a fresh state file; returns (start time, end time) in seconds since the epoch."""
    os.makedirs(folder, exist_ok=True)
    state = os.path.join(folder, "state.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(state + suffix):
            os.remove(state + suffix)
    path = os.path.join(folder, "sweep.toml")
    with open(path, "w") as f:
        f.write(toml)
    started = time.time()
    with open(os.path.join(folder, "run.log"), "w") as log:
        subprocess.run([args.jetsweep, "run", path, "--workers", str(workers), "--state", state,
                        "--format", "json"], stdout=subprocess.DEVNULL, stderr=log, check=True)
    return started, time.time()


def read_store(folder):
    """Every job of the sweep in a state file: its configuration, seed, point, the epoch it was
    stopped at, its last-epoch metrics and when that epoch's attempt ended; and the trial-epochs
    trained (epoch reports stored, over all attempts)."""
    db = sqlite3.connect(os.path.join(folder, "state.db"))
    (sweep,) = db.execute("SELECT id FROM sweeps ORDER BY created_ms DESC LIMIT 1").fetchone()
    jobs = {}
    for job, point, lr, bs, wd, seed, state, stopped in db.execute(
            """SELECT j.id, sj.point, j.learning_rate, j.batch_size, j.weight_decay, j.seed, j.state,
                      sj.stopped_epoch
               FROM sweep_jobs sj JOIN jobs j ON j.id = sj.job_id WHERE sj.sweep_id = ?""", (sweep,)):
        jobs[job] = {"point": point, "key": point_key(lr, bs, wd), "seed": seed, "state": state,
                     "stopped": stopped, "final": None, "ended_ms": None}
    epochs = 0
    for job, epoch, metrics, ended in db.execute(
            """SELECT a.job_id, e.epoch, e.metrics_json, a.ended_ms FROM epochs e
               JOIN attempts a ON a.lease_id = e.lease_id
               JOIN sweep_jobs sj ON sj.job_id = a.job_id WHERE sj.sweep_id = ?""", (sweep,)):
        epochs += 1
        if epoch == MAX_EPOCHS:
            jobs[job]["final"] = json.loads(metrics)
            jobs[job]["ended_ms"] = ended
    log = {
        "decisions": db.execute("""SELECT rung, cohort, scores_json, cutoff, kept_json, stopped_json
                                   FROM decisions WHERE sweep_id = ? ORDER BY rung, cohort""",
                                (sweep,)).fetchall(),
        "arrivals": db.execute("""SELECT rung, point, mean, action FROM arrivals WHERE sweep_id = ?
                                  ORDER BY rung, point""", (sweep,)).fetchall(),
        "suggested": db.execute("""SELECT point, values_json FROM suggested_points WHERE sweep_id = ?
                                   ORDER BY point""", (sweep,)).fetchall(),
    }
    return list(jobs.values()), epochs, log


def ours(args, method, seed, workers, folder):
    points = args.points * SEEDS_PER_POINT if method == "ours-1seed" else args.points
    first = OUR_SEED_BASE + SEEDS_PER_POINT * seed
    seeds = [first] if method == "ours-1seed" else list(range(first, first + SEEDS_PER_POINT))
    search = {"method": "tpe" if method == "ours-tpe" else "random", "points": points,
              "search_seed": seed}
    stop = {"rule": "halving", "mode": "async" if method in ("ours-async", "ours-tpe") else "sync",
            "min_epochs": 1, "eta": ETA}
    toml = sweep_toml(f"bench-{method}-{seed}-w{workers}", args.data, seeds, search, stop)
    started, ended = run_jetsweep(args, folder, toml, workers)
    jobs, epochs, log = read_store(folder)
    by_point = {}
    for j in jobs:
        by_point.setdefault(j["point"], []).append(j)
    finished, sampled, stopped = [], set(), set()
    for point, seeds_ in by_point.items():
        key = seeds_[0]["key"]
        sampled.add(key)
        if any(s["stopped"] is not None for s in seeds_):
            stopped.add(key)
        elif all(s["final"] for s in seeds_):
            finished.append({"t": max(s["ended_ms"] for s in seeds_) / 1000 - started,
                             "key": key, "order": point,
                             "score": statistics.mean(s["final"]["val_acc"] for s in seeds_)})
    # The incumbent: the best finished point by its seed mean at the last epoch (a stopped point
    # is never ranked against finished ones); ties to the lower point index.
    events = sorted(finished, key=lambda e: e["t"])
    return {"wall": ended - started, "trial_epochs": epochs, "events": events,
            "incumbent_rule": "best seed mean among finished points",
            "sampled": sorted(sampled), "stopped": sorted(stopped), "log": log}


# ---------------------------------------------------------------------------------------------
# The peers' trainer: the PyTorch reference recipe (shared/bench/jsc_reference.py), one epoch at a
# time, with Adam's weight decay.

def reference_module():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.environ.get("JSC_REFERENCE") or os.path.normpath(
        os.path.join(here, "..", "..", "..", "shared", "bench", "jsc_reference.py"))
    spec = importlib.util.spec_from_file_location("jsc_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_epochs(data, lr, batch_size, weight_decay, seed):
    """Yields each epoch's validation numbers: jsc-tiny, Adam(lr, weight_decay), cosine to 1e-6
    over MAX_EPOCHS, shuffled batches, as jsc_reference.py trains."""
    import torch
    import torch.nn as nn
    ref = reference_module()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    xtr, ytr = ref.load(data, "x_train").float(), ref.load(data, "y_train").long()
    xva, yva = ref.load(data, "x_val").float(), ref.load(data, "y_val").long()
    model = ref.MODELS["jsc-tiny"]()
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8,
                           weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=MAX_EPOCHS, eta_min=1e-6)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    n = xtr.shape[0]
    for epoch in range(1, MAX_EPOCHS + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        xs, ys = xtr[perm], ytr[perm]
        for i in range(0, n, batch_size):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xs[i:i + batch_size]), ys[i:i + batch_size])
            loss.backward()
            opt.step()
        sched.step()
        val_loss, val_acc = ref.evaluate(model, xva, yva, loss_fn)
        yield epoch, val_loss, val_acc


def ray_trial(config):
    from ray import tune
    for epoch, val_loss, val_acc in train_epochs(config["data"], config["learning_rate"],
                                                 config["batch_size"], config["weight_decay"],
                                                 config["seed"]):
        tune.report({"epoch": epoch, "val_acc": val_acc, "val_loss": val_loss, "t": time.time()})


def ray(args, seed, folder):
    import ray as ray_
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator
    os.makedirs(folder, exist_ok=True)
    ray_.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    space = {k: tune.choice(v) for k, v in SPACE.items()}
    space["seed"] = tune.randint(0, 2 ** 31 - 1)
    space["data"] = os.path.abspath(args.data)
    tuner = tune.Tuner(
        tune.with_resources(ray_trial, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="val_acc", mode="max", num_samples=args.points * SEEDS_PER_POINT,
            max_concurrent_trials=args.cpus,
            search_alg=BasicVariantGenerator(random_state=seed),
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=MAX_EPOCHS,
                                    grace_period=1, reduction_factor=ETA)),
        run_config=tune.RunConfig(verbose=0, storage_path=os.path.abspath(folder)),
    )
    started = time.time()
    grid = tuner.fit()
    ended = time.time()
    best = grid.get_best_result(metric="val_acc", mode="max", scope="last")
    reports, trials = [], []
    for result in grid:
        c = result.config
        key = point_key(c["learning_rate"], c["batch_size"], c["weight_decay"])
        frame = result.metrics_dataframe
        rows = frame[["epoch", "val_acc", "t"]].values.tolist() if frame is not None else []
        trials.append({"key": key, "seed": c["seed"], "epochs": len(rows)})
        reports += [{"trial": len(trials) - 1, "key": key, "epoch": int(e), "score": a, "t": t - started}
                    for e, a, t in rows]
    ray_.shutdown()
    # Ray's own rule (get_best_result, scope="last"): the trial whose last report is best; after
    # each report, that is the incumbent of the run so far.
    reports.sort(key=lambda r: r["t"])
    last, events = {}, []
    for r in reports:
        last[r["trial"]] = r
        top = max(last.values(), key=lambda x: x["score"])
        events.append({"t": r["t"], "key": top["key"], "score": top["score"]})
    return {"wall": ended - started, "trial_epochs": sum(t["epochs"] for t in trials),
            "events": events, "pick": list(point_key(best.config["learning_rate"],
                                                     best.config["batch_size"],
                                                     best.config["weight_decay"])),
            "incumbent_rule": "Ray's get_best_result(scope='last')",
            "sampled": sorted({t["key"] for t in trials}),
            "stopped": sorted({t["key"] for t in trials if t["epochs"] < MAX_EPOCHS}
                              - {t["key"] for t in trials if t["epochs"] == MAX_EPOCHS}),
            "log": sorted((list(t["key"]), t["seed"], t["epochs"]) for t in trials)}


def optuna_worker(args):
    """One Optuna process: its share of the trials on the shared study."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(args.journal))
    study = optuna.load_study(study_name="bench", storage=storage,
                              sampler=optuna.samplers.TPESampler(seed=args.worker_seed),
                              pruner=optuna.pruners.HyperbandPruner(
                                  min_resource=1, max_resource=MAX_EPOCHS, reduction_factor=ETA))

    def objective(trial):
        lr = trial.suggest_categorical("learning_rate", SPACE["learning_rate"])
        bs = trial.suggest_categorical("batch_size", SPACE["batch_size"])
        wd = trial.suggest_categorical("weight_decay", SPACE["weight_decay"])
        acc = None
        for epoch, _, acc in train_epochs(args.data, lr, bs, wd, trial.number):
            trial.report(acc, epoch)
            trial.set_user_attr("t", time.time())
            if trial.should_prune():
                raise optuna.TrialPruned()
        return acc

    study.optimize(objective, n_trials=args.trials)


def optuna_run(args, seed, folder):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    os.makedirs(folder, exist_ok=True)
    journal = os.path.join(folder, "journal.log")
    if os.path.exists(journal):
        os.remove(journal)
    storage = JournalStorage(JournalFileBackend(journal))
    optuna.create_study(study_name="bench", storage=storage, direction="maximize")
    total = args.points * SEEDS_PER_POINT
    shares = [total // args.cpus + (1 if i < total % args.cpus else 0) for i in range(args.cpus)]
    started = time.time()
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--optuna-worker",
                               "--journal", journal, "--trials", str(n),
                               "--worker-seed", str(seed * 1000 + i), "--data", args.data, "x"])
             for i, n in enumerate(shares)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("an Optuna worker failed")
    ended = time.time()
    study = optuna.load_study(study_name="bench", storage=storage)
    trials = study.get_trials(deepcopy=False)
    events, best = [], None
    for t in sorted((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE),
                    key=lambda t: t.user_attrs["t"]):
        key = point_key(t.params["learning_rate"], t.params["batch_size"], t.params["weight_decay"])
        if best is None or t.value > best[1]:
            best = (key, t.value)
        events.append({"t": t.user_attrs["t"] - started, "key": best[0], "score": best[1]})
    keys = [point_key(t.params["learning_rate"], t.params["batch_size"], t.params["weight_decay"])
            for t in trials]
    done = {k for k, t in zip(keys, trials) if t.state == optuna.trial.TrialState.COMPLETE}
    return {"wall": ended - started,
            "trial_epochs": sum(len(t.intermediate_values) for t in trials),
            "events": events, "pick": list(study.best_trial and point_key(
                study.best_params["learning_rate"], study.best_params["batch_size"],
                study.best_params["weight_decay"])),
            "incumbent_rule": "Optuna's best_trial (complete trials)",
            "sampled": sorted(set(keys)), "stopped": sorted(set(keys) - done),
            "log": sorted((list(k), t.number, len(t.intermediate_values), t.state.name)
                          for k, t in zip(keys, trials))}


# ---------------------------------------------------------------------------------------------
# The oracle and the fresh seeds: the whole grid, by jetsweep

def grid_scores(args, name, seeds):
    """Per point: the seeds' validation accuracy, validation loss and test accuracy at the last
    epoch (cached as W/NAME.json)."""
    path = os.path.join(args.work, name + ".json")
    if os.path.exists(path):
        with open(path) as f:
            return {tuple(r["key"]): r for r in json.load(f)}
    folder = os.path.join(args.work, name)
    started, ended = run_jetsweep(args, folder, sweep_toml(f"bench-{name}", args.data, seeds,
                                                           grid_space=True), args.cpus)
    jobs, epochs, _ = read_store(folder)
    rows = {}
    for j in jobs:
        r = rows.setdefault(j["key"], {"key": list(j["key"]), "val_acc": [], "val_loss": [],
                                       "test_acc": []})
        for m in ("val_acc", "val_loss", "test_acc"):
            r[m].append(j["final"][m])
    print(f"{name}: {len(rows)} points x {len(seeds)} seeds, {epochs} trial-epochs, "
          f"{ended - started:.1f} s", file=sys.stderr)
    with open(path, "w") as f:
        json.dump(list(rows.values()), f)
    return {tuple(r["key"]): r for r in rows.values()}


def fresh_curves(args):
    """Per point: each fresh seed's validation accuracy and loss at every epoch (from the fresh
    grid's state file)."""
    db = sqlite3.connect(os.path.join(args.work, "fresh", "state.db"))
    curves = {}
    for lr, bs, wd, seed, epoch, metrics in db.execute(
            """SELECT j.learning_rate, j.batch_size, j.weight_decay, j.seed, e.epoch, e.metrics_json
               FROM epochs e JOIN attempts a ON a.lease_id = e.lease_id
               JOIN jobs j ON j.id = a.job_id"""):
        m = json.loads(metrics)
        curves.setdefault(point_key(lr, bs, wd), {}).setdefault(seed, {})[epoch] = m["val_acc"]
    return {k: [[by_epoch[e] for e in range(1, MAX_EPOCHS + 1)] for _, by_epoch in sorted(s.items())]
            for k, s in curves.items()}


def replay_sync_halving(curves, rng, points, seeds_per_point):
    """One sync-halving search on recorded curves, as the coordinator decides it: `points` random
    points sharing `seeds_per_point` random seeds; at each rung (1, 3) keep the top ceil(n/eta) by
    the seed mean of validation accuracy at that epoch, ties to the lower point index; the pick is
    the best survivor at the last epoch. Returns (pick, sampled, stopped, trial-epochs)."""
    keys = sorted(curves)
    sampled = rng.sample(range(len(keys)), points)
    seeds = rng.sample(range(len(curves[keys[0]])), seeds_per_point)
    live, stopped, epochs, before = sorted(sampled), set(), 0, 0
    rungs = [1, ETA, MAX_EPOCHS]
    for rung in rungs:
        epochs += len(live) * seeds_per_point * (rung - before)
        before = rung
        ranked = sorted(live, key=lambda p: (-statistics.mean(curves[keys[p]][s][rung - 1]
                                                              for s in seeds), p))
        if rung == MAX_EPOCHS:
            return keys[ranked[0]], {keys[p] for p in sampled}, {keys[p] for p in stopped}, epochs
        keep = -(-len(ranked) // ETA)
        live, stopped = ranked[:keep], stopped | set(ranked[keep:])


def replay_table(args, oracle, target, top5):
    import random
    curves = fresh_curves(args)
    budget = args.points * SEEDS_PER_POINT
    print(f"Sync halving replayed {REPLAYS} times on the fresh grid's curves ({len(curves)} points x "
          f"{len(FRESH_SEEDS)} seeds), picks scored by the oracle:")
    print()
    print("| replay | points x seeds | trial-epochs | picks at target | pick: oracle val acc %, median "
          "| oracle top 5 stopped (of sampled) |")
    print("|---|---|---|---|---|---|")
    for name, points, seeds in [("ours-sync", args.points, SEEDS_PER_POINT),
                                ("ours-1seed", budget, 1),
                                ("ours-sync, 2 seeds", budget // 2, 2),
                                ("ours-sync, 5 seeds", budget // 5, 5)]:
        rng = random.Random(0)
        hits, scores, stops, seen, epochs = 0, [], 0, 0, 0
        for _ in range(REPLAYS):
            pick, sampled, stopped, spent = replay_sync_halving(curves, rng, points, seeds)
            score = statistics.mean(oracle[pick]["val_acc"])
            hits += score >= target
            scores.append(100 * score)
            stops += len(top5 & stopped)
            seen += len(top5 & sampled)
            epochs = spent
        print(f"| {name} | {points} x {seeds} | {epochs} | {100 * hits / REPLAYS:.1f} % "
              f"| {statistics.median(scores):.2f} | {stops} of {seen} |")


def first_at_target(events, oracle, target):
    for e in events:
        if statistics.mean(oracle[tuple(e["key"])]["val_acc"]) >= target:
            return e["t"]
    return None


def ert(times, walls):
    """Expected running time to the target: all the time spent, over the runs that got there."""
    hits = sum(t is not None for t in times)
    if not hits:
        return None
    return sum(w if t is None else t for t, w in zip(times, walls)) / hits


def ert_text(x):
    return "never" if x is None else f"{x:.3g}"


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.3g} [{min(values):.3g}, {max(values):.3g}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work", help="the work folder: data/ (prepared .npy with x_val), runs, tables")
    ap.add_argument("--jetsweep", default="target/release/jetsweep")
    ap.add_argument("--search-seeds", type=int, default=5, help="search seeds for Ray and Optuna")
    ap.add_argument("--our-search-seeds", type=int, default=20, help="search seeds for jetsweep")
    ap.add_argument("--points", type=int, default=32, help="points per jetsweep search (x3 seeds)")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--only", default=",".join(METHODS))
    ap.add_argument("--optuna-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--journal", help=argparse.SUPPRESS)
    ap.add_argument("--trials", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--worker-seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.optuna_worker:
        return optuna_worker(args)
    args.data = os.path.abspath(os.path.join(args.work, "data"))
    args.jetsweep = os.path.abspath(args.jetsweep)
    if not os.path.exists(os.path.join(args.data, "x_val.npy")):
        raise SystemExit(f"{args.data}: no x_val.npy; prepare it with --val-fraction 0.2 (see --help)")
    oracle = grid_scores(args, "oracle%d" % len(ORACLE_SEEDS), ORACLE_SEEDS)
    ranked = sorted(oracle, key=lambda k: -statistics.mean(oracle[k]["val_acc"]))
    best = statistics.mean(oracle[ranked[0]]["val_acc"])
    target = best - 0.005
    top5 = set(ranked[:5])
    oracle8 = {k: {"val_acc": r["val_acc"][:ISSUE_ORACLE_SEEDS]} for k, r in oracle.items()}
    best8 = max(statistics.mean(r["val_acc"]) for r in oracle8.values())
    fresh = grid_scores(args, "fresh", FRESH_SEEDS)
    runs_dir = os.path.join(args.work, "runs")
    os.makedirs(runs_dir, exist_ok=True)

    def run(method, seed, rerun=False):
        name = f"{method}-{seed}" + ("-rerun" if rerun else "")
        path = os.path.join(runs_dir, name + ".json")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        folder = os.path.join(args.work, "scratch", name)
        print(f"running {name}", file=sys.stderr, flush=True)
        if method == "ray":
            out = ray(args, seed, folder)
        elif method == "optuna":
            out = optuna_run(args, seed, folder)
        else:
            out = ours(args, method, seed, 1 if rerun else args.cpus, folder)
            out["pick"] = list(max(out["events"], key=lambda e: (e["score"], -e["order"]))["key"]) \
                if out["events"] else None
        with open(path, "w") as f:
            json.dump(out, f, default=list)
        return json.loads(json.dumps(out, default=list))

    methods = [m for m in args.only.split(",") if m]
    rows = []
    for method in methods:
        count = args.our_search_seeds if method.startswith("ours") else args.search_seeds
        results = [run(method, s) for s in range(count)]
        rerun = run(method, 0, rerun=True)
        times = [first_at_target(r["events"], oracle, target) for r in results]
        times8 = [first_at_target(r["events"], oracle8, best8 - 0.005) for r in results]
        looser = {gap: [first_at_target(r["events"], oracle, best - gap / 100) for r in results]
                  for gap in LOOSER_TARGETS}
        picks = [tuple(r["pick"]) for r in results if r["pick"]]
        rows.append({
            "method": method,
            "runs": count,
            "ert": ert(times, [r["wall"] for r in results]),
            "ert8": ert(times8, [r["wall"] for r in results]),
            "reached": sum(t is not None for t in times),
            "time": summary(times),
            "wall": summary([r["wall"] for r in results]),
            "epochs": summary([r["trial_epochs"] for r in results]),
            "fresh_loss": summary([statistics.mean(fresh[p]["val_loss"]) for p in picks]),
            "fresh_test": summary([100 * statistics.mean(fresh[p]["test_acc"]) for p in picks]),
            "oracle_pick": summary([100 * statistics.mean(oracle[p]["val_acc"]) for p in picks]),
            "false_stops": "%d of %d" % (sum(len(top5 & {tuple(k) for k in r["stopped"]}) for r in results),
                                         sum(len(top5 & {tuple(k) for k in r["sampled"]}) for r in results)),
            "identical": results[0]["log"] == rerun["log"],
            "times": times,
            "reached8": sum(t is not None for t in times8),
            "time8": summary(times8),
            "looser": looser,
        })
    print(f"oracle: {len(oracle)} points x {len(ORACLE_SEEDS)} seeds; best {key_text(ranked[0])} "
          f"{100 * best:.2f} %; target {100 * target:.2f} %; top 5: "
          + "; ".join(f"{key_text(k)} {100 * statistics.mean(oracle[k]['val_acc']):.2f}" for k in ranked[:5]))
    print()
    print("| method | runs at target | time to target, s | ERT to target, s | wall, s | trial-epochs "
          "| pick: oracle val acc % | pick on 10 fresh seeds: val loss | test acc % "
          "| oracle top 5 stopped (of sampled) | rerun identical |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['reached']} of {r['runs']} | {r['time']} | {ert_text(r['ert'])} "
              f"| {r['wall']} | {r['epochs']} "
              f"| {r['oracle_pick']} | {r['fresh_loss']} | {r['fresh_test']} | {r['false_stops']} | "
              f"{'yes' if r['identical'] else 'no'} |")
    print()
    print("| method | " + " | ".join(f"time to best - {g:g} pt, s (runs there)" for g in LOOSER_TARGETS) + " |")
    print("|---|" + "---|" * len(LOOSER_TARGETS))
    for r in rows:
        cells = [f"{summary(r['looser'][g])} ({sum(t is not None for t in r['looser'][g])})"
                 for g in LOOSER_TARGETS]
        print(f"| {r['method']} | " + " | ".join(cells) + " |")
    print()
    print(f"With the issue's 8-seed oracle (seeds 0-7: best {100 * best8:.2f} %, target "
          f"{100 * (best8 - 0.005):.2f} %, reached by "
          f"{sum(statistics.mean(r['val_acc']) >= best8 - 0.005 for r in oracle8.values())} points):")
    print()
    print("| method | runs at target | time to target, s | ERT to target, s |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['reached8']} of {r['runs']} | {r['time8']} | {ert_text(r['ert8'])} |")
    print()
    replay_table(args, oracle, target, top5)
    print()
    print("times to target per search seed:", {r["method"]: [None if t is None else round(t, 2) for t in r["times"]]
                                                for r in rows})


if __name__ == "__main__":
    main()

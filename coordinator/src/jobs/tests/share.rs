//! Fair share between sweeps, device routing and the per-device count KEDA scales on.

use super::*;
use crate::sweep::Device;

/// A sweep of `seeds` one-epoch jobs; its learning rate comes from its name, so no two sweeps
/// share a job.
fn grid(name: &str, seeds: u32, extra: &str) -> String {
    let seeds: Vec<String> = (0..seeds).map(|s| s.to_string()).collect();
    let lr = 1e-3
        + name
            .bytes()
            .enumerate()
            .map(|(i, b)| (i + 1) as f64 * f64::from(b))
            .sum::<f64>()
            * 1e-6;
    format!(
        "name = \"{name}\"\n{extra}\n[defaults]\nmax_epochs = 1\nlearning_rate = {lr}\n[grid]\nseed = [{}]\n",
        seeds.join(", ")
    )
}

fn submit_text(store: &mut Store, text: &str) -> String {
    let spec = SweepSpec::parse(text).unwrap();
    store
        .write(|tx| submit(tx, &spec, text, &dataset(), 1_000))
        .unwrap()
        .id
}

/// The sweep each job of `grants` belongs to.
fn sweeps_of(store: &mut Store, grants: &[LeaseGrant]) -> Vec<String> {
    grants
        .iter()
        .map(|g| {
            store
                .read(|tx| {
                    Ok(tx.query_row(
                        "SELECT last_sweep FROM jobs WHERE id = ?1",
                        [&g.job.id],
                        |r| r.get::<_, String>(0),
                    )?)
                })
                .unwrap()
        })
        .collect()
}

/// Each sweep's running count equals its leased jobs that were leased counted (while another
/// sweep competed, or under a cap).
fn assert_running_counts_match(store: &mut Store) {
    let rows: Vec<(String, i64, i64)> = store
        .read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT s.sweep_id, s.running,
                        (SELECT COUNT(*) FROM jobs j WHERE j.state = 'leased' AND j.counted = 1 AND j.last_sweep = s.sweep_id)
                 FROM sweep_shares s",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .unwrap();
    assert!(!rows.is_empty());
    for (sweep, kept, counted) in rows {
        assert_eq!(kept, counted, "sweep {sweep}");
    }
}

/// A 2,000-job sweep submitted first does not starve a 10-job sweep submitted after it: with two
/// workers of one slot each, the small sweep gets every other lease and ends within its own
/// twenty leases, while first come, first served would have run 2,000 jobs first.
#[test]
fn a_late_small_sweep_is_not_starved_by_an_early_big_one() {
    let mut store = Store::in_memory().unwrap();
    let big = submit_text(&mut store, &grid("big", 2000, ""));
    let small = submit_text(&mut store, &grid("small", 10, ""));
    let workers: Vec<String> = ["a", "b"]
        .iter()
        .map(|h| {
            store
                .write(|tx| register_worker(tx, h, "cpu", 1, 1_000))
                .unwrap()
        })
        .collect();
    let mut now = 2_000;
    let mut small_done = 0;
    let mut leases = 0;
    while small_done < 10 {
        for w in &workers {
            let grants = store.write(|tx| lease_jobs(tx, w, 1, now)).unwrap();
            assert_eq!(grants.len(), 1);
            leases += 1;
            let sweep = sweeps_of(&mut store, &grants).remove(0);
            if sweep == small {
                small_done += 1;
            } else {
                assert_eq!(sweep, big);
            }
            store
                .write(|tx| complete(tx, &grants[0].lease_id, w, &[metrics(1)], &result(0.7), now))
                .unwrap();
            now += 1;
        }
    }
    assert!(leases <= 21, "the small sweep ended after {leases} leases");
    assert_running_counts_match(&mut store);
}

/// A sweep alone leases without counting (no upkeep where no choice is made); once a second sweep
/// competes, leases are counted again, and the late sweep is served every other lease at once
/// although the first one's uncounted jobs still run.
#[test]
fn a_sweep_alone_leases_uncounted_and_a_second_one_is_served_at_once() {
    let mut store = Store::in_memory().unwrap();
    let big = submit_text(&mut store, &grid("big", 100, ""));
    let w = store
        .write(|tx| register_worker(tx, "w", "cpu", 8, 1_000))
        .unwrap();
    let running = |store: &mut Store, sweep: &str| -> i64 {
        store
            .read(|tx| {
                Ok(tx.query_row(
                    "SELECT running FROM sweep_shares WHERE sweep_id = ?1",
                    [sweep],
                    |r| r.get(0),
                )?)
            })
            .unwrap()
    };
    let alone = store.write(|tx| lease_jobs(tx, &w, 4, 2_000)).unwrap();
    assert_eq!(alone.len(), 4);
    assert_eq!(
        running(&mut store, &big),
        0,
        "nothing to choose: not counted"
    );
    store
        .write(|tx| {
            complete(
                tx,
                &alone[0].lease_id,
                &w,
                &[metrics(1)],
                &result(0.7),
                2_001,
            )
        })
        .unwrap();
    assert_eq!(
        running(&mut store, &big),
        0,
        "an uncounted job ends without upkeep"
    );
    let small = submit_text(&mut store, &grid("small", 10, ""));
    // Three of big's jobs still run uncounted; the next four leases alternate between the sweeps.
    let grants = store.write(|tx| lease_jobs(tx, &w, 4, 3_000)).unwrap();
    let sweeps = sweeps_of(&mut store, &grants);
    assert_eq!(
        sweeps.iter().filter(|s| **s == small).count(),
        2,
        "{sweeps:?}"
    );
    assert_eq!(
        (running(&mut store, &big), running(&mut store, &small)),
        (2, 2)
    );
    assert_running_counts_match(&mut store);
    // Big's uncounted jobs end without touching its count.
    for g in &alone[1..] {
        store
            .write(|tx| complete(tx, &g.lease_id, &w, &[metrics(1)], &result(0.7), 3_001))
            .unwrap();
    }
    assert_eq!(running(&mut store, &big), 2);
    assert_running_counts_match(&mut store);
}

/// Priority weighs the share, `max_running` caps a sweep, and a pack never passes the cap.
#[test]
fn priorities_and_caps_are_honoured() {
    let mut store = Store::in_memory().unwrap();
    let low = submit_text(&mut store, &grid("low", 100, ""));
    let high = submit_text(&mut store, &grid("high", 100, "priority = 3"));
    let capped = submit_text(&mut store, &grid("capped", 100, "max_running = 2"));
    let w = store
        .write(|tx| register_worker(tx, "big", "cpu", 64, 1_000))
        .unwrap();
    // 16 one-job leases held at once: shares by running / priority.
    let grants = store.write(|tx| lease_jobs(tx, &w, 16, 2_000)).unwrap();
    let sweeps = sweeps_of(&mut store, &grants);
    let count = |s: &str| sweeps.iter().filter(|x| *x == s).count();
    assert_eq!(count(&capped), 2, "{sweeps:?}");
    assert_eq!((count(&low), count(&high)), (4, 10), "{sweeps:?}");
    // Packs: the capped sweep's pack is cut at its cap.
    let w2 = store
        .write(|tx| register_worker(tx, "packer", "cpu", 1, 1_000))
        .unwrap();
    let capped2 = submit_text(
        &mut store,
        &grid("capped2", 50, "max_running = 3\npriority = 1000"),
    );
    let packs = store
        .write(|tx| {
            super::super::lease::lease_jobs_for(tx, &w2, Ask { slots: 1, pack: 16 }, None, 3_000)
        })
        .unwrap();
    let sweeps = sweeps_of(&mut store, &packs[0]);
    assert_eq!(sweeps, vec![capped2.clone(); 3]);
    assert_running_counts_match(&mut store);
    // Failing, expiring and cancelling keep the counts too.
    let g = &packs[0][0];
    store
        .write(|tx| fail(tx, &g.lease_id, &w2, "boom", true, 3_001))
        .unwrap();
    store.write(|tx| expire_leases(tx, 1_000_000_000)).unwrap();
    assert_running_counts_match(&mut store);
    let g = store
        .write(|tx| lease_jobs(tx, &w, 4, 1_000_000_001))
        .unwrap();
    assert!(!g.is_empty());
    store
        .write(|tx| cancel_sweep(tx, &low, 1_000_000_002))
        .unwrap();
    assert_running_counts_match(&mut store);
}

/// A `cuda` sweep goes only to CUDA workers, a `cpu` one only to CPU workers; KEDA's count per
/// device counts what that class may take.
#[test]
fn jobs_go_only_to_workers_of_their_device_class() {
    let mut store = Store::in_memory().unwrap();
    let gpu = submit_text(&mut store, &grid("gpu", 3, "device = \"cuda\""));
    let cpu = submit_text(&mut store, &grid("cpu", 2, "device = \"cpu\""));
    let any = submit_text(&mut store, &grid("any", 1, ""));
    let counts = |store: &mut Store, d: Option<Device>| store.read(|tx| open_work(tx, d)).unwrap();
    assert_eq!(counts(&mut store, None), (6, 0));
    assert_eq!(counts(&mut store, Some(Device::Cuda)), (4, 0));
    assert_eq!(counts(&mut store, Some(Device::Cpu)), (3, 0));
    let c = store
        .write(|tx| register_worker(tx, "c", "cpu", 64, 1_000))
        .unwrap();
    let grants = store.write(|tx| lease_jobs(tx, &c, 64, 2_000)).unwrap();
    let mut sweeps = sweeps_of(&mut store, &grants);
    sweeps.sort();
    assert_eq!(sweeps, [any.clone(), cpu.clone(), cpu.clone()]);
    let g = store
        .write(|tx| register_worker(tx, "g", "cuda:0", 64, 1_000))
        .unwrap();
    let grants = store.write(|tx| lease_jobs(tx, &g, 64, 2_000)).unwrap();
    assert_eq!(sweeps_of(&mut store, &grants), vec![gpu; 3]);
}

/// Jobs marked in their sweep's running count (`counted`), and jobs marked that are not leased.
fn marks(store: &mut Store) -> (i64, i64) {
    store
        .read(|tx| {
            Ok(tx.query_row(
                "SELECT (SELECT COALESCE(SUM(running), 0) FROM sweep_shares),
                        (SELECT COUNT(*) FROM jobs WHERE counted = 1 AND state <> 'leased')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .unwrap()
}

/// A way to end a lease, run in a transaction.
type EndLease<'a> = &'a dyn Fn(&rusqlite::Transaction<'_>) -> Result<(), Error>;

/// Every way a counted lease ends takes its job off its sweep's running count (migration 27: the
/// updates that end a lease clear the job's mark, and the mark's trigger keeps the count):
/// completion, failure, hand-back, expiry, cancellation and invalidation. No job that is not
/// leased stays marked.
#[test]
fn every_way_a_counted_lease_ends_takes_it_off_the_count() {
    let mut store = Store::in_memory().unwrap();
    submit_text(&mut store, &grid("one", 40, ""));
    submit_text(&mut store, &grid("two", 40, ""));
    let workers: Vec<String> = (0..6)
        .map(|i| {
            store
                .write(|tx| register_worker(tx, &format!("w{i}"), "cpu", 1, 1_000))
                .unwrap()
        })
        .collect();
    let now = 2_000;
    let lease = |store: &mut Store, w: &str| -> String {
        store
            .write(|tx| lease_jobs(tx, w, 1, now))
            .unwrap()
            .remove(0)
            .lease_id
    };
    let leases: Vec<String> = workers.iter().map(|w| lease(&mut store, w)).collect();
    assert_eq!(
        marks(&mut store),
        (6, 0),
        "two sweeps compete: every lease is counted"
    );
    assert_running_counts_match(&mut store);

    let ends: [EndLease<'_>; 3] = [
        &|tx| {
            complete(
                tx,
                &leases[0],
                &workers[0],
                &[metrics(1)],
                &result(0.7),
                now,
            )
            .map(drop)
        },
        &|tx| fail(tx, &leases[1], &workers[1], "boom", true, now).map(drop),
        &|tx| release(tx, &leases[2], &workers[2], "stopping", now).map(drop),
    ];
    for (n, end) in ends.iter().enumerate() {
        store.write(|tx| end(tx)).unwrap();
        assert_eq!(marks(&mut store), (5 - n as i64, 0), "after end {n}");
        assert_running_counts_match(&mut store);
    }
    // Worker 3 stops heartbeating (4 and 5 do not): its lease expires.
    let ttl: Millis = store
        .read(|tx| Ok(tx.query_row("SELECT MAX(lease_ttl_ms) FROM jobs", [], |r| r.get(0))?))
        .unwrap();
    let ttl_later = now + ttl + 1;
    store
        .write(|tx| {
            heartbeat(
                tx,
                &workers[4],
                std::slice::from_ref(&leases[4]),
                false,
                now + ttl,
            )?;
            heartbeat(
                tx,
                &workers[5],
                std::slice::from_ref(&leases[5]),
                false,
                now + ttl,
            )?;
            expire_leases(tx, ttl_later)
        })
        .unwrap();
    assert_eq!(marks(&mut store), (2, 0), "after expiry");
    assert_running_counts_match(&mut store);
    // Worker 4's sweep is cancelled: its running job stops at its next heartbeat. Worker 5's
    // results are invalidated: its running job is queued again.
    let sweep_of_4: String = store
        .read(|tx| {
            Ok(tx.query_row(
                "SELECT last_sweep FROM jobs WHERE lease_id = ?1",
                [&leases[4]],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    store
        .write(|tx| {
            cancel_sweep(tx, &sweep_of_4, ttl_later)?;
            heartbeat(
                tx,
                &workers[4],
                std::slice::from_ref(&leases[4]),
                false,
                ttl_later,
            )
        })
        .unwrap();
    assert_eq!(marks(&mut store), (1, 0), "after cancel");
    store
        .write(|tx| {
            invalidate_worker(
                tx,
                jetsweep_proto::worker_id::worker_name(&workers[5]),
                ttl_later,
            )
            .map(drop)
        })
        .unwrap();
    assert_eq!(marks(&mut store), (0, 0), "after invalidation");
    assert_running_counts_match(&mut store);
}

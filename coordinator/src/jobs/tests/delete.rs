//! Deleting a sweep: what only it holds goes, what other sweeps hold stays, and a sweep with work
//! left is refused.

use super::*;
use crate::credentials::{Caller, Role};

fn submit_text(store: &mut Store, text: &str) -> SweepCounts {
    let spec = SweepSpec::parse(text).unwrap();
    store
        .write(|tx| submit(tx, &spec, text, &dataset(), 1_000))
        .unwrap()
}

fn count(store: &mut Store, sql: &str) -> i64 {
    store
        .read(|tx| Ok(tx.query_row(sql, [], |r| r.get(0))?))
        .unwrap()
}

/// Two sweeps share two of their four jobs. Deleting the first removes its two own jobs with their
/// attempts, epochs and kept weights, keeps the shared two (with their results, now the second
/// sweep's), and leaves the second sweep's counts as they were; a running sweep is refused, and a
/// user may not delete another's sweep.
#[test]
fn deleting_a_sweep_removes_what_only_it_holds() {
    let mut store = Store::in_memory().unwrap();
    let first = submit_text(
        &mut store,
        "name = \"first\"\n[defaults]\nmax_epochs = 3\n[grid]\nseed = [0, 1, 2, 3]\n",
    );
    let w = store
        .write(|tx| register_worker(tx, "w", "cpu", 8, 1_000))
        .unwrap();
    assert_eq!(run_all(&mut store, &w, 2_000), 4);
    store
        .write(|tx| {
            for job in tx
                .prepare("SELECT id FROM jobs")?
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?
            {
                tx.execute(
                    "INSERT INTO models (job_id, kind, epoch, weights) VALUES (?1, 'best', 3, x'00')",
                    [job],
                )?;
            }
            Ok(())
        })
        .unwrap();
    let second = submit_text(
        &mut store,
        "name = \"second\"\n[defaults]\nmax_epochs = 3\n[grid]\nseed = [2, 3, 4, 5]\n",
    );
    assert_eq!(second.done, 2, "two cells reused");
    let admin = Caller::anonymous();
    // The second sweep has work left: refused, nothing changed.
    assert!(matches!(
        store.write(|tx| delete_sweep(tx, &admin, &second.id, 3_000)),
        Err(Error::SweepOpen { open: 2, .. })
    ));
    // Another user may not.
    let bob = Caller {
        name: "bob".into(),
        role: Role::User,
    };
    assert!(matches!(
        store.write(|tx| delete_sweep(tx, &bob, &first.id, 3_000)),
        Err(Error::PermissionDenied(_))
    ));
    let deleted = store
        .write(|tx| delete_sweep(tx, &admin, &first.id, 3_000))
        .unwrap();
    assert_eq!(
        (deleted.jobs, deleted.shared, deleted.epochs, deleted.models),
        (2, 2, 6, 2)
    );
    // The dataset is still the second sweep's.
    assert_eq!(deleted.unused_dataset, None);
    assert_eq!(count(&mut store, "SELECT COUNT(*) FROM jobs"), 4);
    assert_eq!(count(&mut store, "SELECT COUNT(*) FROM models"), 2);
    assert_eq!(count(&mut store, "SELECT COUNT(*) FROM epochs"), 6);
    assert_eq!(
        count(
            &mut store,
            "SELECT COUNT(*) FROM sweeps WHERE id = 'first-1'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut store,
            "SELECT COUNT(*) FROM jobs WHERE last_sweep = 'first-1'"
        ),
        0
    );
    let after = store.read(|tx| sweep_counts(tx, &second.id)).unwrap();
    assert_eq!((after.done, after.queued, after.total), (2, 2, 4));
    assert!(matches!(
        store.read(|tx| sweep_counts(tx, &first.id)),
        Err(Error::NotFound(_))
    ));
    // The second sweep finishes, and then goes too, with its dataset.
    assert_eq!(run_all(&mut store, &w, 4_000), 2);
    let deleted = store
        .write(|tx| delete_sweep(tx, &admin, &second.id, 5_000))
        .unwrap();
    assert_eq!((deleted.jobs, deleted.shared), (4, 0));
    assert_eq!(
        deleted.unused_dataset.as_deref(),
        Some(dataset().sha256.as_str())
    );
    assert_eq!(count(&mut store, "SELECT COUNT(*) FROM jobs"), 0);
    assert_eq!(count(&mut store, "SELECT COUNT(*) FROM attempts"), 0);
    assert_eq!(
        count(
            &mut store,
            "SELECT COUNT(*) FROM audit WHERE action = 'delete'"
        ),
        2
    );
}

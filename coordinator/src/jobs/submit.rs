//! Submitting a sweep: the sweep row, its jobs in grid order, and reuse of cells already run.

use rusqlite::{OptionalExtension, Transaction, params};

use super::halving::StopSettings;
use super::lease::{MAX_LOST, next_seq};
use super::rows::corrupt;
use super::{DatasetRef, Millis, SweepCounts, sweep_counts};
use crate::Error;
use crate::store::{exec, one};
use crate::sweep::{SweepSpec, Trial, job_id, private_job_id};
use jetsweep_proto::state::JobStatus;

/// The sweep's id: its name as a slug, and its number among all sweeps.
fn sweep_id(name: &str, number: i64) -> String {
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{}-{number}", slug.trim_matches('-'))
}

/// Stores a sweep and its jobs. Cells already done (in any earlier sweep) are reused; failed or
/// cancelled ones are queued again with `attempts` more tries and [`MAX_LOST`] more lost workers
/// (attempt numbers keep counting up, so a lease id is never reused); queued or running ones are
/// shared.
pub fn submit(
    tx: &Transaction<'_>,
    spec: &SweepSpec,
    toml: &str,
    dataset: &DatasetRef,
    now: Millis,
) -> Result<SweepCounts, Error> {
    let n: i64 = one(tx, "SELECT COUNT(*) FROM sweeps", [], |r| r.get(0))?;
    let sweep_id = sweep_id(&spec.name, n + 1);
    let lease_ttl = spec.lease_timeout.as_millis() as i64;
    let stop_json = StopSettings::of(&spec.search)
        .map(|s| serde_json::to_string(&s).expect("settings serialise"));
    exec(tx,
        "INSERT INTO sweeps (id, name, spec_toml, dataset_spec, dataset_sha256, dataset_bytes, synthetic, validation, max_attempts, lease_ttl_ms, created_ms, stop_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![sweep_id, spec.name, toml, dataset.spec, dataset.sha256, dataset.bytes as i64, dataset.synthetic, dataset.validation.as_str(), spec.attempts, lease_ttl, now, stop_json],
    )?;
    exec(
        tx,
        "INSERT INTO sweep_shares (sweep_id, priority, max_running, device, seq) VALUES (?1, ?2, ?3, ?4, (SELECT rowid FROM sweeps WHERE id = ?1))",
        params![
            sweep_id,
            spec.schedule.priority,
            spec.schedule.max_running,
            spec.schedule.device.name()
        ],
    )?;
    link_trials(tx, &sweep_id, spec, &dataset.sha256, &spec.trials(), 0, now)?;
    super::halving::after_submit(tx, &sweep_id, now)?;
    sweep_counts(tx, &sweep_id)
}

/// Adds trials to a sweep from grid position `first_position` on (seeds innermost: a point is
/// `position / seeds`): a new job each, or the existing one reused (done), queued again (failed,
/// cancelled or paused) or shared (queued or running).
pub(super) fn link_trials(
    tx: &Transaction<'_>,
    sweep_id: &str,
    spec: &SweepSpec,
    sha256: &str,
    trials: &[Trial],
    first_position: usize,
    now: Millis,
) -> Result<(), Error> {
    let lease_ttl = spec.lease_timeout.as_millis() as i64;
    let mut seq = next_seq(tx)?;
    let mut find = tx.prepare_cached("SELECT state FROM jobs WHERE id = ?1")?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO jobs (id, model, optimizer, batch_size, max_epochs, learning_rate, seed, dataset_sha256, state, queued_seq, max_attempts, lease_ttl_ms, updated_ms, max_lost, last_sweep, pack_key, weight_decay, keep_models, counted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, 0)",
    )?;
    let mut requeue = tx.prepare_cached(
        "UPDATE jobs SET state = 'queued', queued_seq = ?2, max_attempts = attempts - lost + ?3, max_lost = lost + ?6, last_sweep = ?7, lease_ttl_ms = ?4, error = NULL,
         lease_id = NULL, worker_id = NULL, lease_expires_ms = NULL, epochs_done = 0, latest_json = NULL, updated_ms = ?5 WHERE id = ?1",
    )?;
    let mut adopt = tx.prepare_cached("UPDATE jobs SET last_sweep = ?2 WHERE id = ?1")?;
    // A job several sweeps hold keeps the most any of them asks.
    let keep = spec.keep_models.level();
    let mut keep_more =
        tx.prepare_cached("UPDATE jobs SET keep_models = ?2 WHERE id = ?1 AND keep_models < ?2")?;
    let mut link = tx.prepare_cached("INSERT OR IGNORE INTO sweep_jobs (sweep_id, job_id, position, reused, point) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    // Seeds are the innermost axis: a point's seeds are adjacent (`SweepSpec::trials`).
    let seeds = spec.seeds.len().max(1);
    for (i, trial) in trials.iter().enumerate() {
        let position = first_position + i;
        let id = if spec.reuse {
            job_id(trial, sha256)
        } else {
            private_job_id(&job_id(trial, sha256), sweep_id)
        };
        let state: Option<String> = find.query_row([&id], |r| r.get(0)).optional()?;
        let state = state
            .map(|s| {
                s.parse::<JobStatus>()
                    .map_err(|e| corrupt(&format!("job {id} state"), e))
            })
            .transpose()?;
        let reused = match state {
            None => {
                insert.execute(params![
                    id,
                    trial.model.name,
                    trial.optimizer.as_str(),
                    trial.batch_size,
                    trial.max_epochs,
                    trial.learning_rate,
                    trial.seed as i64,
                    sha256,
                    seq,
                    spec.attempts,
                    lease_ttl,
                    now,
                    MAX_LOST,
                    sweep_id,
                    trial.pack_key(),
                    trial.weight_decay,
                    keep
                ])?;
                seq += 1;
                false
            }
            Some(JobStatus::Done) => true,
            // A paused job resumes from its saved state for the new sweep.
            Some(JobStatus::Failed | JobStatus::Cancelled | JobStatus::Paused) => {
                requeue.execute(params![
                    id,
                    seq,
                    spec.attempts,
                    lease_ttl,
                    now,
                    MAX_LOST,
                    sweep_id
                ])?;
                seq += 1;
                false
            }
            Some(JobStatus::Queued | JobStatus::Leased) => {
                // Shared with an earlier sweep that is still running it: it now runs for this one.
                adopt.execute(params![id, sweep_id])?;
                false
            }
        };
        if state.is_some() {
            keep_more.execute(params![id, keep])?;
        }
        link.execute(params![
            sweep_id,
            id,
            position as i64,
            reused,
            (position / seeds) as i64
        ])?;
    }
    // New jobs are queued without a trigger (requeued and adopted ones set it themselves): the
    // sweep competes for workers until a lease finds nothing queued.
    exec(
        tx,
        "UPDATE sweep_shares SET active = 1 WHERE sweep_id = ?1",
        [sweep_id],
    )?;
    Ok(())
}

//! Kept models: the weights of a finished job's best epoch (lowest validation loss, MASE's
//! `best.ckpt`) and, when one of its sweeps asks (`keep_models = "best-and-last"`), of its last,
//! as the worker sent them with the result. They are checked before they are kept — the job's
//! model and shapes, finite values, the epoch the result names — and a file that fails is logged
//! and dropped, never the result it came with.

use rusqlite::{OptionalExtension, Transaction, params};

use super::lease::job_of_lease;
use crate::Error;
use jetsweep_proto::model::Architecture;
use jetsweep_proto::weights::ModelWeights;

/// Which of a job's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Best,
    Last,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Best => "best",
            Kind::Last => "last",
        }
    }
}

/// Keeps what the lease that completed its job sent: `best` and `last` (encoded weights; empty:
/// none sent), as much as the job's `keep_models` asks. Call after [`super::complete`] in the
/// same transaction. Weights that do not fit the job are logged and not kept.
pub fn keep_weights(
    tx: &Transaction<'_>,
    lease_id: &str,
    best: &[u8],
    last: &[u8],
) -> Result<(), Error> {
    if best.is_empty() && last.is_empty() {
        return Ok(());
    }
    let job = job_of_lease(lease_id);
    let row: Option<(String, u32, i64, Option<String>)> = tx
        .prepare_cached(
            "SELECT j.model, j.max_epochs, j.keep_models, j.result_json FROM jobs j
             JOIN attempts a ON a.job_id = j.id
             WHERE j.id = ?1 AND a.lease_id = ?2 AND a.outcome = 'done' AND j.state = 'done'",
        )?
        .query_row(params![job, lease_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((model, max_epochs, keep, result)) = row else {
        return Ok(());
    };
    let best_epoch = result
        .as_deref()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
        .and_then(|r| r["best_epoch"].as_u64())
        .unwrap_or(0) as u32;
    let wanted = [
        (Kind::Best, best, best_epoch, keep >= 1),
        (Kind::Last, last, max_epochs, keep >= 2),
    ];
    for (kind, bytes, epoch, keep) in wanted {
        if !keep || bytes.is_empty() {
            continue;
        }
        match checked(bytes, &model, epoch) {
            Ok(()) => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO models (job_id, kind, epoch, weights) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![job, kind.name(), epoch, bytes])?;
            }
            Err(why) => {
                tracing::warn!(job, lease = lease_id, kind = kind.name(), error = %why,
                    "weights sent with a result not kept");
            }
        }
    }
    Ok(())
}

/// Whether `bytes` are weights of `model` after `epoch`.
fn checked(bytes: &[u8], model: &str, epoch: u32) -> Result<(), String> {
    let weights = ModelWeights::decode(bytes)?;
    let arch: Architecture = model
        .parse()
        .map_err(|e| format!("the job's model {model}: {e}"))?;
    if weights.model != arch.name {
        return Err(format!(
            "weights of {}, the job trains {model}",
            weights.model
        ));
    }
    if weights.epoch != epoch {
        return Err(format!(
            "weights after epoch {}, wanted {epoch}",
            weights.epoch
        ));
    }
    weights.check(&arch)
}

/// A job's kept weights of `kind`: the epoch and the encoded weights, if kept.
pub fn kept_weights(
    tx: &Transaction<'_>,
    job_id: &str,
    kind: Kind,
) -> Result<Option<(u32, Vec<u8>)>, Error> {
    Ok(tx
        .prepare_cached("SELECT epoch, weights FROM models WHERE job_id = ?1 AND kind = ?2")?
        .query_row(params![job_id, kind.name()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Which trial's weights to find.
#[derive(Debug, Clone, PartialEq)]
pub enum Which {
    /// The best point (chosen on validation) and its seed with the lowest validation loss.
    Best,
    /// A point by its row number in the results (1-based), and one of its seeds.
    Point { point: u32, seed: u64 },
    /// A job of the sweep.
    Job(String),
}

/// A found trial: its job, its point's row number, and its trial.
#[derive(Debug, Clone)]
pub struct Found {
    pub job_id: String,
    pub point: u32,
    pub trial: crate::sweep::Trial,
}

/// The job `which` names in `sweep_id`, finished. NOT_FOUND says what is missing.
pub fn find_trial(tx: &Transaction<'_>, sweep_id: &str, which: &Which) -> Result<Found, Error> {
    super::sweep_head(tx, sweep_id)?;
    let outcomes = super::sweep_outcomes(tx, sweep_id)?;
    let aggregate = crate::results::aggregate(&outcomes);
    let rows = &aggregate.rows;
    let point_of = |trial: &crate::sweep::Trial| {
        rows.iter().position(|r| {
            let p = &r.point;
            p.model.name == trial.model.name
                && p.optimizer == trial.optimizer
                && p.batch_size == trial.batch_size
                && p.max_epochs == trial.max_epochs
                && p.learning_rate.to_bits() == trial.learning_rate.to_bits()
                && p.weight_decay.to_bits() == trial.weight_decay.to_bits()
        })
    };
    // Each done job of the sweep with its trial and its best validation loss.
    let done: Vec<(String, crate::sweep::Trial, f64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT j.id, j.summary_json FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
             WHERE s.sweep_id = ?1 AND j.state = 'done' ORDER BY s.position",
        )?;
        let ids: Vec<(String, Option<String>)> = stmt
            .query_map([sweep_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, summary) in ids {
            let job = super::get_job(tx, &id)?;
            let loss = summary
                .as_deref()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                .and_then(|s| s["best_val_loss"].as_f64())
                .unwrap_or(f64::INFINITY);
            out.push((id, job.trial, loss));
        }
        out
    };
    let found = match which {
        Which::Job(id) => {
            if !tx
                .prepare_cached("SELECT 1 FROM sweep_jobs WHERE sweep_id = ?1 AND job_id = ?2")?
                .exists(params![sweep_id, id])?
            {
                return Err(Error::NotFound(format!("job {id} in sweep {sweep_id}")));
            }
            done.iter()
                .find(|(j, ..)| j == id)
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "a finished job {id}: it has not finished (only a finished trial has a model)"
                    ))
                })?
                .clone()
        }
        Which::Point { point, seed } => {
            let index = (*point as usize)
                .checked_sub(1)
                .filter(|i| *i < rows.len())
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "point {point}: the sweep's results have points 1 to {}",
                        rows.len()
                    ))
                })?;
            done.iter()
                .find(|(_, t, _)| t.seed == *seed && point_of(t) == Some(index))
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "seed {seed} of point {point} finished (`jetsweep status {sweep_id}` shows each trial)"
                    ))
                })?
                .clone()
        }
        Which::Best => {
            let best = aggregate.best.ok_or_else(|| {
                Error::NotFound(format!(
                    "a best point of sweep {sweep_id}: no point has a finished seed yet"
                ))
            })?;
            done.iter()
                .filter(|(_, t, _)| point_of(t) == Some(best))
                .min_by(|a, b| a.2.total_cmp(&b.2).then(a.1.seed.cmp(&b.1.seed)))
                .ok_or_else(|| Error::NotFound(format!("a finished seed of point {}", best + 1)))?
                .clone()
        }
    };
    let (job_id, trial, _) = found;
    let point = point_of(&trial).map_or(0, |i| i as u32 + 1);
    Ok(Found {
        job_id,
        point,
        trial,
    })
}

/// The metrics a job reported for `epoch`, as its latest attempt that reached the epoch reported
/// them (None: not reported yet). Early stopping reads its rung scores through this too.
pub fn epoch_metrics(
    tx: &Transaction<'_>,
    job_id: &str,
    epoch: u32,
) -> Result<Option<jetsweep_proto::metrics::EpochMetrics>, Error> {
    let json: Option<String> = tx
        .prepare_cached(
            "SELECT e.metrics_json FROM attempts a JOIN epochs e ON e.lease_id = a.lease_id
             WHERE a.job_id = ?1 AND e.epoch = ?2 ORDER BY a.attempt DESC LIMIT 1",
        )?
        .query_row(params![job_id, epoch], |r| r.get(0))
        .optional()?;
    json.map(|j| {
        serde_json::from_str(&j)
            .map_err(|e| Error::Corrupt(format!("job {job_id} epoch {epoch}: {e}")))
    })
    .transpose()
}

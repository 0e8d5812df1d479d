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

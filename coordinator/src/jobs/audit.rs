//! Who did what: the credential a sweep was submitted by, and the audit log — one row per
//! submission and cancel, written in the transaction that did it, so a row exists exactly when
//! its action happened.

use rusqlite::{OptionalExtension, Transaction, params};

use super::Millis;
use crate::Error;
use crate::credentials::Caller;

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub seq: i64,
    pub at_ms: Millis,
    pub who: String,
    pub role: String,
    pub action: String,
    pub sweep_id: String,
    pub detail: String,
}

/// Most rows one page of the log holds.
pub const MAX_PAGE: u32 = 1_000;

/// Records `action` on `sweep_id` by `caller`, with a short `detail`.
pub fn record(
    tx: &Transaction<'_>,
    now: Millis,
    caller: &Caller,
    action: &str,
    sweep_id: &str,
    detail: &str,
) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO audit (at_ms, who, role, action, sweep_id, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now,
        caller.name,
        caller.role.name(),
        action,
        sweep_id,
        detail
    ])?;
    Ok(())
}

/// Marks `sweep_id` as submitted by `caller`, and logs it.
pub fn submitted(
    tx: &Transaction<'_>,
    now: Millis,
    caller: &Caller,
    sweep_id: &str,
    detail: &str,
) -> Result<(), Error> {
    tx.prepare_cached("UPDATE sweeps SET submitted_by = ?2 WHERE id = ?1")?
        .execute(params![sweep_id, caller.name])?;
    record(tx, now, caller, "submit", sweep_id, detail)
}

/// Refuses `caller`'s cancel of a sweep it may not cancel (a user: another's sweep), with
/// PERMISSION_DENIED naming the submitter. NOT_FOUND for a sweep that does not exist.
pub fn check_may_cancel(
    tx: &Transaction<'_>,
    caller: &Caller,
    sweep_id: &str,
) -> Result<(), Error> {
    let submitted_by: String = tx
        .prepare_cached("SELECT submitted_by FROM sweeps WHERE id = ?1")?
        .query_row([sweep_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("sweep {sweep_id:?}")))?;
    if caller.may_cancel(&submitted_by) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "sweep {sweep_id} was submitted by {submitted_by:?}; credential {:?} (role {}) may cancel only its own sweeps",
            caller.name, caller.role
        )))
    }
}

/// The log, newest first: up to `limit` rows older than `before` (a row's seq; `None`: from the
/// newest), of one sweep or all.
pub fn page(
    tx: &Transaction<'_>,
    sweep_id: Option<&str>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditRow>, Error> {
    let mut stmt = tx.prepare_cached(
        "SELECT seq, at_ms, who, role, action, sweep_id, detail FROM audit
         WHERE (?1 IS NULL OR sweep_id = ?1) AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![sweep_id, before.unwrap_or(i64::MAX), limit.min(MAX_PAGE)],
        |r| {
            Ok(AuditRow {
                seq: r.get(0)?,
                at_ms: r.get(1)?,
                who: r.get(2)?,
                role: r.get(3)?,
                action: r.get(4)?,
                sweep_id: r.get(5)?,
                detail: r.get(6)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

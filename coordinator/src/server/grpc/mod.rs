//! The two gRPC services and KEDA's scaler: glue between the wire and the domain. Handlers unpack
//! and validate requests, run the domain functions of [`crate::jobs`] through the store's
//! group-committing writer (or over a read connection on a blocking thread), and convert the answer
//! back. Domain errors become gRPC statuses in exactly one place (`impl From<Error> for Status` in
//! [`crate::error`]).
//!
//! - `sweeps`: the SweepService; `workers`: the WorkerService; `views`: the coordinator's records
//!   as wire messages; `scaler`: KEDA's external scaler, on a listen address of its own.

pub mod scaler;
pub(super) mod sweeps;
pub(crate) mod views;
pub(super) mod workers;

use crate::Error;

/// Longest id (sweep, lease, worker) or host name a request may carry: every one the coordinator
/// issues is far shorter, and a request is refused before a long one is copied anywhere.
pub const MAX_ID_CHARS: usize = 256;

/// A required string field (an id, a host name): empty, or longer than [`MAX_ID_CHARS`], is an
/// invalid request naming the field.
pub(super) fn required(value: &str, field: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::InvalidRequest(format!("{field} is required")));
    }
    if value.len() > MAX_ID_CHARS {
        return Err(Error::InvalidRequest(format!(
            "{field} of {} bytes: at most {MAX_ID_CHARS}",
            value.len()
        )));
    }
    // Ids and host names are printed in tables, logs and reports: a control character (a newline
    // forging a log line, a terminal escape retitling the terminal) has no business in one.
    if value.chars().any(char::is_control) {
        return Err(Error::InvalidRequest(format!(
            "{field} holds a control character: give printable text"
        )));
    }
    Ok(())
}

/// Free text from a worker (an error message), kept to `max` characters with its control
/// characters as spaces: it is shown in tables, logs and reports.
pub(super) fn printable_text(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

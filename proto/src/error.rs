//! The vocabulary's one error type: a value that is not one of ours, a field the wire left out, or
//! a coordinator a client cannot reach. Messages name the value and say what to use instead.

/// What went wrong with a value, a message or a connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "unknown model {0:?}: use jsc-tiny, jsc-toy, jsc-s, jsc-tiny-x10, or mlp:W1,W2,... (hidden widths)"
    )]
    UnknownModel(String),

    /// A value out of its range, named by the field it was given for.
    #[error("{field} = {value}: {hint}")]
    Invalid {
        field: &'static str,
        value: String,
        hint: String,
    },

    /// A message without a field it must carry.
    #[error("{0} is required")]
    Missing(&'static str),

    #[error("coordinator address {url:?} is not a URL like http://host:7070: {reason}")]
    Address { url: String, reason: String },

    #[error("cannot reach the coordinator at {url}: {reason} (is `jetsweep serve` running there?)")]
    Unreachable { url: String, reason: String },

    #[error(transparent)]
    Token(#[from] crate::auth::InvalidToken),

    #[error("TLS: {path}: {reason}")]
    Tls { path: String, reason: String },
}

impl Error {
    /// The field a value error is about (`None` for the other kinds).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Error::UnknownModel(_) => Some("model"),
            Error::Invalid { field, .. } => Some(field),
            Error::Missing(field) => Some(field),
            _ => None,
        }
    }
}

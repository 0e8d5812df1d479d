//! Logs, as every jetsweep process writes them: `tracing` events to stderr, as text or as one JSON
//! object per line, filtered by `JETSWEEP_LOG` (or `RUST_LOG`), e.g. `JETSWEEP_LOG=debug` or
//! `JETSWEEP_LOG=info,jetsweep_coordinator=debug`. Events carry ids as fields (`sweep`, `job`,
//! `lease`, `worker`), so one job can be followed across the coordinator's and its worker's logs.
//! A command's own output (tables, ids) goes to stdout, not here.

use std::fmt;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// The filter when neither variable is set: what an operator wants to see.
const DEFAULT_FILTER: &str = "info";

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per event, with its fields and the fields of its spans: for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?}: use text or json")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Installs the process's log subscriber. A filter that does not parse is reported and the
/// default used, rather than logging nothing.
pub fn init(format: LogFormat) {
    let wanted = std::env::var("JETSWEEP_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| DEFAULT_FILTER.to_string());
    let (filter, bad) = match EnvFilter::try_new(&wanted) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new(DEFAULT_FILTER), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // Another subscriber already installed (a test that set one up) is not an error.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
    if let Some(e) = bad {
        tracing::warn!(filter = %wanted, error = %e, "log filter does not parse; using {DEFAULT_FILTER:?}");
    }
}

/// Installs the log subscriber of `jetsweep run`, whose coordinator shares the terminal with a
/// progress bar: the terminal gets warnings and errors only, `file` the full log (`info`). With
/// `JETSWEEP_LOG` (or `RUST_LOG`) set, both follow it.
pub fn init_with_file(format: LogFormat, file: std::fs::File) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let asked = std::env::var("JETSWEEP_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let filter = |default: &str| {
        asked
            .as_deref()
            .and_then(|a| EnvFilter::try_new(a).ok())
            .unwrap_or_else(|| EnvFilter::new(default))
    };
    type Boxed = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;
    let layer = |writer: tracing_subscriber::fmt::writer::BoxMakeWriter, default: &str| -> Boxed {
        let base = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false);
        match format {
            LogFormat::Text => base.with_filter(filter(default)).boxed(),
            LogFormat::Json => base
                .json()
                .with_current_span(true)
                .with_filter(filter(default))
                .boxed(),
        }
    };
    let file = std::sync::Mutex::new(file);
    let _ = tracing_subscriber::registry()
        .with(vec![
            layer(
                tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
                "warn",
            ),
            layer(
                tracing_subscriber::fmt::writer::BoxMakeWriter::new(file),
                DEFAULT_FILTER,
            ),
        ])
        .try_init();
    if let Some(a) = asked.filter(|a| EnvFilter::try_new(a).is_err()) {
        tracing::warn!(filter = %a, "log filter does not parse; using the defaults");
    }
}

//! The model-name grammar both sides speak: `jsc-tiny`, `jsc-toy`, `jsc-s`, `jsc-tiny-x10`, and
//! `mlp:W1,W2,...` (hidden widths). A name parses to an [`Architecture`]: the shape of the network,
//! enough to count its parameters and to validate a sweep without building a model. The worker
//! builds the burn module from it.
//!
//! Every MASE JSC model has the same skeleton: `BatchNorm1d(16) → ReLU`, then stages of
//! `Linear → [BatchNorm1d] → ReLU`, the last stage producing the 5 class scores.

use std::fmt;
use std::str::FromStr;

use jetsweep_data::{NUM_CLASSES, NUM_FEATURES};

use crate::Error;

/// Widest hidden layer a generic `mlp:` may ask for.
pub const MAX_WIDTH: usize = 4096;
/// Most hidden layers a generic `mlp:` may ask for: deeper nets are not what these sweeps study,
/// and the bound keeps a model name (copied into every job of a grid) short.
pub const MAX_HIDDEN_LAYERS: usize = 16;

/// The shape of a model: the width each linear stage produces (the last is 5) and whether a
/// BatchNorm follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Architecture {
    /// The name it was parsed from, canonical (`mlp:64,32`, without spaces).
    pub name: String,
    pub stages: Vec<StageShape>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageShape {
    pub width: usize,
    pub norm: bool,
}

/// Named models, with a one-line description each (shown by `--help` and in errors).
pub const MODELS: [(&str, &str); 5] = [
    ("jsc-tiny", "BN16 ReLU Linear16→5 ReLU; 117 params (MASE)"),
    (
        "jsc-toy",
        "BN16 ReLU, Linear→BN→ReLU 16→8→8→5; 327 params (MASE)",
    ),
    (
        "jsc-s",
        "hidden 64-32-32-32, BN after the first and last linear; 5,615 params (MASE)",
    ),
    (
        "jsc-tiny-x10",
        "BN16 ReLU Linear16→48 BN48 ReLU Linear48→5 ReLU; 1,189 params, ~10x jsc-tiny (lab question 4)",
    ),
    (
        "mlp:W1,W2,...",
        "generic: BN16 ReLU, Linear→BN→ReLU for each hidden width, Linear→5 ReLU",
    ),
];

fn stages(spec: &[(usize, bool)]) -> Vec<StageShape> {
    spec.iter()
        .map(|&(width, norm)| StageShape { width, norm })
        .collect()
}

impl FromStr for Architecture {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        let unknown = |why: String| Error::UnknownModel(why);
        let (shape, canonical) = match name {
            "jsc-tiny" => (stages(&[(5, false)]), name.to_string()),
            "jsc-toy" => (stages(&[(8, true), (8, true), (5, true)]), name.to_string()),
            "jsc-s" => (
                stages(&[(64, true), (32, false), (32, false), (32, false), (5, true)]),
                name.to_string(),
            ),
            "jsc-tiny-x10" => (stages(&[(48, true), (5, false)]), name.to_string()),
            _ => {
                let Some(widths) = name.strip_prefix("mlp:") else {
                    return Err(unknown(truncated(name)));
                };
                let mut hidden = Vec::new();
                for w in widths.split(',') {
                    if hidden.len() == MAX_HIDDEN_LAYERS {
                        return Err(unknown(format!(
                            "{} (at most {MAX_HIDDEN_LAYERS} hidden layers)",
                            truncated(name)
                        )));
                    }
                    match w.trim().parse::<usize>() {
                        Ok(w) if (1..=MAX_WIDTH).contains(&w) => hidden.push(w),
                        _ => {
                            return Err(unknown(format!(
                                "{} (hidden width {:?} must be a whole number from 1 to {MAX_WIDTH})",
                                truncated(name),
                                truncated(w)
                            )));
                        }
                    }
                }
                let canonical = format!(
                    "mlp:{}",
                    hidden
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                );
                let mut shape: Vec<(usize, bool)> = hidden.iter().map(|&w| (w, true)).collect();
                shape.push((NUM_CLASSES, false));
                (stages(&shape), canonical)
            }
        };
        Ok(Architecture {
            name: canonical,
            stages: shape,
        })
    }
}

/// A name as an error shows it: at most 64 characters, so a hostile one is not echoed whole.
fn truncated(s: &str) -> String {
    const SHOWN: usize = 64;
    match s.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Architecture {
    /// Trainable parameters, by arithmetic (the worker's tests check it against the built module).
    pub fn param_count(&self) -> usize {
        let mut n = 2 * NUM_FEATURES;
        let mut fan_in = NUM_FEATURES;
        for s in &self.stages {
            n += fan_in * s.width + s.width + if s.norm { 2 * s.width } else { 0 };
            fan_in = s.width;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_mase() {
        for (name, expected) in [
            ("jsc-tiny", 117),
            ("jsc-toy", 327),
            ("jsc-s", 5_615),
            ("jsc-tiny-x10", 1_189),
            ("mlp:64,32", 3_557),
        ] {
            let arch: Architecture = name.parse().unwrap();
            assert_eq!(arch.param_count(), expected, "{name}");
        }
    }

    #[test]
    fn unknown_models_are_refused_by_name() {
        for bad in ["jsc-huge", "mlp:", "mlp:0", "mlp:8,x", "mlp:4097"] {
            let err = bad.parse::<Architecture>().unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        let deep = format!("mlp:{}", vec!["8"; 17].join(","));
        let err = deep.parse::<Architecture>().unwrap_err().to_string();
        assert!(err.contains("at most 16 hidden layers"), "{err}");
        let long = format!("jsc-{}", "x".repeat(100_000));
        let err = long.parse::<Architecture>().unwrap_err().to_string();
        assert!(err.len() < 400, "a long name is not echoed whole: {err}");
    }

    #[test]
    fn generic_names_are_canonical() {
        let a: Architecture = "mlp: 64, 32".parse().unwrap();
        assert_eq!(a.name, "mlp:64,32");
        assert_eq!(a, "mlp:64,32".parse().unwrap());
    }
}

//! A search space: which hyperparameters a search draws ([`Key`]), from what ([`Distribution`]),
//! and how a number in [0, 1) becomes a value. Values of real keys are kept to six significant
//! digits, so a drawn learning rate reads `0.00316228`, not `0.0031622776601683794`, and a job's
//! identity does not hang on the last bit of a platform's `exp`.

use std::fmt;

use jetsweep_proto::model::{Architecture, MAX_HIDDEN_LAYERS, MAX_WIDTH};
use jetsweep_proto::trial::{self, Hyperparameters};

use super::{Bad, bad};

/// The hyperparameters a search may draw. `width` and `depth` draw a generic network
/// (`mlp:W,W,...`, `depth` hidden layers of `width`), the way to search capacity under a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    LearningRate,
    WeightDecay,
    BatchSize,
    MaxEpochs,
    Model,
    Width,
    Depth,
}

/// What kind of value a key takes, which decides the distributions it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Real,
    Whole,
    Name,
}

impl Key {
    pub const ALL: [Key; 7] = [
        Key::LearningRate,
        Key::WeightDecay,
        Key::BatchSize,
        Key::MaxEpochs,
        Key::Model,
        Key::Width,
        Key::Depth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Key::LearningRate => "learning_rate",
            Key::WeightDecay => "weight_decay",
            Key::BatchSize => "batch_size",
            Key::MaxEpochs => "max_epochs",
            Key::Model => "model",
            Key::Width => "width",
            Key::Depth => "depth",
        }
    }

    /// The key's own coordinate of the draw: fixed per key, so a point's learning rate does not
    /// change when another key is added to the space.
    pub fn dimension(self) -> u32 {
        self as u32
    }

    fn kind(self) -> Kind {
        match self {
            Key::LearningRate | Key::WeightDecay => Kind::Real,
            Key::BatchSize | Key::MaxEpochs | Key::Width | Key::Depth => Kind::Whole,
            Key::Model => Kind::Name,
        }
    }

    fn parse(name: &str) -> Result<Key, Bad> {
        if let Some(k) = Key::ALL.into_iter().find(|k| k.name() == name) {
            return Ok(k);
        }
        let hint = match name {
            "seed" => {
                "seeds are replicates of every point, not drawn: list them in [grid], e.g. seed = [0, 1, 2]".to_string()
            }
            "lr" => "did you mean learning_rate?".to_string(),
            "wd" | "l2" => "did you mean weight_decay?".to_string(),
            "batch" | "bs" => "did you mean batch_size?".to_string(),
            "epochs" | "num_epochs" => "did you mean max_epochs?".to_string(),
            "hidden" | "hidden_size" | "units" | "n_units" => {
                "did you mean width (hidden units per layer)?".to_string()
            }
            "layers" | "n_layers" | "num_layers" => "did you mean depth (hidden layers)?".to_string(),
            "optimizer" => "only adam can be trained today: there is nothing to draw".to_string(),
            _ => String::new(),
        };
        let known = Key::ALL.map(Key::name).join(", ");
        Err(bad(
            &format!("search.space.{name}"),
            format!(
                "not a hyperparameter a search can draw{}: use {known}",
                if hint.is_empty() {
                    String::new()
                } else {
                    format!(" ({hint})")
                }
            ),
        ))
    }

    /// Checks one value of this key by the rule the trainer applies.
    fn check(self, value: &Value) -> Result<(), String> {
        let r = match (self, value) {
            (Key::LearningRate, Value::Real(x)) => trial::check_learning_rate(*x),
            (Key::WeightDecay, Value::Real(x)) => trial::check_weight_decay(*x),
            (Key::BatchSize, Value::Whole(n)) => u32::try_from(*n)
                .map_err(|_| trial::check_batch_size(0).unwrap_err())
                .and_then(trial::check_batch_size),
            (Key::MaxEpochs, Value::Whole(n)) => u32::try_from(*n)
                .map_err(|_| trial::check_max_epochs(0).unwrap_err())
                .and_then(trial::check_max_epochs),
            (Key::Model, Value::Name(m)) => m.parse::<Architecture>().map(|_| ()),
            (Key::Width, Value::Whole(n)) => {
                return if (1..=MAX_WIDTH as u64).contains(n) {
                    Ok(())
                } else {
                    Err(format!("{n}: a width is 1 to {MAX_WIDTH} units"))
                };
            }
            (Key::Depth, Value::Whole(n)) => {
                return if (1..=MAX_HIDDEN_LAYERS as u64).contains(n) {
                    Ok(())
                } else {
                    Err(format!(
                        "{n}: a depth is 1 to {MAX_HIDDEN_LAYERS} hidden layers"
                    ))
                };
            }
            _ => unreachable!("values are read by the key's kind"),
        };
        r.map_err(|e| e.to_string())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One drawn value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Real(f64),
    Whole(u64),
    Name(String),
}

impl Value {
    /// The value as JSON: a number for reals, an integer for whole numbers, a string for names.
    fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Real(x) => serde_json::json!({ "real": x }),
            Value::Whole(n) => serde_json::json!({ "whole": n }),
            Value::Name(s) => serde_json::json!({ "name": s }),
        }
    }

    fn from_json(v: &serde_json::Value) -> Option<Value> {
        if let Some(x) = v.get("real").and_then(|x| x.as_f64()) {
            return Some(Value::Real(x));
        }
        if let Some(n) = v.get("whole").and_then(|n| n.as_u64()) {
            return Some(Value::Whole(n));
        }
        v.get("name")
            .and_then(|s| s.as_str())
            .map(|s| Value::Name(s.to_string()))
    }
}

/// A drawn point as JSON, `{"learning_rate": {"real": 0.001}, ...}`: how the store keeps the
/// points TPE suggested (they are not a function of the seed alone).
pub fn point_to_json(point: &[(Key, Value)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = point
        .iter()
        .map(|(k, v)| (k.name().to_string(), v.to_json()))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// The point [`point_to_json`] wrote, keys in the space's order (`space` names them).
pub fn point_from_json(
    space: &[(Key, Distribution)],
    text: &str,
) -> Result<Vec<(Key, Value)>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    space
        .iter()
        .map(|(key, _)| {
            v.get(key.name())
                .and_then(Value::from_json)
                .map(|value| (*key, value))
                .ok_or_else(|| format!("no value for {} in {text}", key.name()))
        })
        .collect()
}

/// A hyperparameter's distribution, as a sweep file spells it (`{ log_uniform = [1e-5, 1e-1] }`).
/// Bounds are values, inclusive (the log distributions take values too, not their logarithms).
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    Uniform(f64, f64),
    LogUniform(f64, f64),
    IntUniform(u64, u64),
    IntLogUniform(u64, u64),
    Choice(Vec<Value>),
}

/// The distributions' names, as the file spells them.
const DISTRIBUTIONS: [&str; 5] = [
    "uniform",
    "log_uniform",
    "int_uniform",
    "int_log_uniform",
    "choice",
];

/// Names other tools use for our distributions (Ray Tune, Optuna, W&B, Katib), and ours.
const PEER_DISTRIBUTIONS: &[(&str, &str)] = &[
    ("loguniform", "log_uniform (Ray's tune.loguniform)"),
    (
        "log_uniform_values",
        "log_uniform (W&B's log_uniform_values)",
    ),
    ("reciprocal", "log_uniform"),
    (
        "randint",
        "int_uniform (Ray's tune.randint; ours includes the upper bound)",
    ),
    ("lograndint", "int_log_uniform (Ray's tune.lograndint)"),
    ("int_log", "int_log_uniform"),
    ("categorical", "choice (Optuna's suggest_categorical)"),
    ("values", "choice (W&B's values)"),
    ("grid_search", "a list in [grid] (Ray's tune.grid_search)"),
    ("value", "a single value in [defaults] (W&B's value)"),
    (
        "float",
        "uniform, or log_uniform for Optuna's suggest_float(log=True)",
    ),
    (
        "int",
        "int_uniform, or int_log_uniform for Optuna's suggest_int(log=True)",
    ),
    ("quniform", "choice of the quantized values"),
    ("qloguniform", "choice of the quantized values"),
    ("normal", "uniform (no normal distribution: give a range)"),
    ("randn", "uniform (no normal distribution: give a range)"),
];

impl Distribution {
    /// Reads `{ NAME = ARGS }` for `key`, refusing what the key cannot take, naming
    /// `search.space.KEY` and the value.
    pub fn parse(key_name: &str, value: &toml::Value) -> Result<(Key, Distribution), Bad> {
        let key = Key::parse(key_name)?;
        let at = format!("search.space.{key_name}");
        let table = match value {
            toml::Value::Table(t) => t,
            toml::Value::Array(_) => {
                return Err(bad(
                    &at,
                    "a list: write { choice = [...] } to draw from it, or move it to [grid] to run every value",
                ));
            }
            other => {
                return Err(bad(
                    &at,
                    format!(
                        "{other}: a single value is not drawn; put it in [defaults], or write a distribution, e.g. {{ log_uniform = [1e-5, 1e-1] }}"
                    ),
                ));
            }
        };
        let mut entries = table.iter();
        let (Some((name, args)), None) = (entries.next(), entries.next()) else {
            return Err(bad(
                &at,
                format!(
                    "give exactly one distribution, e.g. {{ log_uniform = [1e-5, 1e-1] }}; one of {}",
                    DISTRIBUTIONS.join(", ")
                ),
            ));
        };
        let at = format!("{at}.{name}");
        let dist = match name.as_str() {
            "uniform" | "log_uniform" => {
                if key.kind() != Kind::Real {
                    return Err(bad(&at, wrong_kind(key)));
                }
                let (low, high) = range(&at, args, real)?;
                if name == "log_uniform" && low <= 0.0 {
                    return Err(bad(
                        &at,
                        format!(
                            "[{low}, {high}]: a log range must be above 0 (its logarithm is taken); e.g. [1e-6, {high}]"
                        ),
                    ));
                }
                if name == "uniform" {
                    Distribution::Uniform(low, high)
                } else {
                    Distribution::LogUniform(low, high)
                }
            }
            "int_uniform" | "int_log_uniform" => {
                if key.kind() != Kind::Whole {
                    return Err(bad(&at, wrong_kind(key)));
                }
                let (low, high) = range(&at, args, whole)?;
                if name == "int_log_uniform" && low == 0 {
                    return Err(bad(
                        &at,
                        format!(
                            "[0, {high}]: a log range must start at 1 or more (its logarithm is taken)"
                        ),
                    ));
                }
                if name == "int_uniform" {
                    Distribution::IntUniform(low, high)
                } else {
                    Distribution::IntLogUniform(low, high)
                }
            }
            "choice" => {
                let toml::Value::Array(items) = args else {
                    return Err(bad(
                        &at,
                        format!("{args}: give a list, e.g. choice = [64, 128, 256]"),
                    ));
                };
                if items.is_empty() {
                    return Err(bad(&at, "an empty list: give at least one value"));
                }
                if items.len() > MAX_CHOICES {
                    return Err(bad(
                        &at,
                        format!("{} values: a choice has at most {MAX_CHOICES}", items.len()),
                    ));
                }
                let values = items
                    .iter()
                    .map(|v| match key.kind() {
                        Kind::Real => real(&at, v).map(Value::Real),
                        Kind::Whole => whole(&at, v).map(Value::Whole),
                        Kind::Name => match v {
                            toml::Value::String(s) => Ok(Value::Name(s.clone())),
                            other => Err(bad(
                                &at,
                                format!("{other}: {key} is a name, e.g. \"jsc-tiny\""),
                            )),
                        },
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Distribution::Choice(values)
            }
            other => {
                let peer = PEER_DISTRIBUTIONS
                    .iter()
                    .find(|(p, _)| *p == other)
                    .map(|(_, ours)| format!(" (here: {ours})"))
                    .unwrap_or_default();
                return Err(bad(
                    &at,
                    format!(
                        "unknown distribution{peer}: use {}",
                        DISTRIBUTIONS.join(", ")
                    ),
                ));
            }
        };
        for value in dist.bounds() {
            key.check(&value).map_err(|e| bad(&at, e))?;
        }
        Ok((key, dist))
    }

    /// The values that bound the distribution: its ends, or every choice.
    fn bounds(&self) -> Vec<Value> {
        match self {
            Distribution::Uniform(a, b) | Distribution::LogUniform(a, b) => {
                vec![Value::Real(*a), Value::Real(*b)]
            }
            Distribution::IntUniform(a, b) | Distribution::IntLogUniform(a, b) => {
                vec![Value::Whole(*a), Value::Whole(*b)]
            }
            Distribution::Choice(v) => v.clone(),
        }
    }

    /// How many distinct values it can give, when that is finite.
    pub fn distinct(&self) -> Option<u64> {
        match self {
            Distribution::Uniform(..) | Distribution::LogUniform(..) => None,
            Distribution::IntUniform(a, b) | Distribution::IntLogUniform(a, b) => Some(b - a + 1),
            Distribution::Choice(v) => {
                let mut seen: Vec<&Value> = Vec::new();
                for x in v {
                    if !seen.contains(&x) {
                        seen.push(x);
                    }
                }
                Some(seen.len() as u64)
            }
        }
    }

    /// The value at `u` in [0, 1): the inverse of the distribution's CDF.
    pub fn at(&self, u: f64) -> Value {
        let u = u.clamp(0.0, 1.0 - f64::EPSILON);
        match self {
            Distribution::Uniform(a, b) => Value::Real(six_digits(a + u * (b - a)).clamp(*a, *b)),
            Distribution::LogUniform(a, b) => {
                let x = (a.ln() + u * (b.ln() - a.ln())).exp();
                Value::Real(six_digits(x).clamp(*a, *b))
            }
            Distribution::IntUniform(a, b) => {
                let span = (b - a + 1) as f64;
                Value::Whole((a + (u * span) as u64).min(*b))
            }
            Distribution::IntLogUniform(a, b) => {
                // Uniform in log over [a, b + 1), floored: each whole number gets the share of the
                // log-range that rounds down to it.
                let lo = (*a as f64).ln();
                let hi = ((*b + 1) as f64).ln();
                let x = (lo + u * (hi - lo)).exp().floor() as u64;
                Value::Whole(x.clamp(*a, *b))
            }
            Distribution::Choice(v) => v[((u * v.len() as f64) as usize).min(v.len() - 1)].clone(),
        }
    }
}

/// Most values a `choice` may list: a list of hundreds is a grid, not a distribution.
const MAX_CHOICES: usize = 1_000;

fn wrong_kind(key: Key) -> String {
    match key.kind() {
        Kind::Real => format!("{key} is a real number: use uniform, log_uniform or choice"),
        Kind::Whole => {
            format!("{key} is a whole number: use int_uniform, int_log_uniform or choice")
        }
        Kind::Name => {
            format!("{key} is a name: use choice, e.g. {{ choice = [\"jsc-tiny\", \"jsc-toy\"] }}")
        }
    }
}

/// `[low, high]`, each read by `item`, with low < high (an equal pair is not a range).
fn range<T: PartialOrd + fmt::Display + Copy>(
    at: &str,
    args: &toml::Value,
    item: fn(&str, &toml::Value) -> Result<T, Bad>,
) -> Result<(T, T), Bad> {
    let toml::Value::Array(items) = args else {
        return Err(bad(at, format!("{args}: give [low, high]")));
    };
    let [low, high] = items.as_slice() else {
        return Err(bad(at, format!("{} values: give [low, high]", items.len())));
    };
    let (low, high) = (item(at, low)?, item(at, high)?);
    if low == high {
        return Err(bad(
            at,
            format!("[{low}, {high}] is an empty range: put a single value in [defaults]"),
        ));
    }
    if low > high {
        return Err(bad(
            at,
            format!("[{low}, {high}] is inverted: write [{high}, {low}]"),
        ));
    }
    Ok((low, high))
}

fn real(at: &str, v: &toml::Value) -> Result<f64, Bad> {
    match v {
        toml::Value::Float(x) if x.is_finite() => Ok(*x),
        toml::Value::Integer(n) => Ok(*n as f64),
        other => Err(bad(at, format!("{other}: give a finite number"))),
    }
}

fn whole(at: &str, v: &toml::Value) -> Result<u64, Bad> {
    match v {
        toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        other => Err(bad(at, format!("{other}: give a whole number, 0 or more"))),
    }
}

/// `x` to six significant digits, by its decimal form (exact and the same on every machine).
fn six_digits(x: f64) -> f64 {
    format!("{x:.5e}")
        .parse()
        .expect("a formatted float parses")
}

/// Sets `key` of `trial` to `value` (already checked). `width`/`depth` are applied together by
/// [`set_capacity`].
pub fn set(trial: &mut Hyperparameters, key: Key, value: &Value) {
    match (key, value) {
        (Key::LearningRate, Value::Real(x)) => trial.learning_rate = *x,
        (Key::WeightDecay, Value::Real(x)) => trial.weight_decay = *x,
        (Key::BatchSize, Value::Whole(n)) => trial.batch_size = *n as u32,
        (Key::MaxEpochs, Value::Whole(n)) => trial.max_epochs = *n as u32,
        (Key::Model, Value::Name(m)) => trial.model = m.parse().expect("checked when read"),
        (Key::Width | Key::Depth, _) => {}
        _ => unreachable!("values are read by the key's kind"),
    }
}

/// The generic network `depth` hidden layers of `width` units.
pub fn capacity(width: u64, depth: u64) -> Architecture {
    format!("mlp:{}", vec![width.to_string(); depth as usize].join(","))
        .parse()
        .expect("width and depth were checked against the model grammar's limits")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(key: &str, text: &str) -> Result<(Key, Distribution), Bad> {
        let v: toml::Value =
            toml::from_str::<toml::Table>(&format!("x = {text}")).unwrap()["x"].clone();
        Distribution::parse(key, &v)
    }

    #[test]
    fn each_distribution_maps_the_unit_interval_onto_its_range() {
        let (_, d) = dist("learning_rate", "{ log_uniform = [1e-5, 1e-1] }").unwrap();
        assert_eq!(d.at(0.0), Value::Real(1e-5));
        assert_eq!(d.at(0.5), Value::Real(1e-3));
        let Value::Real(top) = d.at(1.0) else {
            panic!()
        };
        assert!(top <= 1e-1 && top > 0.0999, "{top}");
        let (_, d) = dist("weight_decay", "{ uniform = [0.0, 1e-3] }").unwrap();
        assert_eq!(d.at(0.25), Value::Real(2.5e-4));
        let (_, d) = dist("batch_size", "{ int_uniform = [1, 4] }").unwrap();
        let got: Vec<Value> = [0.0, 0.24, 0.25, 0.99].map(|u| d.at(u)).to_vec();
        assert_eq!(got, [1, 1, 2, 4].map(Value::Whole).to_vec());
        let (_, d) = dist("width", "{ int_log_uniform = [1, 1023] }").unwrap();
        assert_eq!(d.at(0.0), Value::Whole(1));
        assert_eq!(d.at(0.5), Value::Whole(32));
        assert_eq!(d.at(1.0), Value::Whole(1023));
        let (_, d) = dist("model", r#"{ choice = ["jsc-tiny", "jsc-toy"] }"#).unwrap();
        assert_eq!(d.at(0.49), Value::Name("jsc-tiny".into()));
        assert_eq!(d.at(0.5), Value::Name("jsc-toy".into()));
        assert_eq!(d.distinct(), Some(2));
    }

    #[test]
    fn drawn_reals_keep_six_significant_digits() {
        let (_, d) = dist("learning_rate", "{ log_uniform = [1e-5, 1e-1] }").unwrap();
        let Value::Real(x) = d.at(0.625) else {
            panic!()
        };
        assert_eq!(format!("{x}"), "0.00316228");
    }

    #[test]
    fn bad_distributions_are_refused_naming_the_key_and_value() {
        for (key, text, needles) in [
            (
                "learning_rate",
                "{ uniform = [1e-1, 1e-5] }",
                vec!["search.space.learning_rate.uniform", "inverted"],
            ),
            (
                "learning_rate",
                "{ uniform = [1e-3, 1e-3] }",
                vec!["empty range"],
            ),
            (
                "learning_rate",
                "{ log_uniform = [0.0, 1e-1] }",
                vec!["log range", "above 0"],
            ),
            (
                "width",
                "{ int_log_uniform = [0, 64] }",
                vec!["int_log_uniform", "start at 1"],
            ),
            (
                "learning_rate",
                "{ loguniform = [1e-5, 1e-1] }",
                vec![
                    "unknown distribution",
                    "Ray's tune.loguniform",
                    "log_uniform",
                ],
            ),
            (
                "learning_rate",
                "{ categorical = [1e-3] }",
                vec!["Optuna's suggest_categorical"],
            ),
            (
                "batch_size",
                "{ uniform = [32, 512] }",
                vec!["whole number", "int_uniform"],
            ),
            (
                "batch_size",
                "{ int_uniform = [0, 512] }",
                vec!["batch_size", "0"],
            ),
            (
                "learning_rate",
                "{ uniform = [-1.0, 1.0] }",
                vec!["learning_rate", "-1"],
            ),
            (
                "weight_decay",
                "{ uniform = [0.0, 2.0] }",
                vec!["weight_decay", "2"],
            ),
            ("model", r#"{ choice = ["jsc-huge"] }"#, vec!["jsc-huge"]),
            ("model", "{ choice = [] }", vec!["empty list"]),
            (
                "depth",
                "{ int_uniform = [1, 17] }",
                vec!["17", "hidden layers"],
            ),
            (
                "learning_rate",
                "[1e-3, 1e-4]",
                vec!["a list", "choice", "[grid]"],
            ),
            ("learning_rate", "1e-3", vec!["[defaults]"]),
            (
                "learning_rate",
                "{ uniform = [0.1, 0.2], log_uniform = [0.1, 0.2] }",
                vec!["exactly one distribution"],
            ),
            (
                "seed",
                "{ int_uniform = [0, 9] }",
                vec!["replicates", "[grid]"],
            ),
            (
                "lr",
                "{ log_uniform = [1e-5, 1e-1] }",
                vec!["search.space.lr", "learning_rate?"],
            ),
        ] {
            let err = dist(key, text).unwrap_err().to_string();
            for n in needles {
                assert!(err.contains(n), "{key} = {text}: {err:?} lacks {n:?}");
            }
        }
    }
}

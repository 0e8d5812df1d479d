//! A sweep file's `[search]` table: how points are chosen beyond the grid, the metric that judges
//! them, and the early-stopping rule.
//!
//! ```toml
//! [search]
//! method = "random"          # grid (the default) | random | sobol | tpe
//! points = 64                # configurations to draw; each runs every seed of [grid]
//! search_seed = 7            # same file + same search_seed => the same points, in the same order
//! metric = "val_loss"        # or val_acc; test metrics never choose
//! max_params = 1200          # drawn networks over this many parameters are passed over
//! [search.space]
//! learning_rate = { log_uniform = [1e-5, 1e-1] }
//! batch_size    = { choice = [64, 128, 256, 512] }
//! weight_decay  = { uniform = [0.0, 1e-3] }
//! width         = { int_log_uniform = [4, 64] }   # with depth: the network mlp:W,W,...
//! depth         = { int_uniform = [1, 3] }
//! [search.stop]
//! rule = "halving"           # none | median | halving
//! mode = "sync"              # sync | async
//! min_epochs = 1
//! eta = 3
//! stratify = ["model"]
//! ```
//!
//! Every key is checked here, each refusal naming `search.KEY` and the value, with the Ray Tune,
//! Optuna and W&B spellings a user may have meant.

pub mod draw;
pub mod space;
pub mod tpe;

use std::fmt;

pub use draw::{Point, Sampler};
pub use space::{Distribution, Key, Value};

use crate::Error;

pub(super) type Bad = Error;

pub(super) fn bad(key: &str, reason: impl Into<String>) -> Bad {
    super::bad(key, reason)
}

/// How points are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Only the `[grid]`'s cells.
    Grid,
    /// `points` drawn by a sampler, crossed with the grid.
    Sampled(Sampler),
    /// Multivariate TPE: the first points drawn at random, each later one suggested by
    /// [`tpe::suggest`] from the scores so far when a point settles (crossed with seeds only).
    Tpe,
}

/// What judges a point: a validation number, never a test one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Lower is better.
    ValLoss,
    /// Higher is better.
    ValAcc,
}

impl Metric {
    /// The metric's value in an epoch's numbers.
    pub fn read(self, m: &jetsweep_proto::metrics::EpochMetrics) -> f64 {
        match self {
            Metric::ValLoss => m.val_loss,
            Metric::ValAcc => m.val_acc,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ValLoss => "val_loss",
            Metric::ValAcc => "val_acc",
        }
    }
}

/// The early-stopping rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    None,
    Median,
    Halving,
}

/// When a rung's decision is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Once every live point of the cohort has reached the rung: the same decisions on every run.
    Sync,
    /// Promotion-based ASHA: a point reaching a rung pauses until it ranks in the top 1/eta.
    Async,
}

/// `[search.stop]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    pub rule: Rule,
    pub mode: Mode,
    /// Rung 0, in epochs.
    pub min_epochs: u32,
    /// Rungs at min_epochs·eta^k (and max_epochs); the top ⌈n/eta⌉ go on.
    pub eta: u32,
    /// Keys whose values are compared only among themselves.
    pub stratify: Vec<String>,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            rule: Rule::None,
            mode: Mode::Sync,
            min_epochs: 1,
            eta: 3,
            stratify: Vec::new(),
        }
    }
}

/// A validated `[search]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub method: Method,
    /// Points to draw (1 for a grid: its cells are the points).
    pub points: u64,
    pub search_seed: u64,
    pub metric: Metric,
    /// Drawn networks over this many trainable parameters are passed over.
    pub max_params: Option<usize>,
    /// The drawn keys, in [`Key`] order.
    pub space: Vec<(Key, Distribution)>,
    pub stop: Stop,
}

impl Default for Search {
    fn default() -> Self {
        Search {
            method: Method::Grid,
            points: 1,
            search_seed: 0,
            metric: Metric::ValLoss,
            max_params: None,
            space: Vec::new(),
            stop: Stop::default(),
        }
    }
}

/// Keys other tools use for ours, with what to write here.
const PEER_KEYS: &[(&str, &str)] = &[
    ("num_samples", "points (Ray Tune's num_samples)"),
    ("n_trials", "points (Optuna's n_trials)"),
    ("run_cap", "points (W&B's run_cap)"),
    ("max_trials", "points (Determined's max_trials)"),
    ("maxTrialCount", "points (Katib's maxTrialCount)"),
    ("samples", "points"),
    (
        "seed",
        "search_seed (a trial's `seed` is a hyperparameter: list replicates in [grid])",
    ),
    (
        "random_state",
        "search_seed (Ray's and Katib's random_state)",
    ),
    (
        "experiment_seed",
        "search_seed (Determined's experiment_seed)",
    ),
    ("sampler", "method (Optuna's sampler)"),
    ("search_alg", "method (Ray Tune's search_alg)"),
    ("algorithm", "method (Katib's algorithm)"),
    (
        "goal",
        "metric alone: val_loss is minimised and val_acc maximised",
    ),
    (
        "mode",
        "metric alone (val_loss is minimised, val_acc maximised); the stopping mode is [search.stop] mode",
    ),
    (
        "direction",
        "metric alone: val_loss is minimised and val_acc maximised",
    ),
    ("parameters", "[search.space] (W&B's parameters)"),
    ("param_space", "[search.space] (Ray Tune's param_space)"),
    ("early_terminate", "[search.stop] (W&B's early_terminate)"),
    ("scheduler", "[search.stop] (Ray Tune's scheduler)"),
    ("pruner", "[search.stop] (Optuna's pruner)"),
    (
        "grace_period",
        "[search.stop] min_epochs (Ray's grace_period)",
    ),
    (
        "reduction_factor",
        "[search.stop] eta (Ray's reduction_factor)",
    ),
];

const PEER_STOP_KEYS: &[(&str, &str)] = &[
    ("type", "rule (W&B's early_terminate.type)"),
    ("grace_period", "min_epochs (Ray's grace_period)"),
    ("min_resource", "min_epochs (Optuna's min_resource)"),
    ("min_iter", "min_epochs (W&B's min_iter)"),
    ("r_l", "min_epochs (Katib's r_l)"),
    (
        "reduction_factor",
        "eta (Ray's and Optuna's reduction_factor)",
    ),
    ("divisor", "eta (Determined's divisor)"),
    (
        "max_t",
        "max_epochs in [defaults] (the last rung is always max_epochs)",
    ),
    (
        "max_resource",
        "max_epochs in [defaults] (the last rung is always max_epochs)",
    ),
    (
        "max_iter",
        "max_epochs in [defaults] (the last rung is always max_epochs)",
    ),
    (
        "brackets",
        "nothing: one bracket (Ray's advice); rungs come from min_epochs and eta",
    ),
];

const METHODS: &str = "grid, random, sobol, tpe";
const PEER_METHODS: &[(&str, &str)] = &[
    ("grid_search", "grid"),
    (
        "bayes",
        "tpe (W&B's bayes is a Gaussian process; TPE is the model-based method here)",
    ),
    ("bayesian", "tpe"),
    ("bayesianoptimization", "tpe"),
    ("hyperopt", "tpe"),
    ("optuna", "tpe"),
    ("TPESampler", "tpe"),
    ("RandomSampler", "random"),
    ("QMCSampler", "sobol"),
    ("qmc", "sobol"),
    ("quasi_random", "sobol"),
    ("quasirandom", "sobol"),
    ("halton", "sobol"),
    ("hyperband", "random with [search.stop] rule = \"halving\""),
    (
        "asha",
        "random with [search.stop] rule = \"halving\", mode = \"async\"",
    ),
];

const RULES: &str = "none, median, halving";
const PEER_RULES: &[(&str, &str)] = &[
    ("hyperband", "halving (one bracket)"),
    ("asha", "halving with mode = \"async\""),
    ("ASHAScheduler", "halving with mode = \"async\""),
    ("successive_halving", "halving"),
    ("SuccessiveHalvingPruner", "halving"),
    ("HyperbandPruner", "halving"),
    ("median_stopping", "median"),
    ("medianstop", "median"),
    ("MedianPruner", "median"),
    ("MedianStoppingRule", "median"),
];

/// "unknown …" with the peer's name mapped to ours, when it is one.
fn unknown(kind: &str, given: &str, ours: &str, peers: &[(&str, &str)]) -> String {
    match peers.iter().find(|(p, _)| *p == given) {
        Some((_, meant)) => format!("unknown {kind} {given:?}: here it is {meant}"),
        None => format!("unknown {kind} {given:?}: use {ours}"),
    }
}

fn string<'a>(at: &str, v: &'a toml::Value) -> Result<&'a str, Bad> {
    v.as_str()
        .ok_or_else(|| bad(at, format!("{v}: give a name in quotes")))
}

fn count(at: &str, v: &toml::Value, low: i64, high: i64) -> Result<i64, Bad> {
    match v.as_integer() {
        Some(n) if (low..=high).contains(&n) => Ok(n),
        _ => Err(bad(
            at,
            format!("{v}: give a whole number from {low} to {high}"),
        )),
    }
}

impl Search {
    /// Reads `[search]` (already split from the rest of the file). `max_cells` bounds `points`.
    pub fn parse(table: &toml::Table, max_cells: usize) -> Result<Search, Bad> {
        let mut s = Search::default();
        let mut method_given = None;
        let mut stop_mode_given = false;
        for (key, v) in table {
            let at = format!("search.{key}");
            match key.as_str() {
                "method" => {
                    let m = string(&at, v)?;
                    s.method = match m {
                        "grid" => Method::Grid,
                        "random" => Method::Sampled(Sampler::Random),
                        "sobol" => Method::Sampled(Sampler::Sobol),
                        "tpe" => Method::Tpe,
                        other => {
                            return Err(bad(&at, unknown("method", other, METHODS, PEER_METHODS)));
                        }
                    };
                    method_given = Some(m.to_string());
                }
                "points" => s.points = count(&at, v, 1, max_cells as i64)? as u64,
                "search_seed" => s.search_seed = count(&at, v, 0, i64::MAX)? as u64,
                "metric" => {
                    s.metric = match string(&at, v)? {
                        "val_loss" => Metric::ValLoss,
                        "val_acc" => Metric::ValAcc,
                        t if t.starts_with("test") || t.starts_with("best_test") => {
                            return Err(bad(
                                &at,
                                format!(
                                    "{t:?}: test metrics never choose (that would fit the test set); use val_loss or val_acc"
                                ),
                            ));
                        }
                        t => {
                            return Err(bad(
                                &at,
                                format!(
                                    "unknown metric {t:?}: use val_loss (the default, minimised) or val_acc (maximised)"
                                ),
                            ));
                        }
                    }
                }
                "max_params" => s.max_params = Some(count(&at, v, 1, i64::MAX)? as usize),
                "space" => {
                    let toml::Value::Table(space) = v else {
                        return Err(bad(&at, "give a table: [search.space]"));
                    };
                    for (k, d) in space {
                        s.space.push(Distribution::parse(k, d)?);
                    }
                    s.space.sort_by_key(|(k, _)| *k);
                }
                "stop" => {
                    let toml::Value::Table(stop) = v else {
                        return Err(bad(&at, "give a table: [search.stop]"));
                    };
                    s.stop = Stop::parse(stop)?;
                    stop_mode_given = stop.contains_key("mode");
                }
                other => {
                    return Err(bad(
                        &at,
                        unknown(
                            "key",
                            other,
                            "method, points, search_seed, metric, max_params, [search.space], [search.stop]",
                            PEER_KEYS,
                        ),
                    ));
                }
            }
        }
        let has = |k: &str| table.contains_key(k);
        match s.method {
            Method::Grid => {
                if !s.space.is_empty() || has("points") {
                    return Err(bad(
                        "search.method",
                        format!(
                            "{}: a grid draws nothing, so [search.space] and points need method = \"random\" or \"sobol\"",
                            method_given
                                .as_deref()
                                .map_or("grid (the default)".into(), |m| format!("{m:?}"))
                        ),
                    ));
                }
            }
            Method::Sampled(_) | Method::Tpe => {
                let sampler = s.sampler().unwrap_or(Sampler::Random);
                if s.space.is_empty() {
                    return Err(bad(
                        "search.space",
                        "empty: give the distributions to draw from, e.g. learning_rate = { log_uniform = [1e-5, 1e-1] }",
                    ));
                }
                if !has("points") {
                    return Err(bad(
                        "search.points",
                        "missing: say how many configurations to draw, e.g. points = 64",
                    ));
                }
                if sampler == Sampler::Sobol && s.points > draw::SOBOL_POINTS {
                    return Err(bad(
                        "search.points",
                        format!(
                            "{}: the Sobol sequence has {} points; use random beyond that",
                            s.points,
                            draw::SOBOL_POINTS
                        ),
                    ));
                }
            }
        }
        // TPE adds points as others settle: a rung of sync halving, decided once for the points
        // there, would never judge the later ones. TPE halves asynchronously.
        if s.is_tpe() && s.stop.rule == Rule::Halving && s.stop.mode == Mode::Sync {
            if stop_mode_given {
                return Err(bad(
                    "search.stop.mode",
                    "\"sync\" with method = \"tpe\": TPE adds points as others settle, so a rung is never complete; use mode = \"async\" (ASHA's promotions) or rule = \"median\"",
                ));
            }
            s.stop.mode = Mode::Async;
        }
        let width = s.space.iter().any(|(k, _)| *k == Key::Width);
        let depth = s.space.iter().any(|(k, _)| *k == Key::Depth);
        if width != depth {
            return Err(bad(
                if width {
                    "search.space.width"
                } else {
                    "search.space.depth"
                },
                "width and depth draw a network together: give both (a fixed one as { choice = [N] })",
            ));
        }
        if width && s.space.iter().any(|(k, _)| *k == Key::Model) {
            return Err(bad(
                "search.space.model",
                "drawn together with width and depth: draw either named models or a width and depth",
            ));
        }
        Ok(s)
    }

    /// Whether the sweep draws points.
    pub fn sampler(&self) -> Option<Sampler> {
        match self.method {
            Method::Grid => None,
            Method::Sampled(s) => Some(s),
            // TPE's first points are drawn at random.
            Method::Tpe => Some(Sampler::Random),
        }
    }

    /// Whether later points are suggested from the scores of earlier ones.
    pub fn is_tpe(&self) -> bool {
        self.method == Method::Tpe
    }

    /// Whether this search decides anything on a validation metric (draws are not decisions, but
    /// TPE's and the stopping rules' are).
    pub fn decides(&self) -> bool {
        self.stop.rule != Rule::None || self.is_tpe()
    }

    /// Whether `key` is drawn.
    pub fn draws(&self, key: Key) -> bool {
        self.space.iter().any(|(k, _)| *k == key)
    }
}

impl Stop {
    fn parse(table: &toml::Table) -> Result<Stop, Bad> {
        let mut s = Stop::default();
        for (key, v) in table {
            let at = format!("search.stop.{key}");
            match key.as_str() {
                "rule" => {
                    s.rule = match string(&at, v)? {
                        "none" => Rule::None,
                        "median" => Rule::Median,
                        "halving" => Rule::Halving,
                        other => return Err(bad(&at, unknown("rule", other, RULES, PEER_RULES))),
                    }
                }
                "mode" => {
                    s.mode = match string(&at, v)? {
                        "sync" => Mode::Sync,
                        "async" => Mode::Async,
                        other => {
                            return Err(bad(
                                &at,
                                format!(
                                    "unknown mode {other:?}: use sync (the same decisions on every run) or async (promotions, ASHA)"
                                ),
                            ));
                        }
                    }
                }
                "min_epochs" => {
                    s.min_epochs =
                        count(&at, v, 1, i64::from(jetsweep_proto::trial::MAX_EPOCHS))? as u32
                }
                "eta" => {
                    s.eta = match v.as_integer() {
                        Some(n) if (2..=100).contains(&n) => n as u32,
                        _ => {
                            return Err(bad(
                                &at,
                                format!(
                                    "{v}: eta is 2 or more (each rung keeps the top 1/eta), at most 100; 3 is usual"
                                ),
                            ));
                        }
                    }
                }
                "stratify" => {
                    let toml::Value::Array(keys) = v else {
                        return Err(bad(
                            &at,
                            format!("{v}: give a list of keys, e.g. [\"model\"]"),
                        ));
                    };
                    for k in keys {
                        s.stratify.push(string(&at, k)?.to_string());
                    }
                }
                other => {
                    return Err(bad(
                        &at,
                        unknown(
                            "key",
                            other,
                            "rule, mode, min_epochs, eta, stratify",
                            PEER_STOP_KEYS,
                        ),
                    ));
                }
            }
        }
        Ok(s)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Grid => "grid",
            Method::Sampled(Sampler::Random) => "random",
            Method::Sampled(Sampler::Sobol) => "sobol",
            Method::Tpe => "tpe",
        })
    }
}

//! Sweep files: what a user submits. A sweep names a dataset, defaults for every hyperparameter, a
//! `[grid]` of lists, and optionally a `[search]` that draws points ([`search`]); its jobs are the
//! drawn points crossed with the cartesian product of the lists, over the defaults.
//!
//! ```toml
//! name = "lab1-batch-size"
//! dataset = "synthetic"        # as `jetsweep-worker train --dataset`; default synthetic
//! attempts = 3                 # tries per job before it is failed
//! lease_timeout_s = 30         # a job whose worker is silent this long goes back to the queue
//! priority = 1                 # its weight in the fair share of workers between sweeps
//! max_running = 64             # at most this many of its jobs at once (default: no cap)
//! device = "any"               # which workers take its jobs: cpu, cuda or any
//! reuse = true                 # take cells other sweeps already ran; false: train all anew
//! keep_models = "best"         # each trial's weights kept: best | best-and-last | none
//!
//! [defaults]
//! model = "jsc-tiny"
//! max_epochs = 10
//! learning_rate = 1e-3
//!
//! [grid]
//! batch_size = [64, 128, 256, 512]
//! seed = [0, 1, 2, 3, 4]
//! ```
//!
//! A job's identity ([`job_id`]) is a hash of everything that determines its result, so resubmitting a
//! sweep finds the cells already done. A sweep with `reuse = false` has jobs of its own
//! ([`private_job_id`]): it takes no other sweep's results and lends none.

pub mod schedule;
pub mod search;

use std::time::Duration;

use jetsweep_data::DatasetSpec;
use jetsweep_proto::limits::{DEFAULT_LEASE, MAX_LEASE, MIN_LEASE};
use jetsweep_proto::model::Architecture;
use jetsweep_proto::trial::{self, Hyperparameters, Optimizer};
pub use schedule::{Device, Schedule};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::access::DataAccess;
use crate::{DatasetProblem, Error};
use search::{Key, Point, Search};

/// The most jobs one sweep may expand to.
pub const MAX_CELLS: usize = 100_000;
/// Default tries per job.
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// The most tries a sweep may give a job: a job that fails this often will not succeed, and the
/// count stays far from overflowing however often a sweep is resubmitted.
pub const MAX_ATTEMPTS: u32 = 100;
/// Longest sweep name (it becomes the sweep's id).
pub const MAX_NAME_CHARS: usize = 128;
/// Largest sweep file: a grid of 100,000 cells is written in a few kilobytes; the text is stored
/// with every submission.
pub const MAX_FILE_BYTES: usize = 256 << 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    name: String,
    dataset: Option<String>,
    val_fraction: Option<f64>,
    attempts: Option<u32>,
    lease_timeout_s: Option<f64>,
    priority: Option<f64>,
    max_running: Option<i64>,
    device: Option<String>,
    reuse: Option<bool>,
    keep_models: Option<String>,
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    grid: GridLists,
    /// Read by [`Search::parse`], which names each bad key itself.
    search: Option<toml::Table>,
}

/// `[defaults]`: one value per key.
type Defaults = Values<Option<String>, Option<u32>, Option<f64>, Option<u64>>;
/// `[grid]`: a list per key.
type GridLists = Values<Option<Vec<String>>, Option<Vec<u32>>, Option<Vec<f64>>, Option<Vec<u64>>>;

/// The hyperparameters a sweep can set, once as defaults and once as grid lists: every field of
/// [`Hyperparameters`], each of which reaches the trainer.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Values<S, U, F, N> {
    model: S,
    optimizer: S,
    batch_size: U,
    max_epochs: U,
    learning_rate: F,
    weight_decay: F,
    seed: N,
}

impl<S, U, F, N> Values<Option<S>, Option<U>, Option<F>, Option<N>> {
    /// Whether `key` is given here.
    fn has(&self, key: Key) -> bool {
        match key {
            Key::LearningRate => self.learning_rate.is_some(),
            Key::WeightDecay => self.weight_decay.is_some(),
            Key::BatchSize => self.batch_size.is_some(),
            Key::MaxEpochs => self.max_epochs.is_some(),
            Key::Model | Key::Width | Key::Depth => self.model.is_some(),
        }
    }
}

/// One grid cell: a trial's hyperparameters (the dataset is the sweep's).
pub type Trial = Hyperparameters;

/// A validated sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    pub name: String,
    pub dataset: DatasetSpec,
    /// Fraction of the training part held out for validation; 0 is MASE's train-as-val.
    pub val_fraction: f64,
    pub attempts: u32,
    /// Whether cells other sweeps ran (or are running) are taken, and its own lent to them.
    pub reuse: bool,
    /// Which of each trial's weights are kept.
    pub keep_models: KeepModels,
    pub lease_timeout: Duration,
    /// Its share of the workers: priority, cap, device class.
    pub schedule: Schedule,
    /// The axes of the grid, each non-empty; a key not in `[grid]` has its one default value.
    pub models: Vec<Architecture>,
    pub optimizers: Vec<Optimizer>,
    pub batch_sizes: Vec<u32>,
    pub max_epochs: Vec<u32>,
    pub learning_rates: Vec<f64>,
    pub weight_decays: Vec<f64>,
    pub seeds: Vec<u64>,
    /// How points beyond the grid are drawn, judged and stopped (a grid's by default).
    pub search: Search,
    /// The drawn points, in draw order (one empty point for a grid).
    pub points: Vec<Point>,
}

fn bad(key: &str, reason: impl Into<String>) -> Error {
    Error::SweepValue {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// The grid's list for `key` if given (and non-empty), else the default as a one-element list.
fn axis<T: Clone>(
    key: &str,
    grid: Option<Vec<T>>,
    default: Option<T>,
    fallback: T,
) -> Result<Vec<T>, Error> {
    match grid {
        Some(list) if list.is_empty() => Err(bad(
            &format!("grid.{key}"),
            "empty list: give at least one value, or remove the key",
        )),
        Some(list) => Ok(list),
        None => Ok(vec![default.unwrap_or(fallback)]),
    }
}

/// A dataset name the sweep file cannot use. A name that is not one of ours is a bad value of the
/// file; a file that is missing or unreadable keeps its kind (not found, forbidden).
fn dataset_error(e: jetsweep_data::DataError) -> Error {
    match DatasetProblem::of(&e) {
        DatasetProblem::Invalid => bad("dataset", e.to_string()),
        _ => Error::from(e),
    }
}

/// Every value of a list through the vocabulary's parser or check.
fn each<T, U>(
    list: Vec<T>,
    f: impl Fn(T) -> Result<U, jetsweep_proto::Error>,
) -> Result<Vec<U>, Error> {
    list.into_iter()
        .map(|v| f(v).map_err(Error::from))
        .collect()
}

impl SweepSpec {
    /// Parses and validates a sweep file's text; its dataset may be any file this process can
    /// read (for a local run).
    pub fn parse(text: &str) -> Result<SweepSpec, Error> {
        Self::parse_with(text, &DataAccess::Local)
    }

    /// Parses and validates a sweep file's text, its dataset resolved under `access`: nothing
    /// outside what `access` allows is looked at.
    pub fn parse_with(text: &str, access: &DataAccess) -> Result<SweepSpec, Error> {
        if text.len() > MAX_FILE_BYTES {
            return Err(Error::InvalidRequest(format!(
                "sweep file of {} bytes: the limit is {MAX_FILE_BYTES}; a grid is a few lists, so split the file or shorten it",
                text.len()
            )));
        }
        let file: SweepFile = toml::from_str(text)
            .map_err(|e| Error::SweepSyntax(e.to_string().trim().to_string()))?;
        let d = file.defaults;
        let g = file.grid;
        let search = match &file.search {
            Some(table) => Search::parse(table, MAX_CELLS)?,
            None => Search::default(),
        };
        for (key, _) in &search.space {
            let written = match key {
                Key::Width | Key::Depth => "model",
                k => k.name(),
            };
            if g.has(*key) || d.has(*key) {
                return Err(bad(
                    &format!("search.space.{key}"),
                    format!(
                        "{written} is also given in [{}]: a key is either drawn or listed, so remove one",
                        if g.has(*key) { "grid" } else { "defaults" }
                    ),
                ));
            }
        }

        let defaults = Hyperparameters::default();
        let checked =
            |v: u32, check: fn(u32) -> Result<(), jetsweep_proto::Error>| check(v).map(|_| v);
        let mut spec = SweepSpec {
            name: file.name.trim().to_string(),
            dataset: access
                .resolve(file.dataset.as_deref().unwrap_or("synthetic"))?
                .parse()
                .map_err(dataset_error)?,
            val_fraction: file.val_fraction.unwrap_or(0.0),
            attempts: file.attempts.unwrap_or(DEFAULT_ATTEMPTS),
            reuse: file.reuse.unwrap_or(true),
            keep_models: KeepModels::parse(file.keep_models.as_deref())?,
            schedule: Schedule::read(file.priority, file.max_running, file.device.as_deref())?,
            lease_timeout: match file.lease_timeout_s {
                None => DEFAULT_LEASE,
                Some(s)
                    if s.is_finite()
                        && (MIN_LEASE.as_secs_f64()..=MAX_LEASE.as_secs_f64()).contains(&s) =>
                {
                    Duration::from_secs_f64(s)
                }
                Some(s) => {
                    return Err(bad(
                        "lease_timeout_s",
                        format!(
                            "{s} is out of range: use {} to {} seconds (a lease must outlive three heartbeats)",
                            MIN_LEASE.as_secs(),
                            MAX_LEASE.as_secs()
                        ),
                    ));
                }
            },
            models: each(
                axis("model", g.model, d.model, defaults.model.name.clone())?,
                |m| m.parse(),
            )?,
            optimizers: each(
                axis(
                    "optimizer",
                    g.optimizer,
                    d.optimizer,
                    defaults.optimizer.as_str().into(),
                )?,
                |o| o.parse(),
            )?,
            batch_sizes: each(
                axis(
                    "batch_size",
                    g.batch_size,
                    d.batch_size,
                    defaults.batch_size,
                )?,
                |b| checked(b, trial::check_batch_size),
            )?,
            max_epochs: each(
                axis(
                    "max_epochs",
                    g.max_epochs,
                    d.max_epochs,
                    defaults.max_epochs,
                )?,
                |e| checked(e, trial::check_max_epochs),
            )?,
            learning_rates: each(
                axis(
                    "learning_rate",
                    g.learning_rate,
                    d.learning_rate,
                    defaults.learning_rate,
                )?,
                |lr| trial::check_learning_rate(lr).map(|_| lr),
            )?,
            weight_decays: each(
                axis(
                    "weight_decay",
                    g.weight_decay,
                    d.weight_decay,
                    defaults.weight_decay,
                )?,
                |wd| trial::check_weight_decay(wd).map(|_| wd),
            )?,
            seeds: axis("seed", g.seed, d.seed, defaults.seed)?,
            search,
            points: vec![Vec::new()],
        };
        spec.validate()?;
        if spec.search.is_tpe() && spec.grid_cells() > spec.seeds.len().max(1) as u128 {
            return Err(bad(
                "grid",
                "method = \"tpe\" suggests whole configurations: its [grid] may list only seeds (replicates); draw the other keys in [search.space]",
            ));
        }
        // Drawn last: the checks above are cheap, a draw of 100,000 points is not.
        spec.points = spec.draw()?;
        Ok(spec)
    }

    /// The search's points: drawn candidates, the distinct ones that fit `max_params` (a grid has
    /// one empty point).
    fn draw(&self) -> Result<Vec<Point>, Error> {
        let Some(sampler) = self.search.sampler() else {
            return Ok(vec![Vec::new()]);
        };
        // TPE draws its startup points now; the rest are suggested as points settle.
        let points = if self.search.is_tpe() {
            self.search.points.min(search::tpe::STARTUP as u64)
        } else {
            self.search.points
        };
        search::draw::draw_points(
            &self.search.space,
            sampler,
            self.search.search_seed,
            points,
            |point| self.fits(point),
        )
        .map_err(|e| bad("search.points", e))
    }

    /// Whether a drawn point's network is within `max_params` (always, without a budget).
    pub fn fits(&self, point: &Point) -> bool {
        match (self.search.max_params, drawn_model(point)) {
            (Some(max), Some(model)) => model.param_count() <= max,
            _ => true,
        }
    }

    /// The trials of one more point (TPE's), seeds innermost, as [`SweepSpec::trials`] gives a
    /// point's.
    pub fn trials_of(&self, point: &Point) -> Vec<Trial> {
        let one = SweepSpec {
            points: vec![point.clone()],
            ..self.clone()
        };
        one.trials()
    }

    /// What the submitter should know before trusting the results, once its dataset is prepared
    /// (`validation`: what its validation numbers are computed on; a dataset may bring its own
    /// held-out split, as an `.npy` directory with `x_val.npy` does).
    pub fn warnings(&self, validation: jetsweep_proto::dataset::ValidationKind) -> Vec<String> {
        let mut out = Vec::new();
        let chooses = self.search.sampler().is_some() || self.search.decides();
        if chooses && validation == jetsweep_proto::dataset::ValidationKind::TrainAsVal {
            out.push(format!(
                "this search judges points by {} measured on the training data (MASE's train-as-val): it will choose by training fit, not by generalisation. Add val_fraction = 0.2 to hold out a validation split",
                self.search.metric.as_str()
            ));
        }
        out
    }

    /// The rules that concern the sweep as a whole (each value was checked as it was read).
    fn validate(&self) -> Result<(), Error> {
        if self.name.is_empty() {
            return Err(bad("name", "empty: give the sweep a name"));
        }
        if self.name.chars().count() > MAX_NAME_CHARS {
            return Err(bad(
                "name",
                format!(
                    "{} characters: use at most {MAX_NAME_CHARS}",
                    self.name.chars().count()
                ),
            ));
        }
        if self.name.chars().any(char::is_control) {
            return Err(bad(
                "name",
                "holds a control character (a newline, a terminal escape): use printable text",
            ));
        }
        if !(0.0..0.9).contains(&self.val_fraction) {
            return Err(bad(
                "val_fraction",
                format!(
                    "{} is out of range: use 0 (train-as-val) or a fraction below 0.9",
                    self.val_fraction
                ),
            ));
        }
        if !(1..=MAX_ATTEMPTS).contains(&self.attempts) {
            return Err(bad(
                "attempts",
                format!("{}: use 1 to {MAX_ATTEMPTS} tries per job", self.attempts),
            ));
        }
        if let Some(max) = self.search.max_params
            && !self.search.draws(Key::Model)
            && !self.search.draws(Key::Width)
        {
            for m in &self.models {
                if m.param_count() > max {
                    return Err(bad(
                        "search.max_params",
                        format!(
                            "{max}, but the model {m} (not drawn) has {} parameters: raise max_params or choose a smaller model",
                            m.param_count()
                        ),
                    ));
                }
            }
        }
        let stop = &self.search.stop;
        let shortest = self.max_epochs.iter().min().copied().unwrap_or(1);
        if self.search.decides() && stop.min_epochs > shortest && !self.search.draws(Key::MaxEpochs)
        {
            return Err(bad(
                "search.stop.min_epochs",
                format!(
                    "{} is more than max_epochs {shortest}: the first rung must come before the last epoch",
                    stop.min_epochs
                ),
            ));
        }
        for key in &stop.stratify {
            let swept = |k: Key| self.search.draws(k);
            let listed = match key.as_str() {
                "model" => self.models.len() > 1 || swept(Key::Model) || swept(Key::Width),
                "batch_size" => self.batch_sizes.len() > 1 || swept(Key::BatchSize),
                "max_epochs" => self.max_epochs.len() > 1 || swept(Key::MaxEpochs),
                "learning_rate" => self.learning_rates.len() > 1 || swept(Key::LearningRate),
                "weight_decay" => self.weight_decays.len() > 1 || swept(Key::WeightDecay),
                "optimizer" => self.optimizers.len() > 1,
                _ => false,
            };
            if !listed {
                return Err(bad(
                    "search.stop.stratify",
                    format!(
                        "{key:?} is not swept (neither listed in [grid] nor drawn), so there is nothing to compare it within"
                    ),
                ));
            }
        }
        let cells = self.cells();
        if cells > MAX_CELLS as u128 {
            return Err(Error::TooManyCells {
                cells,
                limit: MAX_CELLS,
            });
        }
        Ok(())
    }

    /// Number of jobs the sweep expands to (computed without expanding it).
    pub fn cells(&self) -> u128 {
        u128::from(self.search.points) * self.grid_cells()
    }

    /// Number of cells of the `[grid]` alone, seeds included.
    pub fn grid_cells(&self) -> u128 {
        [
            self.models.len(),
            self.optimizers.len(),
            self.batch_sizes.len(),
            self.max_epochs.len(),
            self.learning_rates.len(),
            self.weight_decays.len(),
            self.seeds.len(),
        ]
        .iter()
        .map(|&n| n as u128)
        .product()
    }

    /// Every job, in a fixed order: drawn points outermost (in draw order), then the grid's cells
    /// (model, optimizer, batch size, epochs, lr, weight decay), then the seed fastest, so the
    /// seeds of one point are adjacent.
    pub fn trials(&self) -> Vec<Trial> {
        let mut out = Vec::with_capacity(self.cells() as usize);
        for point in &self.points {
            for base in self.grid_points() {
                let mut trial = base;
                for (key, value) in point {
                    search::space::set(&mut trial, *key, value);
                }
                if let Some(model) = drawn_model(point) {
                    trial.model = model;
                }
                for &seed in &self.seeds {
                    out.push(Trial {
                        seed,
                        ..trial.clone()
                    });
                }
            }
        }
        out
    }

    /// The grid's cells without the seed (seed 0), in grid order.
    fn grid_points(&self) -> Vec<Trial> {
        let mut out = Vec::new();
        for model in &self.models {
            for &optimizer in &self.optimizers {
                for &batch_size in &self.batch_sizes {
                    for &max_epochs in &self.max_epochs {
                        for &learning_rate in &self.learning_rates {
                            for &weight_decay in &self.weight_decays {
                                out.push(Trial {
                                    model: model.clone(),
                                    optimizer,
                                    batch_size,
                                    max_epochs,
                                    learning_rate,
                                    weight_decay,
                                    seed: 0,
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// The network a point draws: a named model, or `width` × `depth`; `None` when it draws neither.
fn drawn_model(point: &Point) -> Option<Architecture> {
    let get = |key: Key| point.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
    match (get(Key::Model), get(Key::Width), get(Key::Depth)) {
        (Some(search::Value::Name(m)), _, _) => m.parse().ok(),
        (_, Some(search::Value::Whole(w)), Some(search::Value::Whole(d))) => {
            Some(search::space::capacity(*w, *d))
        }
        _ => None,
    }
}

/// A job's identity: sha256 over everything that determines its result, the trial's hyperparameters
/// and the prepared dataset's content hash (which already covers the source, split and validation).
/// The learning rate enters by its exact bits, so 1e-3 and 0.001 are the same job. A weight decay
/// of 0 is left out, so every job stored before weight decay existed keeps its id.
pub fn job_id(trial: &Trial, dataset_sha256: &str) -> String {
    let weight_decay = if trial.weight_decay == 0.0 {
        String::new()
    } else {
        format!("|wd={:016x}", trial.weight_decay.to_bits())
    };
    let key = format!(
        "jetsweep-job-v1|model={}|optimizer={}|batch_size={}|max_epochs={}|lr={:016x}{weight_decay}|seed={}|dataset={}",
        trial.model.name,
        trial.optimizer.as_str(),
        trial.batch_size,
        trial.max_epochs,
        trial.learning_rate.to_bits(),
        trial.seed,
        dataset_sha256
    );
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Which of a trial's weights a sweep keeps: MASE's `best.ckpt` (the epoch with the lowest
/// validation loss), also the last epoch's, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum KeepModels {
    None,
    #[default]
    Best,
    BestAndLast,
}

impl KeepModels {
    pub fn parse(value: Option<&str>) -> Result<KeepModels, Error> {
        match value {
            None | Some("best") => Ok(KeepModels::Best),
            Some("best-and-last") => Ok(KeepModels::BestAndLast),
            Some("none") => Ok(KeepModels::None),
            Some(other) => Err(bad(
                "keep_models",
                format!(
                    "{:?}: use \"best\" (the epoch with the lowest validation loss), \"best-and-last\" or \"none\"",
                    other.chars().take(40).collect::<String>()
                ),
            )),
        }
    }

    /// As stored on a job (the most any of its sweeps asks).
    pub fn level(self) -> i64 {
        self as i64
    }

    pub fn name(self) -> &'static str {
        match self {
            KeepModels::None => "none",
            KeepModels::Best => "best",
            KeepModels::BestAndLast => "best-and-last",
        }
    }
}

/// The identity of a job of a sweep that reuses nothing (`reuse = false`): [`job_id`]'s, made
/// the sweep's own, so that no other sweep finds it and it finds no other's.
pub fn private_job_id(shared_id: &str, sweep_id: &str) -> String {
    let key = format!("jetsweep-job-v1-private|sweep={sweep_id}|job={shared_id}");
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;

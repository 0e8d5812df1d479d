//! Multivariate TPE (Bergstra et al. 2011; the multivariate form of Falkner et al. 2018 that
//! Optuna uses), as a pure function: the next point from the points told so far, those still in
//! flight, the search seed and the point's index. Same inputs, same point — on any machine and in
//! any order of asking — so a search's points can be drawn again from the store after a restart.
//!
//! Every numeric key works in its distribution's unit coordinate (the CDF of its value: a log key
//! in log space, a whole number at the centre of its share), so one bandwidth rule serves all. The
//! told points are split at the best ⌈10%⌉ (at most 25) into "below" and "above"; each half is a
//! Parzen estimator (one kernel per point, a product over keys, plus a broad prior kernel);
//! candidates are drawn from "below" and the one with the largest l(x)/g(x) is suggested. Points
//! in flight count as the worst told (the constant liar), so parallel workers are not all sent to
//! the same place. The first `startup` points are drawn at random, as `random` draws them.

use super::draw::{Point, Sampler, unit};
use super::space::{Distribution, Key, Value};

/// Points drawn at random before the model is used (Optuna's `n_startup_trials`).
pub const STARTUP: usize = 10;
/// Candidates drawn from l(x) per suggestion (Optuna's `n_ei_candidates`).
pub const CANDIDATES: usize = 24;
/// Optuna's multivariate bandwidth: 0.2 · n^(-1/(d+4)) of the unit range.
const BANDWIDTH: f64 = 0.2;
/// The smallest bandwidth: a kernel narrower than this puts all its mass on one value.
const MIN_BANDWIDTH: f64 = 1e-3;
/// Salt of the model's random stream, apart from the startup draws.
const STREAM: u64 = 0x7E5E_0000_0000_0001;

/// A told point and its score; lower is better (the caller negates accuracies). NaN is a
/// diverged point and ranks below every number.
#[derive(Debug, Clone, PartialEq)]
pub struct Told {
    pub point: Point,
    pub score: f64,
}

/// One key's coordinate: a number in [0, 1] or a choice's index.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Coord {
    Unit(f64),
    Index(usize),
}

/// The unit coordinate of `value` under `dist` (the inverse of [`Distribution::at`]).
fn coord(dist: &Distribution, value: &Value) -> Coord {
    let unit = match (dist, value) {
        (Distribution::Uniform(a, b), Value::Real(x)) => (x - a) / (b - a),
        (Distribution::LogUniform(a, b), Value::Real(x)) => (x.ln() - a.ln()) / (b.ln() - a.ln()),
        (Distribution::IntUniform(a, b), Value::Whole(n)) => {
            (*n as f64 - *a as f64 + 0.5) / (*b as f64 - *a as f64 + 1.0)
        }
        (Distribution::IntLogUniform(a, b), Value::Whole(n)) => {
            let centre = ((*n as f64).ln() + ((*n + 1) as f64).ln()) / 2.0;
            (centre - (*a as f64).ln()) / (((*b + 1) as f64).ln() - (*a as f64).ln())
        }
        (Distribution::Choice(values), v) => {
            return Coord::Index(values.iter().position(|c| c == v).unwrap_or(0));
        }
        _ => 0.5,
    };
    Coord::Unit(unit.clamp(0.0, 1.0))
}

/// A point's value for `key`, from its coordinate.
fn value(dist: &Distribution, c: Coord) -> Value {
    match (dist, c) {
        (Distribution::Choice(values), Coord::Index(i)) => values[i].clone(),
        (_, Coord::Unit(u)) => dist.at(u),
        (_, Coord::Index(_)) => unreachable!("numeric keys have unit coordinates"),
    }
}

/// The standard normal's CDF.
fn phi(x: f64) -> f64 {
    0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

/// A Parzen estimator over some told points: one kernel each, plus the prior, weighted alike.
struct Parzen<'a> {
    space: &'a [(Key, Distribution)],
    centres: Vec<Vec<Coord>>,
    bandwidth: f64,
}

impl<'a> Parzen<'a> {
    fn new(space: &'a [(Key, Distribution)], points: &[Vec<Coord>]) -> Parzen<'a> {
        let n = points.len() + 1;
        let d = space.len() as f64;
        Parzen {
            space,
            centres: points.to_vec(),
            bandwidth: (BANDWIDTH * (n as f64).powf(-1.0 / (d + 4.0))).max(MIN_BANDWIDTH),
        }
    }

    /// Kernels: the told points, then the prior (index `centres.len()`).
    fn kernels(&self) -> usize {
        self.centres.len() + 1
    }

    /// A kernel's centre and bandwidth for numeric key `k`: the prior is centred and broad.
    fn numeric(&self, kernel: usize, k: usize) -> (f64, f64) {
        match self.centres.get(kernel).map(|c| c[k]) {
            Some(Coord::Unit(u)) => (u, self.bandwidth),
            _ => (0.5, 1.0),
        }
    }

    /// A kernel's probability of choice `i` of key `k` (of `n`): half its mass on its own choice,
    /// the rest spread evenly; the prior is even.
    fn categorical(&self, kernel: usize, k: usize, i: usize, n: usize) -> f64 {
        match self.centres.get(kernel).map(|c| c[k]) {
            Some(Coord::Index(own)) => 0.5 * f64::from(u8::from(own == i)) + 0.5 / n as f64,
            _ => 1.0 / n as f64,
        }
    }

    /// log of the density at `x`.
    fn log_density(&self, x: &[Coord]) -> f64 {
        let logs: Vec<f64> = (0..self.kernels())
            .map(|kernel| {
                let mut log = 0.0;
                for (k, (_, dist)) in self.space.iter().enumerate() {
                    log += match (dist, x[k]) {
                        (Distribution::Choice(values), Coord::Index(i)) => {
                            self.categorical(kernel, k, i, values.len()).ln()
                        }
                        (_, Coord::Unit(u)) => {
                            let (mu, sigma) = self.numeric(kernel, k);
                            let mass = (phi((1.0 - mu) / sigma) - phi(-mu / sigma)).max(1e-300);
                            let z = (u - mu) / sigma;
                            -0.5 * z * z
                                - sigma.ln()
                                - 0.5 * (2.0 * std::f64::consts::PI).ln()
                                - mass.ln()
                        }
                        _ => 0.0,
                    };
                }
                log
            })
            .collect();
        let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        top + logs.iter().map(|l| (l - top).exp()).sum::<f64>().ln() - (logs.len() as f64).ln()
    }

    /// A point drawn from the estimator with the numbers of `stream`.
    fn sample(&self, stream: &mut Stream) -> Vec<Coord> {
        let kernel = ((stream.next() * self.kernels() as f64) as usize).min(self.kernels() - 1);
        self.space
            .iter()
            .enumerate()
            .map(|(k, (_, dist))| match dist {
                Distribution::Choice(values) => {
                    let n = values.len();
                    let mut u = stream.next();
                    let mut pick = n - 1;
                    for i in 0..n {
                        let p = self.categorical(kernel, k, i, n);
                        if u < p {
                            pick = i;
                            break;
                        }
                        u -= p;
                    }
                    Coord::Index(pick)
                }
                _ => {
                    let (mu, sigma) = self.numeric(kernel, k);
                    Coord::Unit(truncated_normal(mu, sigma, stream))
                }
            })
            .collect()
    }
}

/// A draw from N(mu, sigma) truncated to [0, 1): by rejection (Box–Muller), which at the
/// bandwidths used here accepts at least a third of the time; a uniform draw after 64 misses.
fn truncated_normal(mu: f64, sigma: f64, stream: &mut Stream) -> f64 {
    for _ in 0..64 {
        let (u1, u2) = (stream.next().max(f64::MIN_POSITIVE), stream.next());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let x = mu + sigma * z;
        if (0.0..1.0).contains(&x) {
            return x;
        }
    }
    stream.next()
}

/// The numbers one suggestion uses: a counter over (seed, point index).
struct Stream {
    seed: u64,
    index: u64,
    count: u32,
}

impl Stream {
    fn next(&mut self) -> f64 {
        self.count += 1;
        unit(Sampler::Random, self.seed ^ STREAM, self.index, self.count)
    }
}

/// The point with index `index` of a TPE search over `space` seeded by `seed`, given the points
/// told so far and those in flight: the candidate with the best ratio l/g among those
/// `admissible` takes (a point not tried yet, a network that fits the budget). `None` when no
/// candidate is: in a small discrete space the best ratio often falls on a point already tried,
/// and the next best new one is what a search wants, not a rejection.
pub fn suggest(
    space: &[(Key, Distribution)],
    seed: u64,
    index: u64,
    told: &[Told],
    in_flight: &[Point],
    admissible: &dyn Fn(&Point) -> bool,
) -> Option<Point> {
    let point_of = |x: Vec<Coord>| -> Point {
        space
            .iter()
            .zip(x)
            .map(|((k, d), c)| (*k, value(d, c)))
            .collect()
    };
    if told.len() < STARTUP {
        let p: Point = space
            .iter()
            .map(|(k, d)| (*k, d.at(unit(Sampler::Random, seed, index, k.dimension()))))
            .collect();
        return admissible(&p).then_some(p);
    }
    let coords = |p: &Point| -> Vec<Coord> {
        space
            .iter()
            .map(|(key, dist)| {
                let v = p.iter().find(|(k, _)| k == key).map(|(_, v)| v);
                v.map_or(Coord::Unit(0.5), |v| coord(dist, v))
            })
            .collect()
    };
    // Best first; NaN and the points in flight (the constant liar) last; ties by telling order.
    let mut ranked: Vec<(f64, Vec<Coord>)> = told
        .iter()
        .map(|t| {
            (
                if t.score.is_nan() {
                    f64::INFINITY
                } else {
                    t.score
                },
                coords(&t.point),
            )
        })
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
    ranked.extend(in_flight.iter().map(|p| (f64::INFINITY, coords(p))));
    let n = ranked.len();
    let n_below = n.div_ceil(10).clamp(1, 25);
    let (below, above): (Vec<_>, Vec<_>) = ranked
        .into_iter()
        .map(|(_, c)| c)
        .enumerate()
        .partition(|(i, _)| *i < n_below);
    let below: Vec<Vec<Coord>> = below.into_iter().map(|(_, c)| c).collect();
    let above: Vec<Vec<Coord>> = above.into_iter().map(|(_, c)| c).collect();
    let (l, g) = (Parzen::new(space, &below), Parzen::new(space, &above));
    let mut stream = Stream {
        seed,
        index,
        count: 0,
    };
    let mut best: Option<(f64, Point)> = None;
    for _ in 0..CANDIDATES {
        let x = l.sample(&mut stream);
        let gain = l.log_density(&x) - g.log_density(&x);
        if best.as_ref().is_none_or(|(b, _)| gain > *b) {
            let p = point_of(x);
            if admissible(&p) {
                best = Some((gain, p));
            }
        }
    }
    best.map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `evals` points of TPE (or random, `tpe = false`) on `f`, one at a time; the best score.
    fn search(
        space: &[(Key, Distribution)],
        f: &dyn Fn(&Point) -> f64,
        seed: u64,
        evals: u64,
        tpe: bool,
    ) -> f64 {
        let mut told: Vec<Told> = Vec::new();
        for i in 0..evals {
            let point = if tpe {
                suggest(space, seed, i, &told, &[], &|_| true).expect("every point admissible")
            } else {
                space
                    .iter()
                    .map(|(k, d)| (*k, d.at(unit(Sampler::Random, seed, i, k.dimension()))))
                    .collect()
            };
            let score = f(&point);
            told.push(Told { point, score });
        }
        told.iter().map(|t| t.score).fold(f64::INFINITY, f64::min)
    }

    fn real(p: &Point, key: Key) -> f64 {
        match p.iter().find(|(k, _)| *k == key).map(|(_, v)| v) {
            Some(Value::Real(x)) => *x,
            Some(Value::Whole(n)) => *n as f64,
            _ => panic!("no {key}"),
        }
    }

    /// Over 11 search seeds, TPE's median best is below random search's, and it wins on most seeds.
    fn beats_random(space: &[(Key, Distribution)], f: &dyn Fn(&Point) -> f64, evals: u64) {
        let (mut tpe, mut random): (Vec<f64>, Vec<f64>) = (0..11)
            .map(|seed| {
                (
                    search(space, f, seed, evals, true),
                    search(space, f, seed, evals, false),
                )
            })
            .unzip();
        let wins = tpe.iter().zip(&random).filter(|(t, r)| t < r).count();
        tpe.sort_by(f64::total_cmp);
        random.sort_by(f64::total_cmp);
        assert!(
            tpe[5] < random[5] && wins >= 7,
            "median best: TPE {} vs random {}; TPE won {wins} of 11",
            tpe[5],
            random[5]
        );
    }

    #[test]
    fn tpe_beats_random_search_on_a_bowl_in_log_space() {
        let space = vec![
            (Key::LearningRate, Distribution::LogUniform(1e-6, 1e-1)),
            (Key::WeightDecay, Distribution::LogUniform(1e-6, 1e-1)),
        ];
        let f = |p: &Point| {
            (real(p, Key::LearningRate).log10() + 3.0).powi(2)
                + (real(p, Key::WeightDecay).log10() + 4.5).powi(2)
        };
        beats_random(&space, &f, 60);
    }

    #[test]
    fn tpe_beats_random_search_on_branin() {
        // Branin's usual domain, carried by two real keys (the keys are only labels here).
        let space = vec![
            (Key::LearningRate, Distribution::Uniform(-5.0, 10.0)),
            (Key::WeightDecay, Distribution::Uniform(0.0, 15.0)),
        ];
        let f = |p: &Point| {
            let (x1, x2) = (real(p, Key::LearningRate), real(p, Key::WeightDecay));
            let pi = std::f64::consts::PI;
            let (b, c, t) = (5.1 / (4.0 * pi * pi), 5.0 / pi, 1.0 / (8.0 * pi));
            (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
        };
        beats_random(&space, &f, 60);
    }

    #[test]
    fn tpe_beats_random_search_on_a_mixed_space() {
        let space = vec![
            (Key::LearningRate, Distribution::LogUniform(1e-5, 1e-1)),
            (
                Key::BatchSize,
                Distribution::Choice([64, 128, 256, 512, 1024].map(Value::Whole).to_vec()),
            ),
            (Key::Width, Distribution::IntLogUniform(4, 256)),
        ];
        let f = |p: &Point| {
            let batch = real(p, Key::BatchSize);
            (real(p, Key::LearningRate).log10() + 2.5).powi(2)
                + if batch == 256.0 { 0.0 } else { 1.0 }
                + (real(p, Key::Width).log2() - 5.0).powi(2) / 4.0
        };
        beats_random(&space, &f, 60);
    }

    #[test]
    fn a_suggestion_is_a_pure_function_of_its_inputs_and_avoids_points_in_flight() {
        let space = vec![
            (Key::LearningRate, Distribution::LogUniform(1e-5, 1e-1)),
            (
                Key::BatchSize,
                Distribution::Choice([64, 128].map(Value::Whole).to_vec()),
            ),
        ];
        let told: Vec<Told> = (0..12)
            .map(|i| {
                let point = suggest(&space, 3, i, &[], &[], &|_| true).unwrap();
                let score = (real(&point, Key::LearningRate).log10() + 3.0).abs();
                Told { point, score }
            })
            .collect();
        let a = suggest(&space, 3, 12, &told, &[], &|_| true).unwrap();
        assert_eq!(a, suggest(&space, 3, 12, &told, &[], &|_| true).unwrap());
        assert_ne!(
            a,
            suggest(&space, 4, 12, &told, &[], &|_| true).unwrap(),
            "another seed, another point"
        );
        assert_ne!(
            a,
            suggest(&space, 3, 12, &told, std::slice::from_ref(&a), &|_| true).unwrap(),
            "the point in flight is not suggested again"
        );
        // The first points are random search's.
        let first = suggest(&space, 3, 0, &[], &[], &|_| true).unwrap();
        assert_eq!(
            first[0].1,
            space[0]
                .1
                .at(unit(Sampler::Random, 3, 0, Key::LearningRate.dimension()))
        );
    }

    /// In a small discrete space the best ratio falls on points already tried; the suggestion is
    /// then the best new one, until none is left.
    #[test]
    fn in_a_small_discrete_space_each_suggestion_is_a_new_point_until_none_is_left() {
        let space = vec![
            (
                Key::LearningRate,
                Distribution::Choice([1e-3, 1e-2, 1e-1].map(Value::Real).to_vec()),
            ),
            (
                Key::BatchSize,
                Distribution::Choice([64, 128, 256, 512].map(Value::Whole).to_vec()),
            ),
        ];
        let score = |p: &Point| (real(p, Key::LearningRate).log10() + 2.0).abs();
        let mut told: Vec<Told> = Vec::new();
        // Ten startup draws (repeats among them: 12 points in all).
        for i in 0..STARTUP as u64 {
            let point = suggest(&space, 5, i, &[], &[], &|_| true).unwrap();
            told.push(Told {
                score: score(&point),
                point,
            });
        }
        let mut distinct: Vec<Point> = Vec::new();
        for t in &told {
            if !distinct.contains(&t.point) {
                distinct.push(t.point.clone());
            }
        }
        let mut index = STARTUP as u64;
        while distinct.len() < 12 {
            let new = |p: &Point| !distinct.contains(p);
            let point = (0..32)
                .find_map(|k| suggest(&space, 5, index + k * 100, &told, &[], &new))
                .expect("a new point while some are left");
            assert!(!distinct.contains(&point));
            distinct.push(point.clone());
            told.push(Told {
                score: score(&point),
                point,
            });
            index += 1;
        }
        let none = |p: &Point| !distinct.contains(p);
        assert!((0..32).all(|k| suggest(&space, 5, index + k, &told, &[], &none).is_none()));
    }

    #[test]
    fn coordinates_invert_the_distributions() {
        for (dist, v) in [
            (Distribution::Uniform(0.0, 1e-3), Value::Real(2.5e-4)),
            (Distribution::LogUniform(1e-5, 1e-1), Value::Real(1e-3)),
            (Distribution::IntUniform(1, 4), Value::Whole(3)),
            (Distribution::IntLogUniform(4, 256), Value::Whole(37)),
        ] {
            let Coord::Unit(u) = coord(&dist, &v) else {
                panic!()
            };
            assert_eq!(dist.at(u), v, "{dist:?}");
        }
    }
}

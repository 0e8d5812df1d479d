//! Drawing a search's points. The number behind key `k` of candidate `draw` is a pure function of
//! (sampler, search seed, draw, k's dimension): a counter-based generator for `random`, an
//! Owen-scrambled Sobol sequence for `sobol`. So the same file and seed give the same points in
//! the same order on any machine, and a point's values never depend on how many were drawn
//! before it was needed. Candidates that repeat an earlier point, or whose network is over the
//! parameter budget, are passed over: the points are the first `points` distinct candidates that
//! fit.

use super::space::{Distribution, Key, Value};

/// Where the numbers in [0, 1) come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampler {
    /// Independent uniform numbers (SplitMix64 over the seed, draw and dimension).
    Random,
    /// The Sobol sequence, Owen-scrambled by the seed: even coverage of the space, best at
    /// 2^m points.
    Sobol,
}

/// The Sobol sequence has 2^16 points (sobol_burley's limit).
pub const SOBOL_POINTS: u64 = 1 << 16;

/// One draw's number for one dimension, in [0, 1).
pub fn unit(sampler: Sampler, seed: u64, draw: u64, dimension: u32) -> f64 {
    match sampler {
        Sampler::Random => {
            let h = splitmix(splitmix(splitmix(seed) ^ draw) ^ u64::from(dimension));
            // The top 53 bits: every double in [0, 1) this can give is equally likely.
            (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
        }
        Sampler::Sobol => {
            debug_assert!(draw < SOBOL_POINTS);
            let seed = (seed ^ (seed >> 32)) as u32;
            f64::from(sobol_burley::sample(draw as u32, dimension, seed))
        }
    }
}

/// SplitMix64's finaliser (Steele, Lea and Flood 2014): a bijection of u64 whose outputs pass
/// BigCrush for consecutive inputs, so counters make independent streams.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A drawn point: a value for each key of the space, in the space's order.
pub type Point = Vec<(Key, Value)>;

/// The first `points` distinct candidates that `fits` accepts, or why there are not that many.
pub fn draw_points(
    space: &[(Key, Distribution)],
    sampler: Sampler,
    seed: u64,
    points: u64,
    fits: impl Fn(&Point) -> bool,
) -> Result<Vec<Point>, String> {
    let distinct: Option<u64> = space
        .iter()
        .map(|(_, d)| d.distinct())
        .try_fold(1u64, |n, d| d.map(|d| n.saturating_mul(d)));
    if let Some(n) = distinct
        && n < points
    {
        return Err(format!(
            "the space has only {n} distinct points and {points} were asked for: lower `points` or widen the space"
        ));
    }
    // Enough candidates to find `points` when at least one in twenty fits and is new.
    let mut limit = points.saturating_mul(20).saturating_add(1_000);
    if sampler == Sampler::Sobol {
        limit = limit.min(SOBOL_POINTS);
    }
    let mut out: Vec<Point> = Vec::with_capacity(points as usize);
    let mut seen = std::collections::HashSet::new();
    for draw in 0..limit {
        if out.len() as u64 == points {
            break;
        }
        let point: Point = space
            .iter()
            .map(|(k, d)| (*k, d.at(unit(sampler, seed, draw, k.dimension()))))
            .collect();
        if !fits(&point) || !seen.insert(identity(&point)) {
            continue;
        }
        out.push(point);
    }
    if (out.len() as u64) < points {
        return Err(format!(
            "{limit} candidates gave only {} distinct points within the budget, and {points} were asked for: lower `points`, widen the space or raise `max_params`",
            out.len()
        ));
    }
    Ok(out)
}

/// A point's values as text with reals by their bits: equal points, equal identities.
fn identity(point: &Point) -> String {
    let mut s = String::new();
    for (k, v) in point {
        let v = match v {
            Value::Real(x) => format!("{:016x}", x.to_bits()),
            Value::Whole(n) => n.to_string(),
            Value::Name(m) => m.clone(),
        };
        s += &format!("{}={v}|", k.name());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draw_is_a_pure_function_of_the_seed_the_draw_and_the_dimension() {
        for sampler in [Sampler::Random, Sampler::Sobol] {
            let a: Vec<f64> = (0..64).map(|d| unit(sampler, 7, d, 0)).collect();
            let b: Vec<f64> = (0..64)
                .rev()
                .map(|d| unit(sampler, 7, d, 0))
                .rev()
                .collect();
            assert_eq!(a, b, "{sampler:?}: order of asking does not matter");
            assert_ne!(
                a,
                (0..64).map(|d| unit(sampler, 8, d, 0)).collect::<Vec<_>>()
            );
            assert_ne!(
                a,
                (0..64).map(|d| unit(sampler, 7, d, 1)).collect::<Vec<_>>()
            );
            assert!(a.iter().all(|u| (0.0..1.0).contains(u)));
        }
    }

    #[test]
    fn sobol_covers_every_stratum_where_random_need_not() {
        // The first 2^m Sobol points put exactly one in each of 2^m equal slices, per dimension.
        for dimension in 0..4 {
            let mut slices = [0u32; 16];
            for d in 0..16 {
                slices[(unit(Sampler::Sobol, 3, d, dimension) * 16.0) as usize] += 1;
            }
            assert_eq!(slices, [1; 16], "dimension {dimension}");
        }
    }

    #[test]
    fn random_numbers_are_uniform_enough() {
        // 100,000 draws in 10 bins: each bin within 3% of 10,000.
        let mut bins = [0u32; 10];
        for d in 0..100_000 {
            bins[(unit(Sampler::Random, 1, d, 2) * 10.0) as usize] += 1;
        }
        assert!(
            bins.iter().all(|&n| (9_700..=10_300).contains(&n)),
            "{bins:?}"
        );
    }

    #[test]
    fn repeated_candidates_are_passed_over_and_a_small_space_is_refused() {
        let space = vec![(
            Key::BatchSize,
            Distribution::Choice([64, 128, 256].map(Value::Whole).to_vec()),
        )];
        let points = draw_points(&space, Sampler::Random, 1, 3, |_| true).unwrap();
        let mut got: Vec<Value> = points.iter().map(|p| p[0].1.clone()).collect();
        got.sort_by_key(|v| format!("{v:?}"));
        assert_eq!(got.len(), 3);
        got.dedup();
        assert_eq!(got.len(), 3, "three distinct points");
        let err = draw_points(&space, Sampler::Random, 1, 4, |_| true).unwrap_err();
        assert!(err.contains("only 3 distinct points"), "{err}");
        let err = draw_points(&space, Sampler::Random, 1, 2, |p| {
            p[0].1 == Value::Whole(64)
        })
        .unwrap_err();
        assert!(err.contains("gave only 1 distinct points"), "{err}");
    }
}

//! A Zipf sampler over `n` ranks: rank `k` (1-based) is drawn with probability proportional to
//! `1 / k^exponent`, so a few accounts take most of the traffic, as hot accounts do.
//!
//! The cumulative weights are tabulated once (`n` ≤ [`RANKS_MAX`], 8 bytes each) and a draw is
//! one uniform number and a binary search: exact for any exponent, and cheap enough to run per
//! request. Probabilities are `f64`; they pick an account, they never touch an amount.

use rand::Rng;

/// Most ranks a sampler tabulates (8 MiB of cumulative weights).
pub const RANKS_MAX: usize = 1_000_000;

/// Largest accepted exponent: beyond it virtually every draw is rank 1 anyway.
pub const EXPONENT_MAX: f64 = 10.0;

/// Why a sampler cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ZipfError {
    /// `n` is zero or above [`RANKS_MAX`].
    #[error("rank count must be within 1..={RANKS_MAX}, got {0}")]
    Ranks(usize),
    /// The exponent is not finite, not positive, or above [`EXPONENT_MAX`].
    #[error("zipf exponent must be > 0 and <= {EXPONENT_MAX}, got {0}")]
    Exponent(f64),
}

/// Draws 0-based rank indexes (`0` is the hottest).
#[derive(Debug, Clone)]
pub struct Zipf {
    /// `cumulative[i]` = sum of the weights of ranks `0..=i`; strictly increasing.
    cumulative: Vec<f64>,
}

impl Zipf {
    /// A sampler over `n` ranks with the given exponent.
    pub fn new(n: usize, exponent: f64) -> Result<Zipf, ZipfError> {
        if n == 0 || n > RANKS_MAX {
            return Err(ZipfError::Ranks(n));
        }
        if !exponent.is_finite() || exponent <= 0.0 || exponent > EXPONENT_MAX {
            return Err(ZipfError::Exponent(exponent));
        }
        let mut cumulative = Vec::with_capacity(n);
        let mut total = 0.0_f64;
        for rank in 1..=n {
            total += (rank as f64).powf(-exponent);
            cumulative.push(total);
        }
        Ok(Zipf { cumulative })
    }

    /// How many ranks the sampler draws from.
    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    /// Always false: a sampler has at least one rank.
    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }

    /// The probability of 0-based rank `index`.
    pub fn probability(&self, index: usize) -> f64 {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let below = if index == 0 {
            0.0
        } else {
            self.cumulative[index - 1]
        };
        (self.cumulative[index] - below) / total
    }

    /// Draws one 0-based rank index, always `< len()`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let target = rng.random::<f64>() * total;
        // The first rank whose cumulative weight exceeds the target; `min` guards the
        // (rounding) case of a target equal to the total.
        let index = self.cumulative.partition_point(|&c| c <= target);
        let index = index.min(self.cumulative.len() - 1);
        debug_assert!(index < self.cumulative.len());
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn histogram(zipf: &Zipf, draws: usize, seed: u64) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut counts = vec![0; zipf.len()];
        for _ in 0..draws {
            counts[zipf.sample(&mut rng)] += 1;
        }
        counts
    }

    #[test]
    fn every_draw_is_a_valid_rank_index() {
        let zipf = Zipf::new(7, 1.3).unwrap();
        let counts = histogram(&zipf, 10_000, 1);
        assert_eq!(counts.len(), 7);
        assert_eq!(counts.iter().sum::<usize>(), 10_000);
    }

    #[test]
    fn with_exponent_one_the_hottest_account_is_drawn_about_twice_as_often_as_the_second() {
        let zipf = Zipf::new(1_000, 1.0).unwrap();
        let counts = histogram(&zipf, 200_000, 7);
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((1.8..2.2).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn observed_shares_match_the_probabilities() {
        let zipf = Zipf::new(50, 0.8).unwrap();
        let draws = 300_000;
        let counts = histogram(&zipf, draws, 42);
        for index in [0, 1, 5, 49] {
            let expected = zipf.probability(index) * draws as f64;
            let observed = counts[index] as f64;
            // Within 5 standard deviations of a binomial count.
            let sigma = (expected * (1.0 - zipf.probability(index))).sqrt();
            assert!(
                (observed - expected).abs() < 5.0 * sigma + 1.0,
                "rank {index}: observed {observed}, expected {expected}"
            );
        }
    }

    #[test]
    fn a_larger_exponent_concentrates_more_traffic_on_the_hottest_account() {
        let mild = Zipf::new(100, 0.5).unwrap();
        let steep = Zipf::new(100, 2.0).unwrap();
        assert!(steep.probability(0) > mild.probability(0));
        assert!(steep.probability(0) > 0.5);
    }

    #[test]
    fn probabilities_sum_to_one() {
        let zipf = Zipf::new(1_000, 1.1).unwrap();
        let sum: f64 = (0..zipf.len()).map(|i| zipf.probability(i)).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn the_same_seed_draws_the_same_sequence() {
        let zipf = Zipf::new(100, 1.2).unwrap();
        assert_eq!(histogram(&zipf, 1_000, 3), histogram(&zipf, 1_000, 3));
    }

    #[test]
    fn a_zero_rank_count_or_a_bad_exponent_is_refused() {
        assert_eq!(Zipf::new(0, 1.0).unwrap_err(), ZipfError::Ranks(0));
        assert!(Zipf::new(RANKS_MAX + 1, 1.0).is_err());
        assert!(Zipf::new(10, 0.0).is_err());
        assert!(Zipf::new(10, f64::NAN).is_err());
        assert!(Zipf::new(10, 11.0).is_err());
    }
}

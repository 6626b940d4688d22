//! The distributions of synthetic traffic: [`Zipf`] popularity over a catalogue, and the [`Mix`] of
//! event kinds (`rank=2,crawl=1,click=7`).

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use sluice_schemas::EventKind;

use super::SynthError;

/// Zipf distribution over `n` items: item `i` (0-based, so item 0 is rank 1) is drawn with probability
/// proportional to `1 / (i + 1)^exponent`. A precomputed CDF and a binary search make each draw
/// `O(log n)`. (Hand-rolled because `rand_distr` is not a workspace dependency.)
#[derive(Debug, Clone, PartialEq)]
pub struct Zipf {
    /// `cdf[i]` = P(draw <= i); the last entry is exactly 1.
    pub(super) cdf: Vec<f64>,
}

impl Zipf {
    /// A Zipf sampler over `n >= 1` items; `exponent` 0 is uniform, larger is more skewed.
    pub fn new(n: usize, exponent: f64) -> Result<Zipf, SynthError> {
        if n == 0 {
            return Err(SynthError::Empty("zipf item count"));
        }
        if !exponent.is_finite() || exponent < 0.0 {
            return Err(SynthError::BadExponent(exponent));
        }
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for rank in 1..=n {
            total += (rank as f64).powf(-exponent);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Ok(Zipf { cdf })
    }

    /// How many items the sampler draws from.
    pub fn items(&self) -> usize {
        self.cdf.len()
    }

    /// Draws an item index in `0..items()`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let u: f64 = rng.random(); // [0, 1)
        let index = self.cdf.partition_point(|&c| c <= u);
        // Guards against rounding leaving the last entry a hair below u (it is set to exactly 1).
        index.min(self.cdf.len() - 1)
    }
}

/// Relative weights of the three event kinds, e.g. `rank=2,crawl=1,click=7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub rank: u32,
    pub crawl: u32,
    pub click: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            rank: 2,
            crawl: 1,
            click: 7,
        }
    }
}

impl Mix {
    pub(super) fn total(&self) -> u64 {
        u64::from(self.rank) + u64::from(self.crawl) + u64::from(self.click)
    }

    /// Draws a kind with probability proportional to its weight (the total must be positive).
    pub(super) fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> EventKind {
        let r = rng.random_range(0..self.total().max(1));
        if r < u64::from(self.rank) {
            EventKind::Rank
        } else if r < u64::from(self.rank) + u64::from(self.crawl) {
            EventKind::Crawl
        } else {
            EventKind::Click
        }
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rank={},crawl={},click={}",
            self.rank, self.crawl, self.click
        )
    }
}

/// Why a `--mix` string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    #[error("empty mix; expected key=weight pairs such as rank=2,crawl=1,click=7")]
    Empty,
    #[error("{0:?} is not key=weight; expected e.g. rank=2,crawl=1,click=7 (accepted keys: rank, crawl, click)")]
    NotAPair(String),
    #[error("unknown key {0:?} in mix; accepted keys: rank, crawl, click")]
    UnknownKey(String),
    #[error("weight {value:?} of {key} is not a non-negative integer")]
    BadWeight { key: String, value: String },
    #[error("key {0} appears twice in mix")]
    Duplicate(String),
    #[error("all mix weights are zero; at least one of rank, crawl, click must be positive")]
    AllZero,
}

impl FromStr for Mix {
    type Err = MixError;

    /// Parses `key=weight` pairs separated by commas; absent keys weigh 0.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(MixError::Empty);
        }
        let mut weights: [Option<u32>; 3] = [None; 3];
        for pair in s.split(',') {
            let pair = pair.trim();
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| MixError::NotAPair(pair.to_owned()))?;
            let (key, value) = (key.trim(), value.trim());
            let slot = match key {
                "rank" => 0,
                "crawl" => 1,
                "click" => 2,
                other => return Err(MixError::UnknownKey(other.to_owned())),
            };
            let weight = value.parse::<u32>().map_err(|_| MixError::BadWeight {
                key: key.to_owned(),
                value: value.to_owned(),
            })?;
            if weights[slot].replace(weight).is_some() {
                return Err(MixError::Duplicate(key.to_owned()));
            }
        }
        let [rank, crawl, click] = weights.map(|w| w.unwrap_or(0));
        let mix = Mix { rank, crawl, click };
        if mix.total() == 0 {
            return Err(MixError::AllZero);
        }
        Ok(mix)
    }
}

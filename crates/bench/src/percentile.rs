//! Percentiles of a phase's samples (milliseconds, microseconds: any unit).
//!
//! Owns: [`sorted`] and [`percentile`] (nearest rank). Must never: interpolate, or panic on an
//! empty sample set (that is NaN, printed as such).

/// The `p` (0..=1) percentile of `sorted` samples: the nearest rank; NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// `v`, sorted ascending (`f64::total_cmp`).
pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

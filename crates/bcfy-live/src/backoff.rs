//! Delays: the jittered poll interval and the exponential backoff after failures.

use std::time::Duration;

use rand::Rng;

/// `base` scaled by a uniform factor in `[1 - ratio, 1 + ratio]`.
///
/// A ratio of zero (or a non-finite one) returns `base` unchanged, which is what makes a test's
/// expected delays exact.
pub(crate) fn jittered<R: Rng + ?Sized>(base: Duration, ratio: f64, rng: &mut R) -> Duration {
    if !(ratio.is_finite() && ratio > 0.0) {
        return base;
    }
    let ratio = ratio.min(1.0);
    let factor = 1.0 + rng.random_range(-ratio..=ratio);
    Duration::from_secs_f64((base.as_secs_f64() * factor).max(0.0))
}

/// Exponential backoff: `initial * 2^(attempt - 1)`, capped at `max`, then jittered and capped
/// again so no wait ever exceeds `max`.
pub(crate) fn backoff_delay<R: Rng + ?Sized>(
    attempt: u32,
    initial: Duration,
    max: Duration,
    jitter_ratio: f64,
    rng: &mut R,
) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let base = initial.saturating_mul(1u32 << exp.min(31)).min(max);
    jittered(base, jitter_ratio, rng).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::SmallRng};

    #[test]
    fn doubles_up_to_the_cap_without_jitter() {
        let mut rng = SmallRng::seed_from_u64(1);
        let got: Vec<f64> = (1..=7)
            .map(|a| {
                backoff_delay(
                    a,
                    Duration::from_secs(1),
                    Duration::from_secs(30),
                    0.0,
                    &mut rng,
                )
                .as_secs_f64()
            })
            .collect();
        assert_eq!(got, vec![1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]);
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let mut rng = SmallRng::seed_from_u64(1);
        let d = backoff_delay(
            u32::MAX,
            Duration::from_secs(1),
            Duration::from_secs(30),
            0.0,
            &mut rng,
        );
        assert_eq!(d, Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_in_bounds_and_is_seeded() {
        let base = Duration::from_secs(2);
        let mut a = SmallRng::seed_from_u64(42);
        let mut b = SmallRng::seed_from_u64(42);
        let mut distinct = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let x = jittered(base, 0.1, &mut a);
            assert_eq!(x, jittered(base, 0.1, &mut b));
            assert!(
                x >= Duration::from_millis(1800) && x <= Duration::from_millis(2200),
                "{x:?}"
            );
            distinct.insert(x);
        }
        assert!(distinct.len() > 100, "jitter should vary");
    }
}

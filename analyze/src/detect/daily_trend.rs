//! `daily_trend`: very slow leaks (a few goroutines an hour) under a daily traffic pattern,
//! from evidence accumulated over days.
//!
//! **The statistic.** For a pod life at least `WINDOW_S` + 24 h old, at time t:
//! `D = m(t-W, t) - m(t-W-24h, t-24h)`, the difference between the mean of the last `W` = 12
//! hours and of the same hours yesterday, both of the series' running median over `SPIKE_MIN`
//! = 41 minutes (spikes and bursts of up to 20 minutes vanish from it, whatever their height;
//! the median's window is centred, so the windows end `SPIKE_MIN`/2 minutes before t: it reads
//! nothing after t). Whatever repeats daily (the traffic wave, a nightly batch) is in
//! both windows and cancels; a leak of r goroutines a second that began at o adds
//! `r·(t - o - W/2)` once t ≥ o + W. It fires when
//! `D ≥ θ = max(Z·1.25·σ·√(1/n₁ + 1/n₂), MIN_SHARE·level, 3)`, σ being the noise per minute
//! (robust, from the first differences: `pods::noise_sigma`), n₁, n₂ the minutes in the
//! windows, 1.25 the running median's loss of efficiency (√(π/2)), level yesterday's mean.
//!
//! **The delay bound.** A leak of rate r is found at most `max(W, W/2 + θ/r)` after its onset,
//! plus the 20 minutes the median's window lags, one evaluation step and the `sustain_evals`
//! evaluations a level needs: it depends on
//! the rate, the noise and the level only (the daily pattern cancels whatever its shape).
//! With W = 12 h, Z = 5: 2 goroutines an hour on a pod of 2,000 with 4 % noise (σ = 80,
//! θ = max(5·1.25·80·√(2/720), 20) = 26) is found within 6 h + 13 h = 19 h; 5 an hour on 500
//! with 2 % noise (σ = 10, θ = 5) within 12 h; the `MIN_SHARE` floor (1 % of the level per day)
//! bounds what it can see at all: r·24 h must exceed it.
//!
//! **Limits.** Only the daily pattern cancels: a weekly one (weekdays vs the weekend) or organic
//! growth of traffic faster than 1 % a day looks like a leak; σ assumes independent minutes
//! (correlated noise is larger than σ·√(1/n) says). A pod life must be 36 hours old: lives
//! shorter are the `lives` detector's.

use futures::future::BoxFuture;

use super::pods::{median, noise_sigma};
use super::{Detector, DetectorKind, Finding, Inputs, squash};
use crate::engine::AnalyzeConfig;
use crate::error::Result;

pub struct DailyTrend;

/// The window compared with the same hours yesterday.
pub const WINDOW_S: i64 = 12 * 3_600;
const DAY_S: i64 = 86_400;
pub const Z: f64 = 5.0;
/// The least difference, as a share of yesterday's level.
pub const MIN_SHARE: f64 = 0.01;
const MIN_ABS: f64 = 3.0;
/// The running median's window, minutes (odd).
pub const SPIKE_MIN: usize = 41;

impl Detector for DailyTrend {
    fn kind(&self) -> DetectorKind {
        DetectorKind::DailyTrend
    }

    fn series_history_s(&self, _cfg: &AnalyzeConfig) -> Option<i64> {
        Some(DAY_S + WINDOW_S)
    }

    /// The statistic cancels the daily pattern itself.
    fn drops_daily_pattern(&self) -> bool {
        false
    }

    fn in_product_score(&self) -> bool {
        true
    }

    fn findings<'a>(&'a self, input: &'a Inputs<'a>) -> BoxFuture<'a, Result<Vec<Finding>>> {
        Box::pin(async move { Ok(findings(input)) })
    }
}

/// The running median of `vs` over `SPIKE_MIN` samples, centred (shorter at the ends).
#[cfg(test)]
fn running_median(vs: &[f64]) -> Vec<f64> {
    running_median_within(vs, 0..vs.len())
}

/// [`running_median`] at the indexes of `within` only (the windows read all of `vs`); NaN
/// elsewhere. A step evaluating the last minutes reads a day and a half of its 3 days.
fn running_median_within(vs: &[f64], within: std::ops::Range<usize>) -> Vec<f64> {
    let h = SPIKE_MIN / 2;
    let mut buf = Vec::with_capacity(SPIKE_MIN);
    (0..vs.len())
        .map(|i| {
            if !within.contains(&i) {
                return f64::NAN;
            }
            buf.clear();
            buf.extend_from_slice(&vs[i.saturating_sub(h)..(i + h + 1).min(vs.len())]);
            median(&mut buf).unwrap_or(vs[i])
        })
        .collect()
}

/// (D, θ, today's mean, yesterday's mean) of a life's minutes as of `t` (`smooth` its running
/// median, `vs` its values); None when the life does not cover both windows (90 % of their
/// minutes).
pub(crate) fn day_over_day(
    ts: &[i64],
    vs: &[f64],
    smooth: &[f64],
    t: i64,
) -> Option<(f64, f64, f64, f64)> {
    // The median's window is centred: its last full value is SPIKE_MIN/2 minutes before t.
    let t = t - (SPIKE_MIN / 2) as i64 * 60;
    let range = |from: i64, to: i64| {
        (
            ts.partition_point(|x| *x <= from),
            ts.partition_point(|x| *x <= to),
        )
    };
    let (a0, a1) = range(t - DAY_S - WINDOW_S, t - DAY_S);
    let (b0, b1) = range(t - WINDOW_S, t);
    let need = (0.9 * WINDOW_S as f64 / 60.0) as usize;
    // Both windows whole: the life began before yesterday's and goes on at today's end (a pod
    // gone, or not scraped, since is not judged on part of a window).
    if a1 - a0 < need
        || b1 - b0 < need
        || ts.first().is_none_or(|f| *f > t - DAY_S - WINDOW_S)
        || b1.checked_sub(1).is_none_or(|i| ts[i] < t - 120)
    {
        return None;
    }
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let yesterday = mean(&smooth[a0..a1]);
    let today = mean(&smooth[b0..b1]);
    let sigma = noise_sigma(&vs[b0..b1]);
    let (n1, n2) = ((a1 - a0) as f64, (b1 - b0) as f64);
    let theta = (Z * 1.25 * sigma * (1.0 / n1 + 1.0 / n2).sqrt())
        .max(MIN_SHARE * yesterday)
        .max(MIN_ABS);
    Some((today - yesterday, theta, today, yesterday))
}

fn findings(input: &Inputs<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for (scope, s) in input.series {
        if scope.pod.is_none() {
            continue;
        }
        // Each life's running median, once (a centred window: read only up to t by
        // `day_over_day`); lives are split at the restarts.
        let mut cuts: Vec<usize> = s
            .resets_s
            .iter()
            .map(|r| s.ts_s.partition_point(|x| x < r))
            .collect();
        cuts.push(s.ts_s.len());
        // `day_over_day` reads the smoothed minutes of [t - SPIKE_MIN/2 min - a day - the
        // window, t] for each evaluation t: only those are computed.
        let (Some(first), Some(last)) = (input.eval_times.first(), input.eval_times.last()) else {
            continue;
        };
        let need_from = first - (SPIKE_MIN / 2) as i64 * 60 - DAY_S - WINDOW_S;
        let need =
            s.ts_s.partition_point(|x| *x <= need_from)..s.ts_s.partition_point(|x| x <= last);
        let mut smooth = Vec::with_capacity(s.values.len());
        let mut from = 0;
        for &to in &cuts {
            if to > from {
                let within = need.start.max(from) - from..need.end.min(to).max(from) - from;
                smooth.extend(running_median_within(&s.values[from..to], within));
            }
            from = from.max(to);
        }
        for &t in input.eval_times {
            // The current life only: from the last restart at or before t.
            let from = s
                .resets_s
                .iter()
                .rev()
                .find(|r| **r <= t)
                .map_or(0, |r| s.ts_s.partition_point(|x| x < r));
            let Some((d, theta, today, yesterday)) =
                day_over_day(&s.ts_s[from..], &s.values[from..], &smooth[from..], t)
            else {
                continue;
            };
            out.push(Finding {
                scope: scope.clone(),
                detector: DetectorKind::DailyTrend,
                eval_s: t,
                fired: d >= theta,
                value: today,
                baseline: Some(yesterday),
                growth_per_s: d / DAY_S as f64,
                score: squash(d / theta),
                reason: format!(
                    "the last {} h average {today:.0}, {d:+.1} on the same hours yesterday (threshold {theta:.1}: the daily pattern cancels)",
                    WINDOW_S / 3_600
                ),
                onset_s: None,
                sustained: false,
                window_s: DAY_S + WINDOW_S,
                max_age_s: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three days of a ±10 % daily wave on 1,000 with 3 % noise; a leak of `per_hour` from
    /// day 1.5 on. Returns the first hour (from the leak's onset) at which D ≥ θ.
    fn first_hit(per_hour: f64) -> Option<i64> {
        let mut rng = crate::rng::SplitMix64::new(11);
        let onset = DAY_S * 3 / 2;
        let ts: Vec<i64> = (0..4 * 1_440).map(|m| m * 60).collect();
        let vs: Vec<f64> = ts
            .iter()
            .map(|t| {
                let wave = 1.0 + 0.1 * (*t as f64 / DAY_S as f64 * std::f64::consts::TAU).sin();
                1_000.0 * wave * (1.0 + 0.03 * rng.normal())
                    + per_hour * ((t - onset).max(0) as f64 / 3_600.0)
            })
            .collect();
        let smooth = running_median(&vs);
        (onset..4 * DAY_S).step_by(300).find_map(|t| {
            let (d, theta, ..) = day_over_day(&ts, &vs, &smooth, t)?;
            (d >= theta).then_some((t - onset) / 3_600)
        })
    }

    #[test]
    fn a_few_goroutines_an_hour_are_found_within_the_bound_and_the_daily_wave_is_not() {
        assert_eq!(first_hit(0.0), None);
        // A life that ended (a pod replaced by a deploy) is not judged on part of a window.
        let ts: Vec<i64> = (0..2 * 1_440).map(|m| m * 60).collect();
        let vs: Vec<f64> = ts
            .iter()
            .map(|t| 1_000.0 + 100.0 * (*t as f64 / DAY_S as f64 * std::f64::consts::TAU).sin())
            .collect();
        let smooth = running_median(&vs);
        assert!(day_over_day(&ts, &vs, &smooth, 2 * DAY_S - 60).is_some());
        assert!(day_over_day(&ts, &vs, &smooth, 2 * DAY_S + 3_600).is_none());
        // A spike of 20 minutes is gone from the running median.
        let mut v = vec![10.0; 200];
        v[100..120].iter_mut().for_each(|x| *x = 1_000.0);
        assert!(running_median(&v).iter().all(|x| *x == 10.0));
        // σ = 30, θ = max(5·1.25·30·√(2/720), 10) = 10: within 6 + 10/4 = 8.5 h at 4/h (D grows 4/h past 6 h).
        let h = first_hit(4.0).expect("found");
        assert!(h <= 9, "{h}");
        // 1/h: 24/day, at the 1 % floor: within 6 + 10 = 16 h, and the noise.
        let h = first_hit(1.0).expect("found");
        assert!(h <= 18, "{h}");
    }
}

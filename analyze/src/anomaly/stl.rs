//! Robust STL (Cleveland et al. 1990): the `stlrs` crate's port of the original Fortran with its
//! hot loop rewritten (`stl_loess.rs`, why there), every parameter set explicitly to what
//! `statsmodels.tsa.seasonal.STL(robust=True)` uses, so that the two agree (checked by
//! `analyze/tests/anomaly_pyref.rs`; and against `stlrs` itself below). `stlrs`' own defaults
//! differ from statsmodels' (seasonal window, degrees, jumps, loop counts), hence
//! [`StlSettings::resolve`].
//!
//! With fewer than two full periods STL has no seasonal component to estimate (and `stlrs`
//! refuses): [`decompose`] then returns a robust trend only — a running median over
//! `trend_only_window` points — and the residual around it.

/// The STL knobs a caller chooses; the rest follows statsmodels' rules.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StlParams {
    /// Seasonal smoother length (odd, ≥ 3; statsmodels default 7).
    pub seasonal: usize,
    /// Degree of the seasonal LOESS: 0 (a weighted mean of the same phase over the days around)
    /// or 1 (statsmodels' default, lets each phase drift linearly across days). The detector uses
    /// 0: with degree 1 a leak of the last few hours is extrapolated into the seasonal component
    /// of those hours and partly hidden.
    pub seasonal_deg: i32,
    /// Robustness iterations (statsmodels `robust=True`: 15 outer, 2 inner loops).
    pub robust: bool,
    /// Evaluate the trend and low-pass LOESS every `ceil(len / 10)` points and interpolate (the
    /// original Fortran's and `stlrs`' default; statsmodels takes them as `trend_jump` /
    /// `low_pass_jump`). Off = every point (statsmodels' default, ~100x slower on a daily period
    /// of 1,440 minutes).
    pub fast_jumps: bool,
    /// Window (points, odd) of the running-median trend used when there is no seasonal component.
    pub trend_only_window: usize,
}

impl Default for StlParams {
    fn default() -> Self {
        Self {
            seasonal: 7,
            seasonal_deg: 0,
            robust: true,
            fast_jumps: true,
            trend_only_window: 13,
        }
    }
}

/// Fully resolved STL settings, in statsmodels' vocabulary (what the Python reference is called
/// with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StlSettings {
    pub period: usize,
    pub seasonal: usize,
    pub trend: usize,
    pub low_pass: usize,
    pub seasonal_deg: i32,
    pub seasonal_jump: usize,
    pub trend_jump: usize,
    pub low_pass_jump: usize,
    pub inner_iter: usize,
    pub outer_iter: usize,
}

impl StlSettings {
    /// statsmodels' rules: `trend` = smallest odd integer > 1.5 period / (1 - 1.5 / seasonal),
    /// `low_pass` = smallest odd integer > period, trend and low-pass degrees 1, inner/outer 2/15 when robust, 5/0
    /// when not.
    pub fn resolve(period: usize, p: &StlParams) -> Self {
        let mut seasonal = p.seasonal.max(3);
        if seasonal.is_multiple_of(2) {
            seasonal += 1;
        }
        let mut trend = (1.5 * period as f64 / (1.0 - 1.5 / seasonal as f64)).ceil() as usize;
        if trend.is_multiple_of(2) {
            trend += 1;
        }
        let trend = trend.max(3);
        let mut low_pass = period + 1;
        if low_pass.is_multiple_of(2) {
            low_pass += 1;
        }
        let jump = |len: usize| {
            if p.fast_jumps {
                len.div_ceil(10).max(1)
            } else {
                1
            }
        };
        Self {
            period,
            seasonal,
            trend,
            low_pass,
            seasonal_deg: p.seasonal_deg.clamp(0, 1),
            seasonal_jump: 1,
            trend_jump: jump(trend),
            low_pass_jump: jump(low_pass),
            inner_iter: if p.robust { 2 } else { 5 },
            outer_iter: if p.robust { 15 } else { 0 },
        }
    }
}

/// Trend + seasonal + residual of a regular series.
#[derive(Debug, Clone, PartialEq)]
pub struct Decomposition {
    pub trend: Vec<f64>,
    /// All zeros when `has_seasonal` is false.
    pub seasonal: Vec<f64>,
    pub resid: Vec<f64>,
    pub has_seasonal: bool,
}

/// Decomposes a regular, finite series. `period` in points (e.g. 288 for a day of 5-minute
/// points). Returns `None` for an empty series or one with a non-finite value (`stlrs` would
/// panic on NaN).
pub fn decompose(y: &[f64], period: usize, p: &StlParams) -> Option<Decomposition> {
    if y.is_empty() || y.iter().any(|v| !v.is_finite()) {
        return None;
    }
    if period >= 2 && y.len() >= 2 * period {
        let s = StlSettings::resolve(period, p);
        let n = y.len();
        let mut seasonal = vec![0.0; n];
        let mut trend = vec![0.0; n];
        let mut weights = vec![0.0; n];
        let mut work = vec![0.0; (n + 2 * period) * 5];
        super::stl_loess::stl(
            y,
            period,
            s.seasonal,
            s.trend,
            s.low_pass,
            s.seasonal_deg,
            1,
            1,
            s.seasonal_jump,
            s.trend_jump,
            s.low_pass_jump,
            s.inner_iter,
            s.outer_iter,
            &mut weights,
            &mut seasonal,
            &mut trend,
            &mut work,
        );
        if trend.iter().chain(&seasonal).all(|v| v.is_finite()) {
            let resid = y
                .iter()
                .zip(&trend)
                .zip(&seasonal)
                .map(|((v, t), s)| v - t - s)
                .collect();
            return Some(Decomposition {
                trend,
                seasonal,
                resid,
                has_seasonal: true,
            });
        }
    }
    let trend = running_median(y, p.trend_only_window.max(1) | 1);
    let resid = y.iter().zip(&trend).map(|(a, b)| a - b).collect();
    Some(Decomposition {
        trend,
        seasonal: vec![0.0; y.len()],
        resid,
        has_seasonal: false,
    })
}

/// Centred running median, the window shrinking symmetrically at the edges.
pub fn running_median(y: &[f64], window: usize) -> Vec<f64> {
    let half = window / 2;
    let mut buf = Vec::with_capacity(window);
    (0..y.len())
        .map(|i| {
            let h = half.min(i).min(y.len() - 1 - i);
            buf.clear();
            buf.extend_from_slice(&y[i - h..=i + h]);
            median_in_place(&mut buf)
        })
        .collect()
}

/// Median of a non-empty slice of finite values (reorders it); 0 for an empty one.
pub fn median_in_place(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if v.len() % 2 == 1 {
        m
    } else {
        let lower = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + m) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anomaly_stl_settings_follow_statsmodels_rules() {
        let s = StlSettings::resolve(288, &StlParams::default());
        // statsmodels: trend = ceil(1.5 * 288 / (1 - 1.5 / 7)) = 550 -> 551; low_pass = 289.
        assert_eq!((s.seasonal, s.trend, s.low_pass), (7, 551, 289));
        assert_eq!(
            (s.trend_jump, s.low_pass_jump, s.seasonal_jump),
            (56, 29, 1)
        );
        assert_eq!((s.inner_iter, s.outer_iter), (2, 15));
    }

    #[test]
    fn anomaly_stl_recovers_a_daily_pattern_and_a_trend() {
        let period = 48;
        let y: Vec<f64> = (0..period * 4)
            .map(|i| {
                let t = i as f64;
                100.0 + 0.5 * t + 20.0 * (2.0 * std::f64::consts::PI * t / period as f64).sin()
            })
            .collect();
        let d = decompose(&y, period, &StlParams::default()).expect("decomposition");
        assert!(d.has_seasonal);
        for i in period..3 * period {
            let t = i as f64;
            let want_s = 20.0 * (2.0 * std::f64::consts::PI * t / period as f64).sin();
            assert!((d.seasonal[i] - want_s).abs() < 1.5, "seasonal at {i}");
            assert!((d.trend[i] - (100.0 + 0.5 * t)).abs() < 1.5, "trend at {i}");
        }
    }

    #[test]
    fn anomaly_stl_port_matches_stlrs() {
        let mut state = 7u64;
        let mut noise = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for (period, days, deg, jumps, robust) in [
            (48, 4, 0, true, true),
            (48, 3, 1, false, true),
            (288, 3, 0, true, true),
            (288, 4, 1, true, false),
        ] {
            let y: Vec<f64> = (0..period * days)
                .map(|i| {
                    let t = i as f64;
                    let spike = if i % 97 == 0 { 300.0 } else { 0.0 };
                    200.0
                        + 0.3 * t
                        + 50.0 * (2.0 * std::f64::consts::PI * t / period as f64).sin()
                        + 20.0 * noise()
                        + spike
                })
                .collect();
            let p = StlParams {
                seasonal_deg: deg,
                fast_jumps: jumps,
                robust,
                ..StlParams::default()
            };
            let ours = decompose(&y, period, &p).expect("decomposition");
            let s = StlSettings::resolve(period, &p);
            let reference = stlrs::params()
                .seasonal_length(s.seasonal)
                .trend_length(s.trend)
                .low_pass_length(s.low_pass)
                .seasonal_degree(s.seasonal_deg)
                .trend_degree(1)
                .low_pass_degree(1)
                .seasonal_jump(s.seasonal_jump)
                .trend_jump(s.trend_jump)
                .low_pass_jump(s.low_pass_jump)
                .inner_loops(s.inner_iter)
                .outer_loops(s.outer_iter)
                .robust(robust)
                .fit(&y, period)
                .expect("stlrs");
            let max_diff = |a: &[f64], b: &[f64]| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max)
            };
            let dt = max_diff(&ours.trend, reference.trend());
            let ds = max_diff(&ours.seasonal, reference.seasonal());
            assert!(
                dt < 1e-8 && ds < 1e-8,
                "period {period} deg {deg}: {dt} {ds}"
            );
        }
    }

    #[test]
    fn anomaly_stl_short_or_bad_series_fall_back_or_refuse() {
        let y: Vec<f64> = (0..30).map(|i| i as f64).collect();
        let d = decompose(&y, 48, &StlParams::default()).expect("trend only");
        assert!(!d.has_seasonal);
        assert!((d.trend[15] - 15.0).abs() < 1e-9);
        assert!(decompose(&[], 48, &StlParams::default()).is_none());
        assert!(decompose(&[1.0, f64::NAN], 48, &StlParams::default()).is_none());
        let mut v = vec![3.0, 1.0, 2.0, 4.0];
        assert_eq!(median_in_place(&mut v), 2.5);
    }
}

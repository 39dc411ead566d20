//! What the detectors that compare pods share ([`super::lives`], [`super::siblings`],
//! [`super::daily_trend`]): a pod's version from its name ([`version_of`]), a workload's pod
//! lives from the minute series ([`lives_by_workload`]) or, for lives too short for minute
//! means, from every sample ingest took ([`sample_series`]), small least squares ([`solve`]),
//! a median and robust noise ([`noise_sigma`]).

// Small dense matrices: index loops read as the algebra they implement.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;

use datafusion::prelude::SessionContext;

use crate::engine::Scope;
use crate::engine::series::Series;
use crate::error::Result;

/// Kubernetes' alphabet for generated names (`k8s.io/apimachinery` `rand.SafeEncodeString`).
const K8S_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

fn k8s_generated(s: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&s.len()) && s.chars().all(|c| K8S_ALPHABET.contains(c))
}

/// The version a pod runs, from its name: a Deployment's pods are named
/// `{deployment}-{pod-template-hash}-{5 generated}`, and the pod-template hash changes with
/// every change of the pod template (image, env, resources): a new version. None for names of
/// any other shape (StatefulSet `web-0`, DaemonSet `agent-x7k2p`, bare pods, other owners).
pub fn version_of<'a>(workload: &str, pod: &'a str) -> Option<&'a str> {
    let rest = pod.strip_prefix(workload)?.strip_prefix('-')?;
    let (hash, suffix) = rest.split_once('-')?;
    (k8s_generated(hash, 6..=10) && k8s_generated(suffix, 5..=5)).then_some(hash)
}

/// One life of a pod: its minutes from a start (a new pod, or a restart) to the next restart.
#[derive(Debug, Clone)]
pub struct Life<'a> {
    pub scope: &'a Scope,
    pub version: Option<&'a str>,
    /// The first minute seen; the life's start when it began after the series did.
    pub start_s: i64,
    pub ts_s: &'a [i64],
    pub values: &'a [f64],
}

impl Life<'_> {
    pub fn end_s(&self) -> i64 {
        self.ts_s.last().copied().unwrap_or(self.start_s)
    }
    /// The samples at or before `t` (their count).
    pub fn upto(&self, t: i64) -> usize {
        self.ts_s.partition_point(|x| *x <= t)
    }
}

/// Every pod's lives (split at its restarts), per (namespace, workload); pods without a
/// workload are left out.
pub fn lives_by_workload(
    series: &BTreeMap<Scope, Series>,
) -> BTreeMap<(String, String), Vec<Life<'_>>> {
    let mut out: BTreeMap<(String, String), Vec<Life<'_>>> = BTreeMap::new();
    for (scope, s) in series {
        let (Some(pod), Some(workload)) = (&scope.pod, &scope.workload) else {
            continue;
        };
        let version = version_of(workload, pod);
        let mut from = 0;
        let mut cuts: Vec<usize> = s
            .resets_s
            .iter()
            .map(|r| s.ts_s.partition_point(|t| t < r))
            .collect();
        cuts.push(s.ts_s.len());
        for to in cuts {
            if to > from {
                out.entry((scope.namespace.clone(), workload.clone()))
                    .or_default()
                    .push(Life {
                        scope,
                        version,
                        start_s: s.ts_s[from],
                        ts_s: &s.ts_s[from..to],
                        values: &s.values[from..to],
                    });
            }
            from = to;
        }
    }
    out
}

/// Every sample (each ingest pass or scrape, not the minute means of
/// [`crate::engine::series::minute_series`]) of the pods of `workloads` (namespace, workload)
/// in `[from_s, to_s]`, one series per pod with its restarts (a new process start time or
/// container restart count), samples at the same second averaged: for workloads whose pod
/// lives are a few minutes long, where a minute series holds a point or two per life.
pub async fn sample_series(
    ctx: &SessionContext,
    workloads: &[(String, String)],
    from_s: i64,
    to_s: i64,
) -> Result<BTreeMap<Scope, Series>> {
    if workloads.is_empty() {
        return Ok(BTreeMap::new());
    }
    let quote = |s: &str| s.replace('\'', "''");
    let which: Vec<String> = workloads
        .iter()
        .map(|(ns, wl)| {
            format!(
                "(namespace = '{}' AND workload = '{}')",
                quote(ns),
                quote(wl)
            )
        })
        .collect();
    let sql = format!(
        "{} ORDER BY namespace, pod, second",
        crate::engine::series::binned_sql("second", from_s, to_s, &which.join(" OR "))
    );
    let mut series = crate::engine::series::SeriesBuilder::new(false);
    for b in ctx.sql(&sql).await?.collect().await? {
        series.add_rows(&b, "second")?;
    }
    Ok(series.finish())
}

/// Solves the symmetric positive system `a x = b` (Gaussian elimination, partial pivoting);
/// None when it is singular.
pub fn solve<const N: usize>(mut a: [[f64; N]; N], mut b: [f64; N]) -> Option<[f64; N]> {
    for c in 0..N {
        let p = (c..N).max_by(|i, j| a[*i][c].abs().total_cmp(&a[*j][c].abs()))?;
        if a[p][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..N {
            let f = a[r][c] / a[c][c];
            for k in c..N {
                a[r][k] -= f * a[c][k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = [0.0; N];
    for c in (0..N).rev() {
        let s: f64 = (c + 1..N).map(|k| a[c][k] * x[k]).sum();
        x[c] = (b[c] - s) / a[c][c];
    }
    Some(x)
}

/// The noise sigma of a minute series from its first differences (1.4826 MAD / √2): robust to
/// spikes and blind to slow patterns. Assumes independent minutes; correlated noise is larger.
pub fn noise_sigma(values: &[f64]) -> f64 {
    let mut d: Vec<f64> = values.windows(2).map(|w| w[1] - w[0]).collect();
    if d.is_empty() {
        return 0.0;
    }
    let mid = d.len() / 2;
    let m = *d.select_nth_unstable_by(mid, f64::total_cmp).1;
    let mut a: Vec<f64> = d.iter().map(|x| (x - m).abs()).collect();
    let mad = *a.select_nth_unstable_by(mid, f64::total_cmp).1;
    1.4826 * mad / std::f64::consts::SQRT_2
}

/// The median of `values` (reordered).
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mid = values.len() / 2;
    let upper = *values.select_nth_unstable_by(mid, f64::total_cmp).1;
    if values.len() % 2 == 1 {
        return Some(upper);
    }
    let lower = values[..mid].iter().copied().fold(f64::MIN, f64::max);
    Some((lower + upper) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_deployment_pod_names_only() {
        assert_eq!(version_of("web", "web-7d9f8c6b5-x2k4q"), Some("7d9f8c6b5"));
        assert_eq!(
            version_of("web", "web-7d9f8c6b54-x2k4q"),
            Some("7d9f8c6b54")
        );
        // StatefulSet, DaemonSet, another workload's pod, vowels (not generated).
        assert_eq!(version_of("web", "web-0"), None);
        assert_eq!(version_of("web", "web-x2k4q"), None);
        assert_eq!(version_of("web", "webapp-7d9f8c6b5-x2k4q"), None);
        assert_eq!(version_of("web", "web-release-x2k4q"), None);
        assert_eq!(version_of("web", "web-v2-0"), None);
    }

    #[test]
    fn least_squares_and_robust_statistics() {
        // y = 2 + 3x exactly.
        let xs = [0.0, 1.0, 2.0, 3.0];
        let (mut a, mut b) = ([[0.0; 2]; 2], [0.0; 2]);
        for x in xs {
            let row = [1.0, x];
            for i in 0..2 {
                for j in 0..2 {
                    a[i][j] += row[i] * row[j];
                }
                b[i] += row[i] * (2.0 + 3.0 * x);
            }
        }
        let c = solve(a, b).unwrap();
        assert!(
            (c[0] - 2.0).abs() < 1e-9 && (c[1] - 3.0).abs() < 1e-9,
            "{c:?}"
        );
        assert!(solve([[1.0, 2.0], [2.0, 4.0]], [1.0, 2.0]).is_none());
        assert_eq!(median(&mut [3.0, 1.0, 2.0, 10.0]), Some(2.5));
        // Noise of sd 2 around a slow ramp: σ ≈ 2, and a spike hardly moves it.
        let mut rng = crate::rng::SplitMix64::new(5);
        let mut v: Vec<f64> = (0..2_000)
            .map(|i| 100.0 + 0.01 * i as f64 + 2.0 * rng.normal())
            .collect();
        let quiet = noise_sigma(&v);
        assert!((quiet - 2.0).abs() < 0.2, "{quiet}");
        v[1_000] = 10_000.0;
        assert!(
            (noise_sigma(&v) - quiet).abs() < 0.05 * quiet,
            "{}",
            noise_sigma(&v)
        );
    }
}

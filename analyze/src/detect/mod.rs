//! Detectors: one trait ([`Detector`]), one registry ([`REGISTRY`]), one module per detector.
//!
//! ```text
//!  engine::analyze ──Inputs (session, minute series, evaluation times, config)──▶ every enabled
//!  detector in REGISTRY ──▶ Vec<Finding> (one per scope and evaluation; `fired` or not) ──▶
//!  recurring_rise (when the detector asks) ──▶ episodes (engine::episodes)
//! ```
//!
//! | module | detector | reads |
//! |---|---|---|
//! | [`baseline`] | `baseline_rule`: the seed's P95-of-2h x 1.8 for 3 periods | `queries/rule_baseline.sql` |
//! | [`growth`] | `growth_rule`: least-squares slope over the last hour of a pod's life | minute series (`queries/rule_growth.sql`, natively; tested equal) |
//! | [`stl_iforest`] | `stl_iforest`: robust STL + Isolation Forest | minute series, [`crate::anomaly`] |
//! | [`lives`] | `lives`: a workload's pod lives at the same age, pooled (frequent deploys, restarts) | minute series |
//! | [`siblings`] | `siblings`: one pod diverging from its siblings (a canary, one pod of many) | minute series |
//! | [`daily_trend`] | `daily_trend`: the last 12 h against the same hours yesterday (very slow leaks) | minute series |
//!
//! [`pods`] holds what the last three share (versions from pod names, pod lives, least squares).
//! The seed's `baseline_rule` is a reference, not an authority (`Detector::needs_corroboration`):
//! what it alone raises stays L1 unless another detector fired on the scope within the hour or
//! the captures show that what grew stays (`levels`).
//!
//! **Adding a detector**: a variant of [`DetectorKind`] (in `leakhound-schemas`, with its name),
//! a module here implementing [`Detector`], and its line in [`REGISTRY`]. The engine, the CLI's
//! `--detectors` (a value parser over [`DetectorKind`]), the default set and the backtest take
//! it from there; what the engine does around it (minute series history, the daily-pattern
//! check, whose growth its events carry, whether the backtest counts it into the product
//! score) is asked of the trait, not decided by name.

pub mod baseline;
pub mod daily_trend;
pub mod growth;
pub mod lives;
pub mod pods;
pub mod siblings;
pub mod stl_iforest;

use std::collections::BTreeMap;

use datafusion::prelude::SessionContext;
use futures::future::BoxFuture;
pub use leakhound_schemas::kinds::DetectorKind;

use crate::engine::series::Series;
use crate::engine::{AnalyzeConfig, Scope};
use crate::error::Result;

/// One detector's verdict on one scope at one evaluation.
#[derive(Debug, Clone)]
pub struct Finding {
    pub scope: Scope,
    pub detector: DetectorKind,
    pub eval_s: i64,
    pub fired: bool,
    pub value: f64,
    pub baseline: Option<f64>,
    pub growth_per_s: f64,
    pub score: f64,
    pub reason: String,
    /// The detector's own estimate of when the growth began.
    pub onset_s: Option<i64>,
    /// The detector's rule itself demanded persistence for this firing.
    pub sustained: bool,
    /// The span whose rise `recurring_rise` compares with yesterday's: how far back the firing
    /// looked (the growth rule: its fast branch's 10 or 15 minutes, or the hour; STL + IF: the
    /// last hour, its daily component needing two days to learn a new batch).
    pub window_s: i64,
    /// The goroutines the firing is about are at most this old (`lives`: they live as long as
    /// the workload's pod lives): the residence measures whose thresholds it does not reach
    /// cannot say that what grew stays or goes, and the level leaves them out. None: no bound.
    pub max_age_s: Option<i64>,
}

/// What a detector gets for one analysis: the range, the evaluation times (every `step_s`,
/// aligned), the store's session and the minute series the engine loaded (every pod and
/// workload, from the longest history an enabled detector asked for; empty when none did).
pub struct Inputs<'a> {
    pub ctx: &'a SessionContext,
    /// The first evaluation and the range's end (seconds).
    pub from_s: i64,
    pub to_s: i64,
    pub eval_times: &'a [i64],
    pub series: &'a BTreeMap<Scope, Series>,
    /// The first and last minute of the whole fleet's series when `series` holds one group of
    /// it (`engine::groups`); None: `series` is the whole fleet.
    pub span_s: Option<(i64, i64)>,
    /// Where `series` starts: `from_s` less the longest history an enabled detector asked for.
    pub series_from_s: i64,
    pub cfg: &'a AnalyzeConfig,
}

/// A leak detector: findings for every scope at every evaluation of a range.
pub trait Detector: Send + Sync {
    /// Its name: in `--detectors`, in events' `detector`, in the backtest.
    fn kind(&self) -> DetectorKind;

    /// The minute-series history it needs before the first evaluation (`Inputs::series`), or
    /// None when it reads none.
    fn series_history_s(&self, _cfg: &AnalyzeConfig) -> Option<i64> {
        None
    }

    /// Whether a firing whose rise the scope also made at about this time yesterday is dropped
    /// as the daily pattern (`engine::series::recurring_rise` over the finding's `window_s`).
    fn drops_daily_pattern(&self) -> bool {
        true
    }

    /// Whether its findings' `growth_per_s` is its own measure; when not, its events carry the
    /// growth rule's growth of the same scope at the same evaluation.
    fn measures_growth(&self) -> bool {
        true
    }

    /// Whether its firings stay L1 unless another detector (one that needs no corroboration)
    /// fired on the same scope within the hour before, or the captures show that what grew
    /// stays (residence or alive share at danger): a detector known to misfire.
    fn needs_corroboration(&self) -> bool {
        false
    }

    /// Whether the backtest counts its L2/L3 episodes into the product score (`leakhound`: what
    /// the product alerts on). A choice each detector states, never a default.
    fn in_product_score(&self) -> bool;

    /// Its findings over the range.
    fn findings<'a>(&'a self, input: &'a Inputs<'a>) -> BoxFuture<'a, Result<Vec<Finding>>>;
}

/// Every detector, in the order they run. The one place a detector is registered.
pub static REGISTRY: &[&dyn Detector] = &[
    &baseline::BaselineRule,
    &growth::GrowthRule,
    &stl_iforest::StlIforest,
    &lives::Lives,
    &siblings::Siblings,
    &daily_trend::DailyTrend,
];

/// The registered detector of `kind`.
pub fn get(kind: DetectorKind) -> Option<&'static dyn Detector> {
    REGISTRY.iter().copied().find(|d| d.kind() == kind)
}

/// Every registered detector's kind, in registry order (the default `--detectors`).
pub fn all() -> Vec<DetectorKind> {
    REGISTRY.iter().map(|d| d.kind()).collect()
}

/// 0..1 from a ratio to a threshold: 1 - e^-x (0 for none).
pub(crate) fn squash(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        1.0 - (-x).exp()
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_detector_kind_is_registered_once() {
        for k in DetectorKind::ALL {
            assert_eq!(
                REGISTRY.iter().filter(|d| d.kind() == k).count(),
                1,
                "{k} is not registered exactly once in detect::REGISTRY"
            );
        }
        assert_eq!(all(), DetectorKind::ALL);
    }

    #[test]
    fn the_product_score_is_a_choice_per_detector() {
        let product: Vec<DetectorKind> = REGISTRY
            .iter()
            .filter(|d| d.in_product_score())
            .map(|d| d.kind())
            .collect();
        assert_eq!(
            product,
            [
                DetectorKind::GrowthRule,
                DetectorKind::StlIforest,
                DetectorKind::Lives,
                DetectorKind::Siblings,
                DetectorKind::DailyTrend
            ],
            "the product alerts on every detector but the seed's baseline rule"
        );
    }

    /// What lets a live step reuse the previous step's findings (`engine::reuse`): every
    /// detector's findings at an evaluation are the same whether the range starts hours before
    /// it or at it (the series loaded from the same start). Scenario kinds with deploys, a
    /// canary, one pod of many, a daily pattern, with their captures.
    #[cfg(feature = "testkit")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn findings_at_an_evaluation_do_not_depend_on_the_range_start() {
        use crate::backtest::{Evidence, load};
        use crate::engine::series::minute_series;
        let cfg = AnalyzeConfig::default();
        let step = cfg.step_s;
        let mut compared = 0;
        for kind in [
            "fast_leak",
            "frequent_deploy_leak",
            "canary_leak",
            "one_pod_of_many",
            "nightly_batch",
            "deploy_step",
        ] {
            let s = crate::scenarios::generate(kind, 2).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let store = leakhound_ingest::Store::open(dir.path().to_str().unwrap()).unwrap();
            load(&store, &s, Evidence::CountsAndDumps).await.unwrap();
            let ctx = crate::session::session(&store).await.unwrap();
            let mid = s
                .leak
                .as_ref()
                .map_or((s.start_s + s.end_s) / 2, |l| l.onset_s + 3_600);
            let to = mid.div_euclid(step) * step;
            let evals: Vec<i64> = (0..25).map(|i| to - (24 - i) * step).collect();
            let history = REGISTRY
                .iter()
                .filter_map(|d| d.series_history_s(&cfg))
                .max()
                .unwrap();
            let series = minute_series(&ctx, evals[0] - history, to, &cfg.namespace)
                .await
                .unwrap();
            let input = |from: usize| Inputs {
                ctx: &ctx,
                from_s: evals[from],
                to_s: to,
                eval_times: &evals[from..],
                series: &series,
                span_s: None,
                series_from_s: evals[0] - history,
                cfg: &cfg,
            };
            for d in REGISTRY {
                let show = |fs: Vec<Finding>, from: i64| {
                    let mut v: Vec<String> = fs
                        .into_iter()
                        .filter(|f| f.eval_s >= from && f.eval_s % step == 0)
                        .map(|f| format!("{f:?}"))
                        .collect();
                    v.sort();
                    v
                };
                let whole = d.findings(&input(0)).await.unwrap();
                for from in [12, 23, 24] {
                    let part = d.findings(&input(from)).await.unwrap();
                    let (a, b) = (show(whole.clone(), evals[from]), show(part, evals[from]));
                    assert_eq!(a, b, "{kind}: {} from evaluation {from}", d.kind());
                    compared += a.len();
                }
            }
        }
        assert!(compared > 1_000, "{compared} findings compared");
    }
}

//! `growth_rule`: least-squares slope over the last hour of each pod's life, restart-aware, from
//! `queries/rule_growth.sql` (its fast branch fires on growth all along the last 10 or 15
//! minutes at 2x the threshold; see the query's header). Its growth is the one events of
//! detectors that measure none carry. Needs a day and two hours of minute series for the
//! daily-pattern check (`recurring_rise`).

use futures::future::BoxFuture;

use super::{Detector, DetectorKind, Finding, Inputs, squash};
use crate::engine::AnalyzeConfig;
use crate::engine::columns::{bools, f64s, i64s, rfc, run_named, scope_rows, ts_micros};
use crate::error::Result;

pub struct GrowthRule;

impl Detector for GrowthRule {
    fn kind(&self) -> DetectorKind {
        DetectorKind::GrowthRule
    }

    /// Yesterday at this time and the hour before it, for `recurring_rise`.
    fn series_history_s(&self, _cfg: &AnalyzeConfig) -> Option<i64> {
        Some(86_400 + 7_200)
    }

    fn in_product_score(&self) -> bool {
        true
    }

    fn findings<'a>(&'a self, input: &'a Inputs<'a>) -> BoxFuture<'a, Result<Vec<Finding>>> {
        Box::pin(findings(input))
    }
}

async fn findings(input: &Inputs<'_>) -> Result<Vec<Finding>> {
    let cfg = input.cfg;
    let batches = run_named(
        input.ctx,
        "rule_growth",
        &[
            ("from", rfc(input.from_s)),
            ("to", rfc(input.to_s)),
            ("min_per_s", cfg.growth_min_per_s.to_string()),
            ("min_r2", cfg.growth_min_r2.to_string()),
            ("min_coverage", cfg.growth_min_coverage.to_string()),
            ("namespace", cfg.namespace.clone()),
        ],
    )
    .await?;
    let mut out = Vec::new();
    for b in &batches {
        let scopes = scope_rows(b)?;
        let (t, v, low, slope, r2, fired, sustained) = (
            ts_micros(b, "eval_at")?,
            f64s(b, "value")?,
            f64s(b, "hour_low")?,
            f64s(b, "slope_per_s")?,
            f64s(b, "r2")?,
            bools(b, "fired")?,
            bools(b, "sustained")?,
        );
        let (slope_15m, slope_10m, window) = (
            f64s(b, "slope_15m_per_s")?,
            f64s(b, "slope_10m_per_s")?,
            i64s(b, "window_s")?,
        );
        for (i, scope) in scopes.into_iter().enumerate() {
            let window_s = window[i].unwrap_or(3_600);
            // The fast branch's slope is the recent one, over the window that fired.
            let s = match (sustained[i], window_s) {
                (true, 600) => slope_10m[i].unwrap_or(0.0),
                (true, _) => slope_15m[i].unwrap_or(0.0),
                _ => slope[i].unwrap_or(0.0),
            };
            let eval_s = t[i].unwrap_or(0) / 1_000_000;
            out.push(Finding {
                scope,
                detector: DetectorKind::GrowthRule,
                eval_s,
                fired: fired[i],
                value: v[i].unwrap_or(0.0),
                baseline: low[i],
                growth_per_s: s,
                score: squash(s / cfg.growth_min_per_s) * r2[i].unwrap_or(0.0).clamp(0.0, 1.0),
                reason: if sustained[i] {
                    format!(
                        "slope {s:.3}/s over the last {} minutes of this pod's life, growing all along (threshold {}/s)",
                        window_s / 60,
                        cfg.growth_min_per_s
                    )
                } else {
                    format!(
                        "slope {s:.3}/s over the last hour of this pod's life (R² {:.2}, threshold {}/s)",
                        r2[i].unwrap_or(0.0),
                        cfg.growth_min_per_s
                    )
                },
                onset_s: None,
                sustained: sustained[i],
                window_s,
                max_age_s: None,
            });
        }
    }
    Ok(out)
}

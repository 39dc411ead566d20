//! `baseline_rule`: the seed's rule, from `queries/rule_baseline.sql` — the value above
//! `baseline_factor` x the P95 of the previous 2 hours for `baseline_periods` evaluations.
//! It measures no growth (its events carry the growth rule's) and is not counted into the
//! product score: it is the seed's, kept for comparison (recall ~0.1 on the scenario suite).
//! Known to misfire (a heavy-tailed burst holds above 1.8x the P95 for 3 periods): what it
//! alone raises stays L1 unless another detector or the captures agree (`needs_corroboration`).

use futures::future::BoxFuture;

use super::{Detector, DetectorKind, Finding, Inputs, squash};
use crate::engine::columns::{bools, f64s, rfc, run_named, scope_rows, ts_micros};
use crate::error::Result;

pub struct BaselineRule;

impl Detector for BaselineRule {
    fn kind(&self) -> DetectorKind {
        DetectorKind::BaselineRule
    }

    fn drops_daily_pattern(&self) -> bool {
        false
    }

    fn measures_growth(&self) -> bool {
        false
    }

    fn needs_corroboration(&self) -> bool {
        true
    }

    fn in_product_score(&self) -> bool {
        false
    }

    fn findings<'a>(&'a self, input: &'a Inputs<'a>) -> BoxFuture<'a, Result<Vec<Finding>>> {
        Box::pin(findings(input))
    }
}

async fn findings(input: &Inputs<'_>) -> Result<Vec<Finding>> {
    let cfg = input.cfg;
    let batches = run_named(
        input.ctx,
        "rule_baseline",
        &[
            ("from", rfc(input.from_s)),
            ("to", rfc(input.to_s)),
            ("factor", cfg.baseline_factor.to_string()),
            ("periods", cfg.baseline_periods.to_string()),
            ("namespace", cfg.namespace.clone()),
        ],
    )
    .await?;
    let mut out = Vec::new();
    for b in &batches {
        let scopes = scope_rows(b)?;
        let (t, v, base, fired) = (
            ts_micros(b, "eval_at")?,
            f64s(b, "value")?,
            f64s(b, "baseline")?,
            bools(b, "fired")?,
        );
        for (i, scope) in scopes.into_iter().enumerate() {
            let (value, baseline) = (v[i].unwrap_or(0.0), base[i]);
            let ratio = baseline
                .filter(|b| *b > 0.0)
                .map(|b| value / (cfg.baseline_factor * b))
                .unwrap_or(0.0);
            out.push(Finding {
                scope,
                detector: DetectorKind::BaselineRule,
                eval_s: t[i].unwrap_or(0) / 1_000_000,
                fired: fired[i],
                value,
                baseline,
                growth_per_s: 0.0,
                score: squash(ratio),
                reason: format!(
                    "value {value:.0} vs {:.1} x P95 of the previous 2 h ({:.0}) for {} periods",
                    cfg.baseline_factor,
                    baseline.unwrap_or(f64::NAN),
                    cfg.baseline_periods
                ),
                onset_s: None,
                sustained: fired[i],
                window_s: 7_200,
                max_age_s: None,
            });
        }
    }
    Ok(out)
}

//! The growth rules of `stl_iforest` (see the module doc of [`super`] for what each tests):
//! **fast** (the last 10 minutes), **slow** (hours; on the deseasonalized and the raw level,
//! with day-over-day tests), **day-differenced** slow, **young** (a life under a day) and
//! **sawtooth** (completed lives that each grew until a reset). Each rule yields a
//! [`RuleOutcome`]: how close it came to holding (1 = it holds), its slope and a sentence.
//! `decide` (in [`super`]) takes the rules' outcomes through the Isolation Forest gate.

use super::StlIfConfig;
use super::lives::{LifeGrid, Prefix, noise_sigma};
use super::stl::median_in_place;

/// What every rule reads about the current life.
#[derive(Clone, Copy)]
pub(super) struct Levels<'a> {
    pub life: &'a LifeGrid,
    /// The deseasonalized level (the raw level when there is no seasonal profile yet).
    pub d: &'a [f64],
    pub pre: &'a Prefix,
    /// Prefix sums of the raw level.
    pub pre_raw: &'a Prefix,
    /// The daily seasonal profile of the anchor model, if any.
    pub profile: Option<&'a [f64]>,
    /// Noise sigma of the last 6 hours of `d`.
    pub sigma: f64,
    /// The life's starting level.
    pub base: f64,
    pub cfg: &'a StlIfConfig,
}

/// Every rule's outcome on the current life, in a fixed order (fast, slow on `d`, slow on the
/// raw level, day-differenced, young, sawtooth): `decide` takes the closest and the steepest
/// of those that hold, the last of equals.
pub(super) fn outcomes(
    lv: &Levels<'_>,
    ts: &[i64],
    vs: &[f64],
    lives: &[(usize, usize)],
) -> Vec<RuleOutcome> {
    let mut rules = Vec::new();
    fast_rule(lv, &mut rules);
    slow_rules(lv, &mut rules);
    day_differenced_rule(lv, &mut rules);
    young_rule(lv, &mut rules);
    if let Some(r) = sawtooth(ts, vs, lives, lv.life, lv.pre, lv.cfg) {
        rules.push(r);
    }
    rules
}

/// Fast rule: over the last `fast_span_min`, every block mean above the previous one.
fn fast_rule(lv: &Levels<'_>, rules: &mut Vec<RuleOutcome>) {
    let Levels {
        life,
        d,
        pre,
        sigma,
        cfg,
        ..
    } = *lv;
    let (n, step) = (d.len(), life.step_s);
    let fast_block = life.minutes(cfg.fast_span_min) / cfg.fast_blocks.max(2);
    if let Some(g) = block_growth(
        d,
        pre,
        n,
        fast_block,
        cfg.fast_blocks.max(2),
        step,
        Stat::Mean,
    ) {
        let c = closeness(&[
            (g.share_up, 1.0),
            (
                allowed_step_share(cfg.fast_blocks.max(2), cfg),
                g.max_step_share,
            ),
            (g.min_step_share, cfg.fast_min_step_share),
            (g.rise, cfg.fast_min_rise_sigma * sigma),
            (g.slope_per_s, cfg.fast_min_growth_per_s),
        ]);
        rules.push(RuleOutcome {
            name: "fast",
            closeness: c,
            slope_per_s: g.slope_per_s,
            detail: format!(
                "rose {:.0} in {} min ({:.2}/s, steps of {:.0}% to {:.0}% of the rise, noise sigma {:.1})",
                g.rise,
                cfg.fast_span_min,
                g.slope_per_s,
                100.0 * g.min_step_share.max(-9.99),
                100.0 * g.max_step_share.min(9.99),
                sigma
            ),
        });
    }
}

/// Slow rule over hours, on the deseasonalized level and (with a seasonal profile) the raw one.
fn slow_rules(lv: &Levels<'_>, rules: &mut Vec<RuleOutcome>) {
    let Levels {
        life,
        d,
        pre,
        pre_raw,
        profile,
        sigma,
        base,
        cfg,
    } = *lv;
    let (n, step) = (d.len(), life.step_s);
    // Slow rule, on the deseasonalized level and (when there is a seasonal profile) on the raw
    // level too: a large leak inside the STL window bends the profile, and then steps appear in
    // `d` that the raw level does not have. The day-over-day tests guard the raw variant.
    let block = life.minutes(cfg.slow_block_min);
    let span = life.minutes(cfg.slow_horizon_min).min(n);
    let k = span / block.max(1);
    let mut variants: Vec<(&[f64], &Prefix, bool)> = vec![(d, pre, profile.is_some())];
    if profile.is_some() {
        variants.push((&life.v, pre_raw, false));
    }
    for (dv, pv, deseasonalized) in variants {
        if span >= life.minutes(cfg.slow_min_span_min)
            && k >= 2
            && let Some(g) = block_growth(dv, pv, n, block, k, step, Stat::Median)
        {
            let mut tests = slow_tests(&g, k, sigma, cfg).to_vec();
            let day = life.minutes((cfg.period_s / 60) as usize);
            // Day-over-day as soon as 5 minutes of yesterday exist (a reference of up to 30
            // minutes).
            let min_ref = life.minutes(5);
            let half_h = life.minutes(30).min(n.saturating_sub(day)).max(min_ref);
            // With a day of history (also when deseasonalized: two days of STL cannot tell a
            // step of the last hours from the daily pattern at those hours).
            let young_note = if n >= day + min_ref {
                let now_level = pv.mean(n - half_h, n);
                let then_level = pv.mean(n - day - half_h, n - day);
                let dod = now_level - then_level;
                // (a) more growth than over the same hours yesterday, or (b) well above
                // yesterday's level, reached without a step over the last 24 hours (a leak older
                // than a day; a deploy step fails the step test).
                // Yesterday's window may start before the life: compare the last `ky` blocks
                // (those with a yesterday) of today with the same blocks of yesterday.
                let ky = k.min((n - day) / block.max(1));
                let (yesterday, a) = if ky >= 2 {
                    let today = block_growth(dv, pv, n, block, ky, step, Stat::Median)
                        .map_or(0.0, |t| t.rise);
                    let yest = block_growth(dv, pv, n - day, block, ky, step, Stat::Median)
                        .map_or(f64::INFINITY, |y| y.rise);
                    (
                        yest,
                        closeness(&[
                            (today - yest, cfg.dod_min_frac * today.max(0.0)),
                            (today, cfg.slow_min_rise_sigma * sigma),
                        ]),
                    )
                } else {
                    // Less than an hour of yesterday: the level must be above yesterday's by
                    // half the rise (a daily ramp is not).
                    // Not more than twice the rise either: far above yesterday with little rise
                    // today is a step (a deploy), for (b) to judge.
                    (
                        f64::NAN,
                        closeness(&[(dod, cfg.dod_min_frac * g.rise), (2.0 * g.rise, dod)]),
                    )
                };
                // 25 hourly blocks: the oldest holds yesterday's reference half-hour, so a step
                // right after it is seen by the step test.
                let hour = life.minutes(60);
                // On the raw level: a step within two days of history bends STL's seasonal
                // component into a day-long ramp, which would hide the step in `d`.
                let day_test = block_growth(
                    &life.v,
                    pre_raw,
                    n,
                    hour,
                    25.min(n / hour.max(1)),
                    step,
                    Stat::Median,
                );
                let b = match day_test {
                    Some(d24) => closeness(&[
                        (
                            dod,
                            cfg.dod_min_frac * g.rise * (day as f64 / (k * block) as f64),
                        ),
                        (d24.rise, cfg.slow_min_rise_sigma * sigma),
                        // The hourly climb explains the difference with yesterday (a step hidden
                        // in the oldest block would not).
                        (d24.rise, 0.75 * dod),
                        (cfg.max_step_share, d24.max_pair_share),
                    ]),
                    None => 0.0,
                };
                tests.push((a.max(b), 1.0));
                format!(
                    ", {:.0} above the same time yesterday, the same hours yesterday rose {:.0}",
                    dod, yesterday
                )
            } else {
                // No day of history: a rise of hours is a morning ramp as often as a leak. It
                // counts once it has lasted longer than a daily ramp can (the long test).
                let long_block = block.max(1);
                let kl = life.minutes(cfg.young_long_min) / long_block;
                let long = match block_growth(dv, pv, n, long_block, kl, step, Stat::Median) {
                    Some(gl) if kl >= 2 => closeness(&[
                        (gl.share_up, cfg.slow_min_share_up),
                        (allowed_step_share(kl, cfg), gl.max_step_share),
                        (gl.rise, cfg.slow_min_rise_sigma * sigma),
                        (gl.rise, cfg.young_min_rise_frac * base.max(1.0)),
                    ]),
                    _ => 0.0,
                };
                tests.push((long, 1.0));
                format!(
                    ", {:.0}% above the life's start ({:.0}), young: needs {:.0} h of rise",
                    100.0 * g.rise / base.max(1.0),
                    base,
                    cfg.young_long_min as f64 / 60.0
                )
            };
            let mode = if deseasonalized {
                "deseasonalized"
            } else if n >= day + min_ref {
                "day-over-day"
            } else {
                "young"
            };
            rules.push(RuleOutcome {
                name: "slow",
                closeness: closeness(&tests),
                slope_per_s: g.slope_per_s,
                detail: format!("{}, {mode}{young_note})", slow_detail(&g, k, block, step)),
            });
        }
    }
}

/// Day-differenced slow rule: the level minus the level a day earlier.
fn day_differenced_rule(lv: &Levels<'_>, rules: &mut Vec<RuleOutcome>) {
    let Levels { life, d, cfg, .. } = *lv;
    let (n, step) = (d.len(), life.step_s);
    let six_h = life.minutes(360);
    let block = life.minutes(cfg.slow_block_min);
    // Day-differenced slow rule: with more than a day of history, the level minus the level a
    // day earlier removes the daily cycle without a seasonal fit (which needs two days): a leak
    // that starts while daily traffic falls shows as steady growth here, not in the raw level.
    let day = life.minutes((cfg.period_s / 60) as usize);
    if n > day {
        let dd: Vec<f64> = (day..n).map(|i| life.v[i] - life.v[i - day]).collect();
        let pre_d = Prefix::new(&dd);
        let sigma_d = noise_sigma(&dd[dd.len().saturating_sub(six_h)..]);
        // Every whole hour from the shortest span to the horizon: a leak younger than the
        // horizon shows over the hours since it began, not over a window that is half flat.
        let mut best: Option<RuleOutcome> = None;
        let mut hours = cfg.slow_min_span_min.div_ceil(60).max(1);
        while hours * 60 <= cfg.slow_horizon_min {
            let span_d = life.minutes(hours * 60);
            let kd = span_d / block.max(1);
            hours += 1;
            if span_d > dd.len() || kd < 2 {
                break;
            }
            let Some(g) = block_growth(&dd, &pre_d, dd.len(), block, kd, step, Stat::Median) else {
                continue;
            };
            let c = closeness(&slow_tests(&g, kd, sigma_d, cfg));
            if best.as_ref().is_some_and(|b| b.closeness >= c) {
                continue;
            }
            best = Some(RuleOutcome {
                name: "slow",
                closeness: c,
                slope_per_s: g.slope_per_s,
                detail: format!(
                    "the level minus the level a day earlier {}, day-differenced)",
                    slow_detail(&g, kd, block, step)
                ),
            });
        }
        rules.extend(best);
    }
}

/// Quick rule for a life younger than a day.
fn young_rule(lv: &Levels<'_>, rules: &mut Vec<RuleOutcome>) {
    let Levels {
        life,
        d,
        pre_raw,
        sigma,
        cfg,
        ..
    } = *lv;
    let (n, step) = (d.len(), life.step_s);
    let day = life.minutes((cfg.period_s / 60) as usize);
    // Quick rule for a life younger than a day: steady growth over the last two hours that
    // carries the level above everything the life saw before by `young_quick_rise_frac` of it.
    let qspan = life.minutes(cfg.young_quick_min);
    let qk = 6;
    let qblock = qspan / qk;
    // At least an hour before the window, to know the life's scale.
    if n < day && qblock > 0 && n >= qspan + life.minutes(60) {
        let prior_max = life.v[..n - qspan]
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
            .max(1.0);
        if let Some(g) = block_growth(&life.v, pre_raw, n, qblock, qk, step, Stat::Median) {
            rules.push(RuleOutcome {
                name: "young",
                closeness: closeness(&[
                    (g.share_up, 1.0),
                    (allowed_step_share(qk, cfg), g.max_step_share),
                    (g.rise, cfg.slow_min_rise_sigma * sigma),
                    (g.slope_per_s, cfg.slow_min_growth_per_s),
                    (g.rise, cfg.young_quick_rise_frac * prior_max),
                ]),
                slope_per_s: g.slope_per_s,
                detail: format!(
                    "rose {:.0} in {} min ({:.2}/min), {:.0}% of the life's highest level before ({:.0})",
                    g.rise,
                    cfg.young_quick_min,
                    g.slope_per_s * 60.0,
                    100.0 * g.rise / prior_max,
                    prior_max
                ),
            });
        }
    }
}

/// Sawtooth rule over completed lives.
fn sawtooth(
    ts: &[i64],
    vs: &[f64],
    lives: &[(usize, usize)],
    current: &LifeGrid,
    current_pre: &Prefix,
    cfg: &StlIfConfig,
) -> Option<RuleOutcome> {
    let need = cfg.sawtooth_min_cycles.max(1);
    if lives.len() < need + 1 {
        return None;
    }
    let mut slopes = Vec::new();
    let mut worst = 1.0f64;
    for &(lo, hi) in lives[lives.len() - 1 - need..lives.len() - 1].iter() {
        let g = LifeGrid::build(&ts[lo..hi], &vs[lo..hi], cfg)?;
        if g.v.len() < g.minutes(cfg.sawtooth_min_life_min) {
            return None;
        }
        let d = g.v.clone();
        let sigma = noise_sigma(&d);
        let pre = Prefix::new(&d);
        let k = 6;
        let block = d.len() / k;
        let gr = block_growth(&d, &pre, d.len(), block, k, g.step_s, Stat::Median)?;
        let c = closeness(&[
            (gr.share_up, cfg.slow_min_share_up),
            (allowed_step_share(k, cfg), gr.max_step_share),
            (gr.rise, cfg.slow_min_rise_sigma * sigma),
            (gr.slope_per_s, cfg.slow_min_growth_per_s),
        ]);
        worst = worst.min(c);
        slopes.push(gr.slope_per_s);
    }
    // The current life must not be shrinking.
    let n = current.v.len();
    let cur_slope =
        current_pre.slope(n.saturating_sub(current.minutes(60)), n) / current.step_s as f64;
    if cur_slope < 0.0 && n >= current.minutes(15) {
        worst = worst.min(0.5);
    }
    slopes.sort_by(f64::total_cmp);
    let med = slopes.get(slopes.len() / 2).copied().unwrap_or(0.0);
    Some(RuleOutcome {
        name: "sawtooth",
        closeness: worst,
        slope_per_s: med,
        detail: format!(
            "the last {need} lives each grew steadily ({:.2}/min) until a reset",
            med * 60.0
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// BlockGrowth tests and the decision.

/// Block means over d[hi - k·len .. hi]: rise, share of rising steps, largest step share, slope.
#[derive(Debug, Clone, Copy)]
struct BlockGrowth {
    rise: f64,
    share_up: f64,
    max_step_share: f64,
    min_step_share: f64,
    /// Largest share carried by two consecutive steps (a step straddling two blocks).
    max_pair_share: f64,
    slope_per_s: f64,
}

/// `Stat::Median` makes the blocks robust to bursts shorter than half a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stat {
    Mean,
    Median,
}

fn block_growth(
    d: &[f64],
    pre: &Prefix,
    hi: usize,
    block: usize,
    k: usize,
    step_s: i64,
    stat: Stat,
) -> Option<BlockGrowth> {
    if k < 2 || block == 0 || hi < k * block || hi > d.len() {
        return None;
    }
    let lo = hi - k * block;
    let mut buf = Vec::with_capacity(block);
    let means: Vec<f64> = (0..k)
        .map(|j| {
            let (a, b) = (lo + j * block, lo + (j + 1) * block);
            match stat {
                Stat::Mean => pre.mean(a, b),
                Stat::Median => {
                    buf.clear();
                    buf.extend_from_slice(&d[a..b]);
                    median_in_place(&mut buf)
                }
            }
        })
        .collect();
    let rise = means[k - 1] - means[0];
    let steps: Vec<f64> = means.windows(2).map(|w| w[1] - w[0]).collect();
    let up = steps.iter().filter(|s| **s > 0.0).count();
    let max_step = steps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min_step = steps.iter().copied().fold(f64::INFINITY, f64::min);
    let max_pair = steps
        .windows(2)
        .map(|w| w[0] + w[1])
        .fold(max_step, f64::max);
    let (max_step_share, min_step_share, max_pair_share) = if rise > 0.0 {
        (max_step / rise, min_step / rise, max_pair / rise)
    } else {
        (f64::INFINITY, 0.0, f64::INFINITY)
    };
    Some(BlockGrowth {
        rise,
        share_up: up as f64 / steps.len() as f64,
        max_step_share,
        min_step_share,
        max_pair_share,
        slope_per_s: rise / ((k - 1) * block) as f64 / step_s as f64,
    })
}

/// Largest share of the rise one of the `k - 1` block-to-block steps may carry: `max_step_share`,
/// tighter when there are many steps (a steady rise gives each about `1 / (k - 1)`).
fn allowed_step_share(k: usize, cfg: &StlIfConfig) -> f64 {
    cfg.max_step_share.min(2.5 / (k.max(2) - 1) as f64)
}

/// The slow rule's tests on `k` blocks of growth `g`: rising steps, no dominant step, a rise
/// above the noise, a slope above the floor.
fn slow_tests(g: &BlockGrowth, k: usize, sigma: f64, cfg: &StlIfConfig) -> [(f64, f64); 4] {
    [
        (g.share_up, cfg.slow_min_share_up),
        (allowed_step_share(k, cfg), g.max_step_share),
        (g.rise, cfg.slow_min_rise_sigma * sigma),
        (g.slope_per_s, cfg.slow_min_growth_per_s),
    ]
}

/// "rose R over H h (S/min, U% of half-hour steps up, largest step M% of the rise" (unclosed).
fn slow_detail(g: &BlockGrowth, k: usize, block: usize, step_s: i64) -> String {
    format!(
        "rose {:.0} over {:.1} h ({:.2}/min, {:.0}% of half-hour steps up, largest step {:.0}% of the rise",
        g.rise,
        (k * block) as f64 * step_s as f64 / 3600.0,
        g.slope_per_s * 60.0,
        100.0 * g.share_up,
        100.0 * g.max_step_share.min(9.99),
    )
}

/// How close a set of (observed, required) "at least" tests came: min of observed/required in
/// 0..1; 1 when all pass.
fn closeness(tests: &[(f64, f64)]) -> f64 {
    tests
        .iter()
        .map(|(obs, req)| {
            if *req <= 0.0 {
                1.0
            } else {
                (obs / req).clamp(0.0, 1.0)
            }
        })
        .fold(1.0, f64::min)
}

pub(super) struct RuleOutcome {
    pub name: &'static str,
    /// 1 when every test holds, else the smallest observed/required ratio.
    pub closeness: f64,
    pub slope_per_s: f64,
    pub detail: String,
}

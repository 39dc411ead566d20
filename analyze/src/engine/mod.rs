//! The analyze engine: runs the enabled detectors over stored history and turns their findings
//! into episodes, levels and events.
//!
//! ```text
//!  goroutine_counts ──detect::REGISTRY (baseline_rule, growth_rule, stl_iforest, …)──▶ findings
//!        │ minute series (series.rs) ──▶ detectors that read series;  recurring_rise un-fires
//!        │                                the daily pattern                     │
//!  goroutine_samples ──captures.rs: residence of what grew──▶ episodes.rs ◀─────┘
//!                                                                │ levels ─▶ LeakEvent
//!  leak_events (stored, live runs) ──────────────────────────────┘
//!  sink.rs: + clusters (rootcause) ──▶ leak_events, leak_clusters (one commit)
//! ```
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`AnalyzeConfig`], [`Scope`], [`analyze`]: evaluation times, detectors, captures, episodes |
//! | [`columns`] | typed columns of query results, scope rows, running a named query |
//! | [`series`] | minute series per pod and workload; [`series::recurring_rise`] (the daily pattern) |
//! | [`captures`] | debug=2 captures per pod; residence of what grew (`captures::residence_at`) |
//! | [`context`] | memory and limit per pod from the Go agent's context; an episode's memory trend |
//! | [`episodes`] | the episode state machine (pure), stored events for live continuity |
//! | [`sink`] | clusters attached to events; the results written in one commit |
//! | [`groups`] | the bounded step: workloads in groups of at most `group_rows`, each on its own |
//! | [`reuse`] | a live step reuses the previous step's findings (`_state/analyze/`), late rows recomputed |
//!
//! The detectors themselves are in [`crate::detect`]. One evaluation ("now", the CronJob) and a
//! replay (every step over stored history, as if live) run the same code: a live run replays
//! the last `live_window` and emits the last step only, so detectors need no state beyond the
//! store. A live step of `leakhound analyze` reuses the findings of the evaluations the
//! previous step already computed ([`reuse`]: 24 of the window's 25, fewer after late rows)
//! and runs the detectors at the rest; the episodes are built over all of them either way.
//! An episode is a run of firings of one detector on one scope (a pod, or a workload as
//! a whole) with gaps of at most `episode_gap_evals`; its `event_id` hashes the scope, the
//! detector and the episode's onset, and a live run that finds an episode already going at its
//! window start adopts the stored event's id and onset.

pub mod captures;
pub mod columns;
pub mod context;
pub mod episodes;
pub mod groups;
pub mod reuse;
pub mod series;
pub mod sink;

use std::collections::{BTreeMap, HashMap};

use leakhound_ingest::Store;
use leakhound_schemas::events::LeakEvent;

use crate::detect::{self, DetectorKind, Finding, Inputs};
use crate::error::{Error, Result};
use crate::levels::LevelThresholds;

pub use sink::{attach_clusters, write_results};

/// Which evaluations become events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Every firing evaluation (a live run's last step).
    All,
    /// An episode's first firing and every change of level (replay).
    Changes,
}

#[derive(Debug, Clone)]
pub struct AnalyzeConfig {
    pub step_s: i64,
    /// History the STL detector sees before the first evaluation.
    pub context_s: i64,
    /// A live run replays this much to rebuild its episodes.
    pub live_window_s: i64,
    pub episode_gap_evals: u32,
    pub baseline_factor: f64,
    pub baseline_periods: i64,
    pub growth_min_per_s: f64,
    pub growth_min_r2: f64,
    pub growth_min_coverage: f64,
    pub levels: LevelThresholds,
    /// The detectors to run (default: every registered one, `detect::REGISTRY`).
    pub detectors: Vec<DetectorKind>,
    /// SQL LIKE pattern on namespace.
    pub namespace: String,
    pub stl: crate::anomaly::StlIfConfig,
    /// Where the loading SQL runs (`--engine`).
    pub engine: crate::session::Engine,
    /// Told each stage of a run as it starts (`analyze --replay`'s progress on a terminal).
    pub progress: Option<StageHook>,
    /// At most this many count rows loaded at once: workloads are analysed in groups of about
    /// this size ([`groups`]); 0: the fleet as one group.
    pub group_rows: u64,
    /// A live step (`Emit::All`, on either engine) reuses the previous step's findings where
    /// still valid and leaves its own for the next ([`reuse`]). Off by default (a library call,
    /// a replay); `leakhound analyze` turns it on for live steps that write results.
    pub reuse: bool,
    /// On a cluster: the partitions (tasks) the STL + Isolation Forest scoring is spread over
    /// (`anomaly::udaf`); 0: one per workload scored, at most 256.
    pub score_partitions: usize,
}

/// A callback told the stage a run is in ("detector growth_rule (2/6)", …).
#[derive(Clone)]
pub struct StageHook(pub std::sync::Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for StageHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StageHook")
    }
}

fn stage(cfg: &AnalyzeConfig, what: &str) {
    if let Some(h) = &cfg.progress {
        (h.0)(what);
    }
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        AnalyzeConfig {
            step_s: 300,
            context_s: 3 * 86_400,
            live_window_s: 2 * 3_600,
            episode_gap_evals: 2,
            baseline_factor: 1.8,
            baseline_periods: 3,
            growth_min_per_s: 0.5,
            growth_min_r2: 0.8,
            growth_min_coverage: 0.6,
            levels: LevelThresholds::default(),
            detectors: detect::all(),
            namespace: "%".into(),
            stl: Default::default(),
            engine: Default::default(),
            progress: None,
            group_rows: 2_000_000,
            reuse: false,
            score_partitions: 0,
        }
    }
}

/// Who an event is about: the workspace's one scope type.
pub use leakhound_schemas::scope::Scope;

/// What one analysis produced.
#[derive(Debug, Default)]
pub struct Analysis {
    pub events: Vec<LeakEvent>,
    /// Evaluations run and series looked at.
    pub evaluations: usize,
    pub scopes: usize,
    /// Evaluations (of `evaluations`, per scope) whose findings were the previous step's
    /// ([`reuse`]), in the groups that reused; and the groups that did.
    pub reused_evaluations: usize,
    pub reused_groups: usize,
}

/// The detector whose growth events of detectors that measure none carry.
const GROWTH_REFERENCE: DetectorKind = DetectorKind::GrowthRule;

/// Evaluate every `step_s` in `[from_s, to_s]` (aligned to the step): the workloads in groups
/// of at most `cfg.group_rows` rows ([`groups`]), each group on its own; the events of all.
pub async fn analyze(
    store: &Store,
    from_s: i64,
    to_s: i64,
    emit: Emit,
    cfg: &AnalyzeConfig,
) -> Result<Analysis> {
    let ctx = crate::session::session_on(store, &cfg.engine).await?;
    // On a cluster, the minute series are read here, from the store, as in-process: they are
    // the count rows themselves (the executors would ship every one through a shuffle), and
    // this process needs them for the detectors that run in it. The SQL and the scoring run
    // on the cluster.
    let local = match cfg.engine {
        crate::session::Engine::InProcess => None,
        _ => Some(crate::session::session(store).await?),
    };
    let step = cfg.step_s.max(60);
    let first = from_s.div_euclid(step) * step;
    let first = if first < from_s { first + step } else { first };
    let eval_times: Vec<i64> = (0..)
        .map(|i| first + i * step)
        .take_while(|t| *t <= to_s)
        .collect();
    if eval_times.is_empty() {
        return Ok(Analysis::default());
    }
    if let Some(k) = cfg.detectors.iter().find(|k| detect::get(**k).is_none()) {
        return Err(Error::UnregisteredDetector(*k));
    }
    // Registry order, whatever order the configuration named them in.
    let enabled: Vec<&dyn detect::Detector> = detect::REGISTRY
        .iter()
        .copied()
        .filter(|d| cfg.detectors.contains(&d.kind()))
        .collect();
    // The minute series, as far back as the detector that looks furthest needs.
    let history = enabled.iter().filter_map(|d| d.series_history_s(cfg)).max();
    let priors = if emit == Emit::All {
        episodes::prior_events(&ctx, first - 86_400, first).await?
    } else {
        HashMap::new()
    };
    // The previous live step's findings; the watermark is read before any count is. The
    // engine does not matter: both give the same findings to the bit.
    let reusing = cfg.reuse && emit == Emit::All;
    let watermark = if reusing {
        Some(reuse::watermark(store).await?)
    } else {
        None
    };
    let prior = if reusing {
        match reuse::prior(store, cfg, first, to_s).await {
            Ok(p) => Some(p),
            Err(why) => {
                tracing::info!("analyze: nothing reused from the previous step: {why}");
                None
            }
        }
    } else {
        None
    };
    let step_in = StepInputs {
        store,
        prior: prior.as_ref(),
        write_reuse: reusing,
        first,
        to_s,
        eval_times: &eval_times,
        emit,
        cfg,
        enabled: &enabled,
        history,
        priors: &priors,
    };
    let finish = |out: Analysis, objects: Vec<reuse::Object>| async move {
        if reusing {
            tracing::info!(
                reused_evaluations = out.reused_evaluations,
                reused_groups = out.reused_groups,
                "analyze: findings reused from the previous step"
            );
        }
        if let Some(watermark) = watermark {
            let m = reuse::Manifest {
                format: reuse::FORMAT,
                fingerprint: reuse::fingerprint(cfg),
                first_s: first,
                to_s,
                watermark,
                objects,
            };
            reuse::write_manifest(store, &m).await?;
        }
        Ok(out)
    };
    if cfg.group_rows == 0 {
        let contexts = Contexts {
            sql: &ctx,
            series: local.as_ref().unwrap_or(&ctx),
        };
        let g = analyze_group(contexts, None, None, &step_in, 0, "").await?;
        let out = Analysis {
            events: g.events,
            evaluations: eval_times.len(),
            scopes: g.scopes,
            reused_evaluations: g.reused,
            reused_groups: usize::from(g.reused > 0),
        };
        return finish(out, g.object.into_iter().collect()).await;
    }
    stage(cfg, "planning the groups");
    // What the step reads: the series' history, and the captures' 6 hours.
    let reads_from = first - history.unwrap_or(0).max(6 * 3_600);
    let plan = groups::plan(&ctx, reads_from, to_s, &cfg.namespace, cfg.group_rows).await?;
    // The span of the series every group together loads (what one whole-fleet run would see).
    let span = match history {
        Some(h) if first - h == reads_from => plan.span_s,
        Some(h) => {
            groups::plan(&ctx, first - h, to_s, &cfg.namespace, 0)
                .await?
                .span_s
        }
        None => None,
    };
    let mut out = Analysis {
        evaluations: eval_times.len(),
        ..Default::default()
    };
    let mut objects = Vec::new();
    let n = plan.groups.len();
    for (i, g) in plan.groups.iter().enumerate() {
        let gctx = g.session(&ctx).await?;
        let label = if n > 1 {
            format!("group {}/{n}: ", i + 1)
        } else {
            String::new()
        };
        let glocal = match &local {
            Some(l) => Some(g.session(l).await?),
            None => None,
        };
        let contexts = Contexts {
            sql: &gctx,
            series: glocal.as_ref().unwrap_or(&gctx),
        };
        let r = analyze_group(contexts, Some(g), span, &step_in, i, &label).await?;
        out.events.extend(r.events);
        out.scopes += r.scopes;
        out.reused_evaluations += r.reused;
        out.reused_groups += usize::from(r.reused > 0);
        objects.extend(r.object);
    }
    out.events
        .sort_by(|a, b| (a.detected_at, &a.event_id).cmp(&(b.detected_at, &b.event_id)));
    finish(out, objects).await
}

/// What one group gave.
struct GroupResult {
    events: Vec<LeakEvent>,
    scopes: usize,
    /// Evaluations whose findings were the previous step's.
    reused: usize,
    /// Its findings as stored for the next step.
    object: Option<reuse::Object>,
}

/// What every group of one step shares.
struct StepInputs<'a> {
    store: &'a Store,
    /// The previous step's findings, if this step may reuse some.
    prior: Option<&'a reuse::Prior>,
    /// Whether this step stores its findings for the next.
    write_reuse: bool,
    first: i64,
    to_s: i64,
    eval_times: &'a [i64],
    emit: Emit,
    cfg: &'a AnalyzeConfig,
    enabled: &'a [&'a dyn detect::Detector],
    history: Option<i64>,
    priors: &'a episodes::Priors,
}

/// Where a group's rows are read: its SQL (the engine's session) and its minute series (this
/// process's; the same session in-process).
#[derive(Clone, Copy)]
struct Contexts<'a> {
    sql: &'a datafusion::prelude::SessionContext,
    series: &'a datafusion::prelude::SessionContext,
}

/// One group's events and scopes: the contexts hold the group's rows (or the fleet's, `group`
/// None).
async fn analyze_group(
    contexts: Contexts<'_>,
    group: Option<&groups::Group>,
    span_s: Option<(i64, i64)>,
    s: &StepInputs<'_>,
    index: usize,
    label: &str,
) -> Result<GroupResult> {
    let ctx = contexts.sql;
    let (cfg, first, to_s, enabled) = (s.cfg, s.first, s.to_s, s.enabled);
    let step = cfg.step_s.max(60);
    stage(cfg, &format!("{label}loading the series"));
    let series = match s.history {
        Some(h) => series::minute_series(contexts.series, first - h, to_s, &cfg.namespace).await?,
        None => BTreeMap::new(),
    };
    // The previous step's findings at the evaluations it may reuse (all or none of them for
    // this group); the detectors run at the rest.
    let mut findings: Vec<Finding> = Vec::new();
    let mut new_from = 0;
    if let Some(p) = s.prior {
        let k = s.eval_times.partition_point(|t| *t < p.reuse_before);
        if k > 0 {
            stage(cfg, &format!("{label}reading the previous step's findings"));
            if let Some(fs) = p.findings_for(s.store, group).await {
                findings = fs;
                new_from = k;
            }
        }
    }
    let reused = new_from;
    let new_evals = &s.eval_times[new_from..];
    let input = Inputs {
        ctx,
        from_s: new_evals.first().copied().unwrap_or(to_s + 1),
        to_s,
        eval_times: new_evals,
        series: &series,
        series_from_s: first - s.history.unwrap_or(0),
        span_s,
        cfg,
    };
    for (i, d) in enabled.iter().enumerate() {
        if new_evals.is_empty() {
            break;
        }
        stage(
            cfg,
            &format!("{label}detector {} ({}/{})", d.kind(), i + 1, enabled.len()),
        );
        let mut fs: Vec<Finding> = d
            .findings(&input)
            .await?
            .into_iter()
            .filter(|f| f.eval_s % step == 0)
            .collect();
        if d.drops_daily_pattern() {
            series::drop_recurring(&mut fs, &series);
        }
        findings.extend(fs);
    }
    // From 6 hours before: an episode's capture before its onset. A live run continuing a
    // stored episode that began earlier also loads, for that episode's pods only, the hour of
    // captures before its stored onset, so that its residence stays that of what grew.
    stage(cfg, &format!("{label}loading the captures"));
    let caps_from = first - 6 * 3_600;
    let mut caps = captures::captures(ctx, caps_from, to_s, &cfg.namespace).await?;
    let continued_since = first - step * (cfg.episode_gap_evals as i64 + 1);
    for p in s.priors.values() {
        let onset = p.onset.timestamp();
        if onset >= caps_from || p.detected_at.timestamp() < continued_since {
            continue;
        }
        if group.is_some_and(|g| !g.contains(&p.namespace, p.workload.as_deref())) {
            continue;
        }
        let before = captures::captures(ctx, onset - 3_600, onset, &p.namespace).await?;
        captures::add_captures_before(&mut caps, before, p.pod.as_deref(), p.workload.as_deref());
    }
    // Growth of the same pod at the same time from the growth rule, for events of detectors
    // that do not measure it.
    let growth_of: HashMap<(Scope, i64), f64> = findings
        .iter()
        .filter(|f| f.detector == GROWTH_REFERENCE)
        .map(|f| ((f.scope.clone(), f.eval_s), f.growth_per_s))
        .collect();
    let borrows_growth: Vec<DetectorKind> = enabled
        .iter()
        .filter(|d| !d.measures_growth())
        .map(|d| d.kind())
        .collect();
    let needs_corroboration: Vec<DetectorKind> = enabled
        .iter()
        .filter(|d| d.needs_corroboration())
        .map(|d| d.kind())
        .collect();
    // Memory per pod from the agent's context, for the memory raise (`levels`).
    let memory = context::memory(ctx, first - 3_600, to_s, &cfg.namespace).await?;
    let object = if s.write_reuse {
        stage(cfg, &format!("{label}storing the findings"));
        let units = reuse::units_of(group, &findings);
        Some(reuse::write_object(s.store, to_s, index, units, &findings, first).await?)
    } else {
        None
    };
    stage(cfg, &format!("{label}episodes and levels"));
    let (events, scopes) = episodes::episodes(
        findings,
        &episodes::EpisodeInputs {
            eval_times: s.eval_times,
            emit: s.emit,
            cfg,
            priors: s.priors,
            caps: &caps,
            growth_of: &growth_of,
            borrows_growth: &borrows_growth,
            needs_corroboration: &needs_corroboration,
            memory: &memory,
        },
    );
    Ok(GroupResult {
        events,
        scopes,
        reused,
        object,
    })
}

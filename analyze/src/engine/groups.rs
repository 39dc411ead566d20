//! A bounded analyze step: the fleet cut into groups of workloads, each loaded, scored and
//! turned into events on its own, so that peak memory follows the largest group, not the fleet.
//!
//! ```text
//!  plan: one aggregate over goroutine_counts (namespace, workload → rows, first/last ts) over
//!        the window the step reads ──▶ units (a workload, or a namespace's pods without one)
//!        packed in (namespace, workload) order into groups of at most `group_rows` rows
//!  each group: a session whose goroutine_counts and goroutine_samples are views filtered to the
//!        group's units ──▶ the same detectors, captures, episodes as one whole-fleet run
//! ```
//!
//! **Why workloads.** Every detector judges a pod, or a workload from its pods (`lives`,
//! `siblings`, the workload-wide series): a workload is the smallest unit whose findings need
//! nothing outside it, so a grouped run gives the events of one whole-fleet run (tested:
//! `tests::grouped_runs_equal_one_run`, and the replay tests at a one-workload budget). The one
//! fleet-wide figure a detector reads, the span of the loaded series (STL + IF's "a pod that
//! appeared after the history began"), comes from the plan ([`Plan::span_s`]).
//!
//! **Why views.** The detectors' SQL (the seed's rules, the minute series, the captures) runs
//! unchanged on a group's session: its `goroutine_counts` and `goroutine_samples` are the
//! store's tables behind a filter on `namespace` (and `workload` where a namespace is split),
//! which DataFusion inlines into every scan. On a compacted store (rows sorted by namespace and
//! pod, `leakhound compact`) that filter prunes row groups and pages by their statistics, so a
//! group reads about its own rows; on the uncompacted hours every group reads the files whole.
//!
//! **Budget.** `AnalyzeConfig::group_rows` (`analyze --group-rows`, default 2 M rows, about 460
//! pods scraped every minute over the 3 days STL reads) bounds what one group loads; a workload
//! larger than that is a group of its own. 0 runs the fleet as one group. On Ballista too: the
//! analyze process still holds a group's minute series (for the detectors that run in it), so
//! its memory needs the same bound; a group's session keeps the base session's planner, so its
//! queries and its scoring (`leak_stl_iforest`) run on the cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::MemoryCatalogProviderList;
use datafusion::datasource::provider_as_source;
use datafusion::datasource::view::ViewTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, col, lit};
use datafusion::prelude::SessionContext;
use leakhound_schemas::Table;

use super::columns::{i64s, rfc, strs, ts_micros};
use crate::error::Result;

/// Rows of one workload (or of one namespace's pods without a workload) in the step's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub namespace: String,
    pub workload: Option<String>,
    pub rows: u64,
}

/// A group of units analysed together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub units: Vec<Unit>,
    /// Namespaces every unit of which is in this group (filtered by namespace alone).
    pub whole: Vec<String>,
}

/// The groups of one step, and the span of the series they load.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub groups: Vec<Group>,
    /// The first and last minute of any row in the window (every group's series together).
    pub span_s: Option<(i64, i64)>,
}

/// Units of `[from_s, to_s]` in namespaces LIKE `namespace`, grouped by at most `group_rows`.
pub async fn plan(
    ctx: &SessionContext,
    from_s: i64,
    to_s: i64,
    namespace: &str,
    group_rows: u64,
) -> Result<Plan> {
    let sql = format!(
        "SELECT namespace, workload, COUNT(*) AS n, MIN(ts) AS lo, MAX(ts) AS hi \
         FROM goroutine_counts \
         WHERE ts >= TIMESTAMP '{f}' AND ts <= TIMESTAMP '{t}' \
           AND date >= '{fd}' AND date <= '{td}' AND namespace LIKE '{ns}' \
         GROUP BY namespace, workload",
        f = rfc(from_s),
        t = rfc(to_s),
        fd = &rfc(from_s)[..10],
        td = &rfc(to_s)[..10],
        ns = namespace.replace('\'', "''"),
    );
    let mut units: Vec<Unit> = Vec::new();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for b in ctx.sql(&sql).await?.collect().await? {
        let (ns, wl, n) = (
            strs(&b, "namespace")?,
            strs(&b, "workload")?,
            i64s(&b, "n")?,
        );
        let (l, h) = (ts_micros(&b, "lo")?, ts_micros(&b, "hi")?);
        for i in 0..b.num_rows() {
            let Some(namespace) = ns[i].clone() else {
                continue;
            };
            units.push(Unit {
                namespace,
                workload: wl[i].clone(),
                rows: n[i].unwrap_or(0).max(0) as u64,
            });
            if let (Some(l), Some(h)) = (l[i], h[i]) {
                lo = lo.min(l.div_euclid(60_000_000) * 60);
                hi = hi.max(h.div_euclid(60_000_000) * 60);
            }
        }
    }
    units.sort_by(|a, b| (&a.namespace, &a.workload).cmp(&(&b.namespace, &b.workload)));
    Ok(Plan {
        groups: pack(units, group_rows),
        span_s: (lo <= hi).then_some((lo, hi)),
    })
}

/// Units (sorted by namespace, workload) packed in order into groups of at most `budget` rows
/// (a unit larger than that alone); 0: one group.
pub fn pack(units: Vec<Unit>, budget: u64) -> Vec<Group> {
    let mut per_ns: BTreeMap<String, usize> = BTreeMap::new();
    for u in &units {
        *per_ns.entry(u.namespace.clone()).or_default() += 1;
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut cur = Group::default();
    let mut rows = 0u64;
    for u in units {
        if budget > 0 && !cur.units.is_empty() && rows + u.rows > budget {
            groups.push(finish(std::mem::take(&mut cur), &per_ns));
            rows = 0;
        }
        rows += u.rows;
        cur.units.push(u);
    }
    if !cur.units.is_empty() {
        groups.push(finish(cur, &per_ns));
    }
    groups
}

fn finish(mut g: Group, per_ns: &BTreeMap<String, usize>) -> Group {
    let mut here: BTreeMap<&str, usize> = BTreeMap::new();
    for u in &g.units {
        *here.entry(u.namespace.as_str()).or_default() += 1;
    }
    g.whole = here
        .into_iter()
        .filter(|(ns, n)| per_ns.get(*ns) == Some(n))
        .map(|(ns, _)| ns.to_string())
        .collect();
    g
}

impl Group {
    /// Whether the pods of (namespace, workload) are this group's.
    pub fn contains(&self, namespace: &str, workload: Option<&str>) -> bool {
        self.whole.iter().any(|n| n == namespace)
            || self
                .units
                .iter()
                .any(|u| u.namespace == namespace && u.workload.as_deref() == workload)
    }

    /// The rows of this group: `namespace IN (whole…)`, and for a namespace split between
    /// groups, `namespace = ns AND (workload IN (…) [OR workload IS NULL])`. Values are literals
    /// of the plan (never SQL text).
    pub fn filter(&self) -> Option<Expr> {
        let mut parts: Vec<Expr> = Vec::new();
        if !self.whole.is_empty() {
            parts.push(col("namespace").in_list(self.whole.iter().map(lit).collect(), false));
        }
        let mut split: BTreeMap<&str, (Vec<&str>, bool)> = BTreeMap::new();
        for u in &self.units {
            if self.whole.contains(&u.namespace) {
                continue;
            }
            let e = split.entry(u.namespace.as_str()).or_default();
            match &u.workload {
                Some(w) => e.0.push(w),
                None => e.1 = true,
            }
        }
        for (ns, (wls, null)) in split {
            let mut w: Option<Expr> = (!wls.is_empty())
                .then(|| col("workload").in_list(wls.into_iter().map(lit).collect(), false));
            if null {
                let n = col("workload").is_null();
                w = Some(match w {
                    Some(w) => w.or(n),
                    None => n,
                });
            }
            let ns_eq = col("namespace").eq(lit(ns));
            parts.push(match w {
                Some(w) => ns_eq.and(w),
                None => ns_eq,
            });
        }
        parts.into_iter().reduce(Expr::or)
    }

    /// A session over `base`'s tables (shared providers, runtime and settings) in which the
    /// tables with namespace and workload columns hold this group's rows only.
    pub async fn session(&self, base: &SessionContext) -> Result<SessionContext> {
        // The base session's planner (in-process, or Ballista's: the group's queries run on
        // the cluster too), functions, settings and id, with a catalog of its own.
        let state = base.state();
        let config = state
            .config()
            .clone()
            .with_create_default_catalog_and_schema(true);
        let state = SessionStateBuilder::new_from_existing(state)
            .with_session_id(base.session_id())
            .with_config(config)
            .with_catalog_list(Arc::new(MemoryCatalogProviderList::new()))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let filter = self.filter();
        for table in Table::ALL {
            let p = base.table_provider(table.name()).await?;
            let filtered = matches!(table, Table::GoroutineCounts | Table::GoroutineSamples);
            match (&filter, filtered) {
                (Some(f), true) => {
                    let plan = LogicalPlanBuilder::scan(table.name(), provider_as_source(p), None)?
                        .filter(f.clone())?
                        .build()?;
                    ctx.register_table(table.name(), Arc::new(ViewTable::new(plan, None)))?;
                }
                _ => {
                    ctx.register_table(table.name(), p)?;
                }
            }
        }
        Ok(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(ns: &str, wl: Option<&str>, rows: u64) -> Unit {
        Unit {
            namespace: ns.into(),
            workload: wl.map(str::to_string),
            rows,
        }
    }

    #[test]
    fn units_pack_in_order_within_the_budget() {
        let units = vec![
            u("a", None, 10),
            u("a", Some("x"), 30),
            u("b", Some("y"), 50),
            u("b", Some("z"), 200),
            u("c", Some("w"), 5),
        ];
        let g = pack(units.clone(), 100);
        let rows: Vec<Vec<u64>> = g
            .iter()
            .map(|g| g.units.iter().map(|u| u.rows).collect())
            .collect();
        // A unit over the budget is a group of its own; order is kept.
        assert_eq!(rows, vec![vec![10, 30, 50], vec![200], vec![5]]);
        assert_eq!(g[0].whole, vec!["a".to_string()]);
        assert!(g[1].whole.is_empty(), "b is split");
        assert!(g[0].contains("b", Some("y")) && !g[0].contains("b", Some("z")));
        assert!(g[0].contains("a", Some("anything")), "a whole namespace");
        assert_eq!(pack(units, 0).len(), 1);
        assert!(pack(Vec::new(), 100).is_empty());
    }

    #[test]
    fn a_split_namespace_filters_by_workload_and_keeps_pods_without_one() {
        let g = pack(
            vec![
                u("a", None, 10),
                u("a", Some("x"), 10),
                u("a", Some("y"), 100),
            ],
            50,
        );
        assert_eq!(g.len(), 2);
        let f = g[0].filter().unwrap().to_string();
        assert!(f.contains("namespace = Utf8(\"a\")"), "{f}");
        assert!(f.contains("workload IS NULL"), "{f}");
        assert!(f.contains("workload IN ([Utf8(\"x\")])"), "{f}");
        let hostile = pack(vec![u("a' OR 1=1 --", Some("x"), 1)], 0);
        let f = hostile[0].filter().unwrap().to_string();
        assert!(
            f.contains("Utf8(\"a' OR 1=1 --\")"),
            "a literal, not SQL: {f}"
        );
    }

    /// Several workloads in several namespaces (scenarios of the labelled suite, with their
    /// captures): a step in one group per workload, or in a few, gives the events of one
    /// whole-fleet run, to the byte.
    #[cfg(feature = "testkit")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grouped_runs_equal_one_run() {
        use crate::backtest::{Evidence, load};
        use crate::engine::{AnalyzeConfig, Emit, StageHook, analyze};
        use std::sync::Mutex;

        let dir = tempfile::tempdir().unwrap();
        let store = leakhound_ingest::Store::open(dir.path().to_str().unwrap()).unwrap();
        let mut end = i64::MAX;
        for kind in [
            "fast_leak",
            "one_pod_of_many",
            "canary_leak",
            "frequent_deploy_leak",
            "deploy_step",
        ] {
            let s = crate::scenarios::generate(kind, 3).unwrap();
            end = end.min(s.end_s);
            load(&store, &s, Evidence::CountsAndDumps).await.unwrap();
        }
        let run = |rows: u64| {
            let stages = Arc::new(Mutex::new(Vec::<String>::new()));
            let seen = stages.clone();
            let cfg = AnalyzeConfig {
                group_rows: rows,
                progress: Some(StageHook(Arc::new(move |s: &str| {
                    seen.lock().unwrap().push(s.to_string())
                }))),
                ..Default::default()
            };
            let store = store.clone();
            async move {
                let a = analyze(&store, end - 2 * 3_600, end, Emit::Changes, &cfg)
                    .await
                    .unwrap();
                let groups = stages
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|s| s.ends_with("loading the series"))
                    .count();
                (a.events, a.scopes, groups)
            }
        };
        let (whole, scopes, one) = run(0).await;
        assert_eq!(one, 1);
        assert!(
            whole
                .iter()
                .filter(|e| e.level >= leakhound_schemas::events::Level::L2)
                .count()
                >= 3,
            "the leaks of the window: {whole:#?}"
        );
        for rows in [1, 50_000] {
            let (events, s, groups) = run(rows).await;
            assert!(groups > 1, "{rows} rows a group: {groups} groups");
            assert_eq!(s, scopes, "{rows} rows a group");
            assert_eq!(events, whole, "{rows} rows a group ({groups} groups)");
        }
    }
}

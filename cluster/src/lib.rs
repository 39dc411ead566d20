//! leakhound on Apache Ballista (issue 19): the scheduler and the executor of DataFusion's own
//! distributed engine, run as `leakhound cluster scheduler` and `leakhound cluster executor`,
//! with what leakhound's sessions need registered on them.
//!
//! ```text
//!  leakhound sql|query|analyze --engine ballista://HOST:PORT     (analyze::session)
//!     │ logical plan: the store's tables as ListingTables (schema given, nothing listed here)
//!     ▼
//!  leakhound cluster scheduler --store URL                        (this crate: run_scheduler)
//!     │ plans per query with a fresh session whose object store for the store's URL is
//!     │ the store's *visible* view (commit log read once per query: VisibleStore::lazy), so
//!     │ uncommitted and replaced files are never listed, exactly as in-process
//!     ▼
//!  leakhound cluster executor --store URL --scheduler HOST:PORT   (this crate: run_executor)
//!       reads the files the plan names through the store's own object store (S3 credentials
//!       from the usual AWS_* variables); shuffles through Arrow Flight to the next stage
//! ```
//!
//! What a stock Ballista scheduler lacks for leakhound is the visibility rule: it would list
//! every Parquet file under a table, uncommitted writes and compacted-away inputs included
//! (rows doubled or half-written). A stock executor also lacks leakhound's functions: every
//! function `analyze::session` registers ([`functions`]: `leak_stl_iforest`, the `stl_iforest`
//! detector's scoring) is registered here too, in the scheduler's session (to decode the
//! client's plan) and in the executors' function registry (to run it), or the first query
//! using it fails on the cluster. With them, `analyze --engine ballista://…` scores on the
//! executors.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::prelude::SessionConfig;
use leakhound_ingest::Store;

/// Seconds a finished job's state stays in the scheduler.
const FINISHED_JOB_STATE_S: u64 = 60;

/// `leakhound cluster scheduler`: Ballista's scheduler on `bind`, planning over `store`. An
/// executor silent for `executor_timeout` (no heartbeat) is dropped and its tasks run again
/// elsewhere; Ballista's default is 180 s, ours 60 s (executors beat every 15 s by default).
pub async fn run_scheduler(
    store: Store,
    bind: SocketAddr,
    executor_timeout: std::time::Duration,
) -> Result<()> {
    let timeout_s = executor_timeout.as_secs().max(2);
    let base_url = store.base_url().clone();
    let session_builder: ballista_scheduler::scheduler_server::SessionBuilder =
        Arc::new(move |config: SessionConfig| {
            let state = ballista_core::utils::default_session_builder(config)?;
            let id = state.session_id().to_string();
            let mut state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
                .with_session_id(id)
                .with_physical_optimizer_rule(Arc::new(WindowSortKeys))
                .build();
            for f in functions() {
                datafusion::logical_expr::registry::FunctionRegistry::register_udaf(&mut state, f)?;
            }
            // Built per query: the commit log is read on the query's first listing.
            state
                .runtime_env()
                .register_object_store(&base_url, store.lazy_reader());
            Ok(state)
        });
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        external_host: bind.ip().to_string(),
        override_session_builder: Some(session_builder),
        executor_timeout_seconds: timeout_s,
        expire_dead_executor_interval_seconds: (timeout_s / 4).max(1),
        no_executors_grace_period_seconds: timeout_s,
        // A finished job's state (its plan, stages and the scans' file lists) is kept for the
        // client to read its status, which it does at once; Ballista's default keeps it an hour,
        // and an analyze step runs ~100 jobs: the scheduler held 1.4 GB over the 5,000-pod
        // fleet bench (its chart limit is 1Gi).
        finished_job_state_clean_up_interval_seconds: FINISHED_JOB_STATE_S,
        ..Default::default()
    };
    config.validate().context("Ballista scheduler settings")?;
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .context("Ballista scheduler state")?;
    tracing::info!(%bind, "Scheduler listening.");
    start_server(cluster, bind, Arc::new(config))
        .await
        .context("Ballista scheduler")?;
    Ok(())
}

/// A window's sort keeps every `PARTITION BY` column, constants included.
///
/// DataFusion drops from a sort the columns a filter made constant (`WHERE namespace = 'shop'`
/// then `PARTITION BY namespace, pod` sorts by `pod` only) and the window relies on the constant.
/// Ballista cuts the plan into stages at each repartition, and the stage that runs the window
/// reads its input from a shuffle that no longer carries the constant: the executor rebuilding
/// the window finds its partition columns unsorted and fails ("Expects PARTITION BY expression
/// to be ordered"; Ballista 55.0.0, e.g. `query rule_baseline -p namespace=shop`). Sorting by a
/// constant as well costs nothing and holds in any stage. Hand-written: a planner rule of ours,
/// registered in the scheduler's sessions only (in-process plans never split).
#[derive(Debug, Default)]
pub struct WindowSortKeys;

impl datafusion::physical_optimizer::PhysicalOptimizerRule for WindowSortKeys {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &datafusion::config::ConfigOptions,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let partition_by = if let Some(w) = node.downcast_ref::<BoundedWindowAggExec>() {
                w.window_expr()[0].partition_by().to_vec()
            } else if let Some(w) = node.downcast_ref::<WindowAggExec>() {
                w.window_expr()[0].partition_by().to_vec()
            } else {
                return Ok(Transformed::no(node));
            };
            match resorted(Arc::clone(node.children()[0]), partition_by)? {
                Some(child) => Ok(Transformed::yes(replace_children_if_necessary(
                    node,
                    vec![child],
                )?)),
                None => Ok(Transformed::no(node)),
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "leakhound_window_sort_keys"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `plan` (a window's input: a sort, under projections that rename columns) with `keys` (the
/// window's partition columns, in `plan`'s schema) that the sort lacks put first in it; None
/// when there is nothing to do (no sort, a key computed by a projection, none missing).
fn resorted(
    plan: Arc<dyn ExecutionPlan>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
) -> datafusion::error::Result<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(p) = plan.downcast_ref::<ProjectionExec>() {
        // Each key through the projection: a column of its output is an expression of its
        // input; a sort key is followed further only while it is a plain column.
        let mut below = Vec::with_capacity(keys.len());
        for k in &keys {
            let Some(c) = k.downcast_ref::<Column>() else {
                return Ok(None);
            };
            let Some(e) = p.expr().get(c.index()) else {
                return Ok(None);
            };
            if e.expr.downcast_ref::<Column>().is_none() {
                return Ok(None);
            }
            below.push(Arc::clone(&e.expr));
        }
        return match resorted(Arc::clone(p.input()), below)? {
            Some(input) => Ok(Some(replace_children_if_necessary(plan, vec![input])?)),
            None => Ok(None),
        };
    }
    let Some(sort) = plan.downcast_ref::<SortExec>() else {
        return Ok(None);
    };
    let mut exprs: Vec<PhysicalSortExpr> = keys
        .iter()
        .filter(|k| !sort.expr().iter().any(|s| s.expr.as_ref() == k.as_ref()))
        .map(|k| PhysicalSortExpr::new_default(Arc::clone(k)))
        .collect();
    if exprs.is_empty() {
        return Ok(None);
    }
    exprs.extend(sort.expr().iter().cloned());
    let Some(ordering) = LexOrdering::new(exprs) else {
        return Ok(None);
    };
    Ok(Some(Arc::new(
        SortExec::new(ordering, Arc::clone(sort.input()))
            .with_preserve_partitioning(sort.preserve_partitioning())
            .with_fetch(sort.fetch()),
    )))
}

/// leakhound's aggregate functions (those `analyze::session` registers in every session).
pub fn functions() -> Vec<Arc<datafusion::logical_expr::AggregateUDF>> {
    vec![leakhound_analyze::anomaly::udaf::udaf()]
}

/// Where an executor listens and whom it serves.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// Arrow Flight (shuffle reads by other executors and by clients).
    pub flight: SocketAddr,
    /// The executor's gRPC service (the scheduler calls it).
    pub grpc_port: u16,
    /// The address other executors and the scheduler reach this one at (a pod IP).
    pub advertise: String,
    /// The scheduler to register with: host and port.
    pub scheduler: (String, u16),
    /// Tasks run at once.
    pub vcores: usize,
    /// Shuffle files; a temporary folder when None.
    pub work_dir: Option<String>,
    /// How often the executor tells the scheduler it is alive (below the scheduler's
    /// executor timeout).
    pub heartbeat: std::time::Duration,
}

/// `leakhound cluster executor`: Ballista's executor reading `store`'s files.
pub async fn run_executor(store: Store, opts: ExecutorOptions) -> Result<()> {
    let (base_url, raw) = (store.base_url().clone(), store.raw());
    let runtime_producer: ballista_core::RuntimeProducer = Arc::new(move |_: &SessionConfig| {
        let runtime = RuntimeEnvBuilder::new().build()?;
        // The files a plan names are visible ones (the scheduler listed them): plain reads.
        runtime.register_object_store(&base_url, raw.clone());
        Ok(Arc::new(runtime))
    });
    let mut registry = ballista_core::registry::BallistaFunctionRegistry::default();
    for f in functions() {
        registry.aggregate_functions.insert(f.name().to_string(), f);
    }
    let config = ExecutorProcessConfig {
        override_function_registry: Some(Arc::new(registry)),
        bind_host: opts.flight.ip().to_string(),
        external_host: Some(opts.advertise),
        port: opts.flight.port(),
        grpc_port: opts.grpc_port,
        scheduler_host: opts.scheduler.0,
        scheduler_port: opts.scheduler.1,
        vcores: opts.vcores.max(1),
        work_dir: opts.work_dir,
        // Print no thread names into every log line (the defaults are for Ballista's own
        // binary, which sets up its own logging).
        print_thread_info: false,
        executor_heartbeat_interval_seconds: opts.heartbeat.as_secs().max(1),
        override_runtime_producer: Some(runtime_producer),
        ..Default::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .context("Ballista executor")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::physical_optimizer::PhysicalOptimizerRule;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::SessionContext;

    /// The plan a filter on `namespace` gives a window partitioned by it sorts by `pod` only;
    /// after the rule, by `namespace` too, and the answer is the same.
    #[tokio::test]
    async fn a_window_sort_keeps_the_partition_columns_a_filter_made_constant() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("namespace", DataType::Utf8, false),
            Field::new("pod", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["shop", "shop", "shop", "pay"])),
                Arc::new(StringArray::from(vec!["a", "b", "a", "a"])),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema, vec![vec![batch.clone()], vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        let df = ctx
            .sql(
                "SELECT namespace, pod, v, SUM(v) OVER (PARTITION BY namespace, pod ORDER BY v \
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS s \
                 FROM (SELECT namespace, pod, SUM(v) AS v FROM t WHERE namespace = 'shop' \
                       GROUP BY namespace, pod) ORDER BY pod, v",
            )
            .await
            .unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let sorts = |p: &Arc<dyn ExecutionPlan>| {
            displayable(p.as_ref())
                .indent(true)
                .to_string()
                .lines()
                .filter(|l| l.contains("SortExec: expr=["))
                .map(|l| l.trim().to_string())
                .collect::<Vec<_>>()
        };
        let before = sorts(&plan);
        assert!(
            before.iter().any(|l| !l.contains("namespace")),
            "DataFusion no longer drops the constant from the window's sort: {before:?}"
        );
        // A plan of its own (a plan's repartitions run once).
        let fixed = WindowSortKeys
            .optimize(
                df.clone().create_physical_plan().await.unwrap(),
                &Default::default(),
            )
            .unwrap();
        let after = sorts(&fixed);
        assert!(
            after
                .iter()
                .filter(|l| l.contains("pod@"))
                .all(|l| l.contains("expr=[namespace@")),
            "{after:?}\n{}",
            displayable(fixed.as_ref()).indent(true)
        );
        let want = datafusion::physical_plan::collect(plan, ctx.task_ctx())
            .await
            .unwrap();
        let got = datafusion::physical_plan::collect(fixed, ctx.task_ctx())
            .await
            .unwrap();
        assert_eq!(
            datafusion::arrow::util::pretty::pretty_format_batches(&got)
                .unwrap()
                .to_string(),
            datafusion::arrow::util::pretty::pretty_format_batches(&want)
                .unwrap()
                .to_string()
        );
    }
}

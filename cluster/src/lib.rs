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
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::prelude::SessionConfig;
use leakhound_ingest::Store;

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
            let mut state =
                datafusion::execution::SessionStateBuilder::new_from_existing(state.clone())
                    .with_session_id(state.session_id().to_string())
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
            let Some(sort) = node.children()[0].downcast_ref::<SortExec>() else {
                return Ok(Transformed::no(node));
            };
            let mut keys: Vec<PhysicalSortExpr> = partition_by
                .iter()
                .filter(|p| !sort.expr().iter().any(|s| s.expr.as_ref() == p.as_ref()))
                .map(|p| PhysicalSortExpr::new_default(Arc::clone(p)))
                .collect();
            if keys.is_empty() {
                return Ok(Transformed::no(node));
            }
            keys.extend(sort.expr().iter().cloned());
            let Some(ordering) = LexOrdering::new(keys) else {
                return Ok(Transformed::no(node));
            };
            let resorted = SortExec::new(ordering, Arc::clone(sort.input()))
                .with_preserve_partitioning(sort.preserve_partitioning())
                .with_fetch(sort.fetch());
            let node = replace_children_if_necessary(node, vec![Arc::new(resorted)])?;
            Ok(Transformed::yes(node))
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

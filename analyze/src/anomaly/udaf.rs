//! `leak_stl_iforest`: the `stl_iforest` detector's scoring as an aggregate function, so that
//! it runs where the data is (issue 19). On a Ballista cluster (`--engine ballista://…`) the
//! detector sends one statement and the executors score; in-process the detector keeps its own
//! loop (`detect::stl_iforest::findings`, unchanged).
//!
//! ```text
//!  SELECT leak_stl_iforest(cl, namespace, wk, wl, pod, minute, v, started, restarts, '<params>')
//!  FROM (engine::series::minute_sql: one row per pod and minute)   -- the rows minute_series reads
//!  GROUP BY namespace, wl                                          -- a workload with all its pods
//!     │ partial aggregates: the rows, as lists (state); final: on the executor owning the group
//!     ▼
//!  evaluate: rows ordered by (namespace, pod, minute) ──engine::series::series_of_rows──▶ the
//!  group's pod and workload series ──detect::stl_iforest::findings_within──▶ one list of
//!  findings per group (struct: scope, eval_s, fired, value, growth_per_s, score, onset_s, reason,
//!  process)
//! ```
//!
//! **Same findings to the bit.** A group holds a workload and every pod of it (pods without a
//! workload: each is its own series), so the workload sums are added in the same order as
//! in-process (pod by pod); `<params>` carries what the series alone do not: the detector's
//! [`StlIfConfig`], the evaluation times, and the span of *every* series loaded (a pod appearing
//! after its start cuts its workload's series). Minute means are averages of integer counts (an
//! exact sum whatever the partial order). Floats cross the engine as Arrow `Float64`, bit for
//! bit; the parameters are JSON, and a config that does not read back to the same text is
//! refused (a float off by one ulp would change findings). `process` is the id of the process
//! that scored the group: the client logs which processes did (the cluster test asserts they
//! are the executors).
//!
//! The function is registered in every session (`session::session_on`) and on the cluster's
//! scheduler and executors (`leakhound-cluster`). Its parameters are hostile input like any SQL
//! (`leakhound sql` can call it): malformed or oversized parameters are an error, and a scoring
//! that panics on odd parameters is an error of the query, not a crash of the executor.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Builder, ListArray, RecordBatch,
    StringBuilder, StructArray, UInt32Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::{SortColumn, SortOptions};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, TimeUnit};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use datafusion::physical_plan::expressions::Literal;
use serde::{Deserialize, Serialize};

use super::StlIfConfig;
use crate::detect::{DetectorKind, Finding, Inputs};
use crate::engine::Scope;
use crate::error::{Error, Result};

type DfResult<T> = datafusion::common::Result<T>;

/// The function's name in SQL.
pub const NAME: &str = "leak_stl_iforest";

/// The input columns, in argument order, with the types they are kept in (then the parameters).
const COLUMNS: [&str; 9] = [
    "cl",
    "namespace",
    "wk",
    "wl",
    "pod",
    "minute",
    "v",
    "started",
    "restarts",
];

fn column_type(i: usize) -> DataType {
    match i {
        0..=4 => DataType::Utf8,
        5 => DataType::Timestamp(TimeUnit::Microsecond, None),
        6 => DataType::Float64,
        _ => DataType::Int64,
    }
}

/// At most this many partitions (a cluster's tasks) by default: every scan task writes a
/// shuffle file per partition, so a partition per workload stops paying well before a fleet's
/// thousands of workloads (a cluster of more than 64 task slots sets `--score-partitions`).
const MAX_AUTO_PARTITIONS: usize = 256;

/// The partitions the groups are scored in: `configured`, else one per workload scored
/// (`workloads`; each partition's task scores the groups hashed to it, so that every slot of a
/// cluster of any size gets work while there is work), at most [`MAX_AUTO_PARTITIONS`]; never
/// fewer than the session's own.
pub(crate) fn scoring_partitions(configured: usize, workloads: usize, session: usize) -> usize {
    let n = if configured > 0 {
        configured
    } else {
        workloads.min(MAX_AUTO_PARTITIONS)
    };
    n.max(session).max(1)
}

/// At most this many evaluation times per call (a 90-day replay every minute is 129,600).
const MAX_EVALS: usize = 1_000_000;

/// When the detector evaluates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum EvalTimes {
    /// `n` times from `first`, every `step` seconds (what the engine makes).
    Every { first: i64, step: i64, n: usize },
    /// Any other list.
    At(Vec<i64>),
}

impl EvalTimes {
    fn of(times: &[i64]) -> EvalTimes {
        let step = match times {
            [a, b, ..] => b - a,
            _ => 1,
        };
        let regular = step > 0
            && times
                .iter()
                .enumerate()
                .all(|(i, t)| Some(*t) == (i as i64).checked_mul(step).map(|d| times[0] + d));
        match times.first() {
            Some(first) if regular => EvalTimes::Every {
                first: *first,
                step,
                n: times.len(),
            },
            _ => EvalTimes::At(times.to_vec()),
        }
    }

    fn times(&self) -> std::result::Result<Vec<i64>, String> {
        match self {
            EvalTimes::Every { first, step, n } => {
                if *n > MAX_EVALS || *step <= 0 {
                    return Err(format!(
                        "evaluations: {n} every {step} s (at most {MAX_EVALS}, step > 0)"
                    ));
                }
                (0..*n as i64)
                    .map(|i| i.checked_mul(*step).and_then(|d| first.checked_add(d)))
                    .collect::<Option<Vec<i64>>>()
                    .ok_or_else(|| "evaluation times overflow".to_string())
            }
            EvalTimes::At(v) if v.len() > MAX_EVALS => Err(format!(
                "{} evaluation times (at most {MAX_EVALS})",
                v.len()
            )),
            EvalTimes::At(v) if v.windows(2).any(|w| w[1] <= w[0]) => {
                Err("evaluation times are not strictly increasing".to_string())
            }
            EvalTimes::At(v) => Ok(v.clone()),
        }
    }
}

/// What a call needs besides the rows: the function's last argument, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Params {
    stl: StlIfConfig,
    /// First and last minute of every series the analysis loaded (not just this group's).
    span: (i64, i64),
    eval: EvalTimes,
}

impl Params {
    fn parse(text: &str) -> DfResult<(Params, Vec<i64>)> {
        let bad =
            |why: String| DataFusionError::Execution(format!("{NAME}: bad parameters ({why})"));
        if text.len() > 64 * 1024 * 1024 {
            return Err(bad(format!("{} bytes", text.len())));
        }
        let p: Params = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        // Floats must read back exactly: the same text again, or a value moved by an ulp.
        let again = serde_json::to_string(&p).map_err(|e| bad(e.to_string()))?;
        if again != text {
            return Err(bad(
                "they do not read back exactly; write them as Params::text does".into(),
            ));
        }
        let times = p.eval.times().map_err(bad)?;
        Ok((p, times))
    }

    fn text(&self) -> String {
        serde_json::to_string(self).expect("parameters serialize")
    }
}

/// The aggregate function (register with [`udaf`]).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LeakStlIforest {
    signature: Signature,
}

/// `leak_stl_iforest` as a DataFusion aggregate function.
pub fn udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::from(LeakStlIforest {
        signature: Signature::any(COLUMNS.len() + 1, Volatility::Immutable),
    }))
}

/// The fields of one finding in the function's result.
fn finding_fields() -> Fields {
    Fields::from(vec![
        Field::new("cluster", DataType::Utf8, true),
        Field::new("namespace", DataType::Utf8, false),
        Field::new("workload_kind", DataType::Utf8, true),
        Field::new("workload", DataType::Utf8, true),
        Field::new("pod", DataType::Utf8, true),
        Field::new("eval_s", DataType::Int64, false),
        Field::new("fired", DataType::Boolean, false),
        Field::new("value", DataType::Float64, false),
        Field::new("growth_per_s", DataType::Float64, false),
        Field::new("score", DataType::Float64, false),
        Field::new("onset_s", DataType::Int64, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("process", DataType::UInt32, false),
    ])
}

fn result_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(finding_fields()),
        true,
    )))
}

impl AggregateUDFImpl for LeakStlIforest {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(result_type())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(COLUMNS
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Arc::new(Field::new_list(
                    format!("{}[{c}]", args.name),
                    Field::new_list_field(column_type(i), true),
                    true,
                ))
            })
            .collect())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let text = args
            .exprs
            .get(COLUMNS.len())
            .and_then(|e| e.downcast_ref::<Literal>())
            .and_then(|l| l.value().try_as_str().flatten())
            .ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "{NAME}: the last argument must be a string literal (the parameters)"
                ))
            })?;
        let (params, times) = Params::parse(text)?;
        Ok(Box::new(Rows {
            params: Arc::new((params, times)),
            chunks: vec![Vec::new(); COLUMNS.len()],
        }))
    }
}

/// A group's rows, kept until the group is scored.
#[derive(Debug)]
struct Rows {
    params: Arc<(Params, Vec<i64>)>,
    /// Per input column, its chunks (in the column's kept type).
    chunks: Vec<Vec<ArrayRef>>,
}

impl Rows {
    fn columns(&self) -> DfResult<Vec<ArrayRef>> {
        self.chunks
            .iter()
            .enumerate()
            .map(|(i, chunks)| {
                if chunks.is_empty() {
                    return Ok(arrow::array::new_empty_array(&column_type(i)));
                }
                let refs: Vec<&dyn Array> = chunks.iter().map(|a| a.as_ref()).collect();
                Ok(arrow::compute::concat(&refs)?)
            })
            .collect()
    }
}

impl Accumulator for Rows {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        for (i, chunks) in self.chunks.iter_mut().enumerate() {
            let a = values.get(i).ok_or_else(|| {
                DataFusionError::Execution(format!("{NAME}: missing argument {}", COLUMNS[i]))
            })?;
            chunks.push(arrow::compute::cast(a, &column_type(i))?);
        }
        Ok(())
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        let cols = self.columns()?;
        self.chunks = cols.iter().map(|c| vec![c.clone()]).collect();
        Ok(cols
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let list = ListArray::new(
                    Arc::new(Field::new_list_field(column_type(i), true)),
                    OffsetBuffer::from_lengths([c.len()]),
                    c,
                    None,
                );
                ScalarValue::List(Arc::new(list))
            })
            .collect())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        for (i, chunks) in self.chunks.iter_mut().enumerate() {
            let lists = states
                .get(i)
                .and_then(|s| s.as_list_opt::<i32>())
                .ok_or_else(|| DataFusionError::Execution(format!("{NAME}: bad state")))?;
            for r in 0..lists.len() {
                if lists.is_valid(r) {
                    chunks.push(arrow::compute::cast(&lists.value(r), &column_type(i))?);
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let cols = self.columns()?;
        let params = self.params.clone();
        let rows = cols[0].len();
        let scored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            score(cols, &params.0, &params.1)
        }))
        .map_err(|_| {
            DataFusionError::Execution(format!(
                "{NAME}: the scoring failed on these parameters ({rows} rows)"
            ))
        })??;
        tracing::debug!(rows, findings = scored.len(), "{NAME}: a group scored");
        Ok(ScalarValue::List(Arc::new(to_list(&scored)?)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .chunks
                .iter()
                .flatten()
                .map(|a| a.get_array_memory_size())
                .sum::<usize>()
    }
}

/// The findings of one group: its rows ordered as `minute_series` orders them, made into series
/// by the same code, scored by the same code.
fn score(cols: Vec<ArrayRef>, params: &Params, times: &[i64]) -> DfResult<Vec<Finding>> {
    let order = arrow::compute::lexsort_to_indices(
        &[1, 4, 5].map(|i| SortColumn {
            values: cols[i].clone(),
            options: Some(SortOptions {
                descending: false,
                nulls_first: false,
            }),
        }),
        None,
    )?;
    let sorted = cols
        .iter()
        .map(|c| arrow::compute::take(c.as_ref(), &order, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let schema = Schema::new(
        COLUMNS
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(*c, column_type(i), true))
            .collect::<Vec<_>>(),
    );
    let batch = RecordBatch::try_new(Arc::new(schema), sorted)?;
    let series = crate::engine::series::series_of_rows(&[batch])
        .map_err(|e| DataFusionError::Execution(format!("{NAME}: {e}")))?;
    Ok(crate::detect::stl_iforest::findings_within(
        &series,
        params.span,
        times,
        &params.stl,
    ))
}

/// Findings as the function's value: a list of structs.
fn to_list(fs: &[Finding]) -> DfResult<ListArray> {
    let (mut cl, mut ns, mut wk, mut wl, mut pod, mut reason) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut eval, mut onset) = (Int64Builder::new(), Int64Builder::new());
    let (mut value, mut growth, mut score) = (
        Float64Builder::new(),
        Float64Builder::new(),
        Float64Builder::new(),
    );
    let (mut fired, mut process) = (BooleanBuilder::new(), UInt32Builder::new());
    let pid = std::process::id();
    for f in fs {
        cl.append_option(f.scope.cluster.as_deref());
        ns.append_value(&f.scope.namespace);
        wk.append_option(f.scope.workload_kind.as_deref());
        wl.append_option(f.scope.workload.as_deref());
        pod.append_option(f.scope.pod.as_deref());
        eval.append_value(f.eval_s);
        fired.append_value(f.fired);
        value.append_value(f.value);
        growth.append_value(f.growth_per_s);
        score.append_value(f.score);
        onset.append_option(f.onset_s);
        reason.append_value(&f.reason);
        process.append_value(pid);
    }
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(cl.finish()),
        Arc::new(ns.finish()),
        Arc::new(wk.finish()),
        Arc::new(wl.finish()),
        Arc::new(pod.finish()),
        Arc::new(eval.finish()),
        Arc::new(fired.finish()),
        Arc::new(value.finish()),
        Arc::new(growth.finish()),
        Arc::new(score.finish()),
        Arc::new(onset.finish()),
        Arc::new(reason.finish()),
        Arc::new(process.finish()),
    ];
    let s = StructArray::try_new(finding_fields(), arrays, None)?;
    Ok(ListArray::new(
        Arc::new(Field::new_list_field(
            DataType::Struct(finding_fields()),
            true,
        )),
        OffsetBuffer::from_lengths([fs.len()]),
        Arc::new(s),
        None,
    ))
}

/// The statement that scores every series of `input` with `leak_stl_iforest`.
pub fn statement(input: &Inputs<'_>) -> String {
    let params = Params {
        stl: input.cfg.stl.clone(),
        span: crate::detect::stl_iforest::fleet_span(input.series, input.span_s),
        eval: EvalTimes::of(input.eval_times),
    };
    format!(
        "SELECT {NAME}({cols}, '{p}') AS f FROM ({rows}) GROUP BY namespace, wl",
        cols = COLUMNS.join(", "),
        p = params.text().replace('\'', "''"),
        rows = crate::engine::series::minute_sql(
            input.series_from_s,
            input.to_s,
            &input.cfg.namespace
        ),
    )
}

/// `stl_iforest`'s findings computed by the engine (on a cluster: by its executors), in the
/// order the in-process detector gives them (by scope, then time).
pub async fn findings_on_engine(input: &Inputs<'_>) -> Result<Vec<Finding>> {
    if input.series.is_empty() || input.eval_times.is_empty() {
        return Ok(Vec::new());
    }
    // Groups spread over more partitions than the session's 2, so that every executor's task
    // slots get groups to score (a cluster runs a stage's partitions as its tasks).
    let workloads = input.series.keys().filter(|s| s.pod.is_none()).count();
    let mut state = input.ctx.state();
    let options = state.config_mut().options_mut();
    options.execution.target_partitions = scoring_partitions(
        input.cfg.score_partitions,
        workloads,
        options.execution.target_partitions,
    );
    tracing::debug!(
        partitions = options.execution.target_partitions,
        workloads,
        "{NAME}: scoring partitions"
    );
    let ctx = datafusion::prelude::SessionContext::new_with_state(state);
    let batches = ctx.sql(&statement(input)).await?.collect().await?;
    let mut by_scope: BTreeMap<Scope, Vec<Finding>> = BTreeMap::new();
    let mut processes = std::collections::BTreeSet::new();
    for b in &batches {
        let lists = b
            .column_by_name("f")
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or_else(|| Error::MissingColumn("f".into()))?;
        for r in 0..lists.len() {
            if lists.is_null(r) {
                continue;
            }
            let rows = lists.value(r);
            let s = rows.as_struct_opt().ok_or_else(|| Error::ColumnType {
                column: "f".into(),
                want: "a list of findings",
            })?;
            for f in from_struct(s, &mut processes)? {
                by_scope.entry(f.scope.clone()).or_default().push(f);
            }
        }
    }
    let series = by_scope.len();
    let out: Vec<Finding> = by_scope.into_values().flatten().collect();
    tracing::info!(
        series,
        findings = out.len(),
        processes = ?processes,
        "stl_iforest scored by the engine ({NAME})"
    );
    Ok(out)
}

/// The findings of one group's value (and the processes that scored them, into `processes`).
fn from_struct(
    s: &StructArray,
    processes: &mut std::collections::BTreeSet<u32>,
) -> Result<Vec<Finding>> {
    let b = RecordBatch::from(s.clone());
    use crate::engine::columns::{bools, f64s, i64s, strs};
    let scopes = crate::engine::columns::scope_rows(&b)?;
    let (eval, onset) = (i64s(&b, "eval_s")?, i64s(&b, "onset_s")?);
    let (value, growth, score) = (
        f64s(&b, "value")?,
        f64s(&b, "growth_per_s")?,
        f64s(&b, "score")?,
    );
    let (fired, reason, process) = (
        bools(&b, "fired")?,
        strs(&b, "reason")?,
        i64s(&b, "process")?,
    );
    let mut out = Vec::with_capacity(b.num_rows());
    for (i, scope) in scopes.into_iter().enumerate() {
        if let Some(p) = process[i] {
            processes.insert(p as u32);
        }
        out.push(Finding {
            scope,
            detector: DetectorKind::StlIforest,
            eval_s: eval[i].ok_or_else(|| Error::MissingColumn("eval_s".into()))?,
            fired: fired[i],
            value: value[i].unwrap_or_default(),
            baseline: None,
            growth_per_s: growth[i].unwrap_or_default(),
            score: score[i].unwrap_or_default(),
            reason: reason[i].clone().unwrap_or_default(),
            onset_s: onset[i],
            sustained: false,
            window_s: 3_600,
            max_age_s: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster of any size gets a task per workload to spread (up to the cap), a configured
    /// count wins, and the session's own partitions are the floor.
    #[test]
    fn scoring_spreads_over_a_partition_per_workload_up_to_the_cap() {
        assert_eq!(scoring_partitions(0, 50, 2), 50);
        assert_eq!(scoring_partitions(0, 5_000, 2), MAX_AUTO_PARTITIONS);
        assert_eq!(scoring_partitions(0, 1, 2), 2, "never below the session's");
        assert_eq!(scoring_partitions(0, 0, 0), 1);
        assert_eq!(scoring_partitions(400, 5_000, 2), 400, "configured");
        assert_eq!(scoring_partitions(3, 5_000, 8), 8);
    }

    /// The detector's in-process findings and `leak_stl_iforest`'s through SQL, on scenario
    /// stores with rollouts, restarts, canaries and several pods per workload: equal, every
    /// float to the bit, in the same order.
    #[test]
    fn the_function_finds_what_the_detector_finds_to_the_bit() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut fired = 0;
        for kind in [
            "fast_leak",
            "deploy_step",
            "oom_sawtooth",
            "frequent_deploy_leak",
            "canary_leak",
        ] {
            let s = crate::scenarios::generate(kind, 3).unwrap();
            let store =
                leakhound_ingest::Store::open(dir.path().join(kind).to_str().unwrap()).unwrap();
            let cfg = crate::engine::AnalyzeConfig::default();
            let step = cfg.step_s;
            let to = s.end_s.div_euclid(step) * step;
            let from = (to - 12 * 3_600).max(s.start_s + 7_200).div_euclid(step) * step;
            let eval_times: Vec<i64> = (from..=to).step_by(step as usize).collect();
            let (direct, sql) = rt.block_on(async {
                crate::backtest::load(&store, &s, crate::backtest::Evidence::Counts)
                    .await
                    .unwrap();
                let ctx = crate::session::session(&store).await.unwrap();
                let series_from_s = from - cfg.context_s;
                let series = crate::engine::series::minute_series(&ctx, series_from_s, to, "%")
                    .await
                    .unwrap();
                let input = Inputs {
                    ctx: &ctx,
                    from_s: from,
                    to_s: to,
                    eval_times: &eval_times,
                    series: &series,
                    series_from_s,
                    span_s: None,
                    cfg: &cfg,
                };
                let direct = crate::detect::stl_iforest::findings(&series, None, &eval_times, &cfg);
                (direct, findings_on_engine(&input).await.unwrap())
            });
            assert!(!direct.is_empty(), "{kind}: no findings");
            assert_eq!(sql.len(), direct.len(), "{kind}: number of findings");
            for (a, b) in direct.iter().zip(&sql) {
                let key = |f: &Finding| {
                    (
                        f.scope.clone(),
                        f.eval_s,
                        f.fired,
                        f.value.to_bits(),
                        f.growth_per_s.to_bits(),
                        f.score.to_bits(),
                        f.onset_s,
                        f.reason.clone(),
                        f.baseline.map(f64::to_bits),
                        f.sustained,
                        f.window_s,
                    )
                };
                assert_eq!(key(b), key(a), "{kind}: a finding differs");
            }
            fired += direct.iter().filter(|f| f.fired).count();
        }
        assert!(fired > 0, "no finding fired over five scenarios with leaks");
    }

    #[test]
    fn eval_times_travel_as_a_progression_or_a_list() {
        let every = EvalTimes::of(&[600, 900, 1200]);
        assert_eq!(
            every,
            EvalTimes::Every {
                first: 600,
                step: 300,
                n: 3
            }
        );
        assert_eq!(every.times().unwrap(), vec![600, 900, 1200]);
        let odd = EvalTimes::of(&[600, 900, 1300]);
        assert_eq!(odd.times().unwrap(), vec![600, 900, 1300]);
        assert!(matches!(odd, EvalTimes::At(_)));
        assert_eq!(EvalTimes::of(&[5]).times().unwrap(), vec![5]);
        // Hostile: huge, overflowing, unordered.
        for bad in [
            EvalTimes::Every {
                first: 0,
                step: 60,
                n: MAX_EVALS + 1,
            },
            EvalTimes::Every {
                first: i64::MAX - 10,
                step: 60,
                n: 2,
            },
            EvalTimes::Every {
                first: 0,
                step: 0,
                n: 2,
            },
            EvalTimes::At(vec![3, 2]),
        ] {
            assert!(bad.times().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parameters_read_back_exactly_or_are_refused() {
        let p = Params {
            stl: StlIfConfig::default(),
            span: (0, 86_400),
            eval: EvalTimes::of(&[600, 900]),
        };
        let (q, times) = Params::parse(&p.text()).unwrap();
        assert_eq!(q, p);
        assert_eq!(
            q.stl.slow_min_growth_per_s.to_bits(),
            p.stl.slow_min_growth_per_s.to_bits()
        );
        assert_eq!(times, vec![600, 900]);
        for bad in [
            "".to_string(),
            "{}".to_string(),
            "[1,2]".to_string(),
            // Same value, other text: refused (only the canonical text is known to be exact).
            p.text()
                .replace("\"span\":[0,86400]", "\"span\":[0, 86400]"),
            p.text().replace("\"n\":2", "\"n\":1000000000"),
        ] {
            assert!(Params::parse(&bad).is_err(), "{bad:?} accepted");
        }
    }
}

//! Prometheus `query_range` results (`resultType: matrix`) as goroutine-count rows.
//!
//! Series labels map to the target identity the way the Kubernetes service-discovery relabelling
//! conventions name them: `namespace` (or `kubernetes_namespace`, `exported_namespace`), `pod`
//! (or `kubernetes_pod_name`, `pod_name`; the `instance` when there is no pod label),
//! `container`, `cluster`, `node`. The metric name picks the column: `go_goroutines` →
//! goroutines, `go_threads` → threads, `go_memstats_heap_alloc_bytes` → heap bytes; a series
//! without `__name__` (an expression result) is taken as goroutines.
//!
//! Two readers of the same format. [`stream_query_range`] reads a document as a stream, series
//! by series, and hands its rows on in batches of a bounded size, in columns
//! ([`SeriesRows`]: each series' target once, its times and counts as arrays, no row object per
//! point): memory does not grow with the document. It takes the shape Prometheus answers with (`status`, then `data` with
//! `resultType` before `result`, each series' `metric` before its `values`, timestamps rising),
//! one series per target, every series a goroutine count; a document outside that shape (a
//! second series for the same target, `go_threads` or heap series whose points join the
//! goroutine rows, keys in another order) makes it stop with [`Streamed::NeedsMerge`], and the
//! caller reads the document again with [`parse_query_range`], which holds it whole and merges
//! rows per target and timestamp. Both accept and refuse the same documents; a status, result
//! type or series error reads the same from both, while the words of a JSON syntax or type
//! error are the whole-document reader's (backfill reads a refused document again with it).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use std::sync::Arc;

use crate::rows::{CountRow, SeriesRows, Target};

#[derive(Debug, Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    error: Option<String>,
    data: Option<Data>,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct Series {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Why a JSON document could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromJsonError {
    #[error("not valid JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("Prometheus answered status {status:?}: {error}")]
    Status { status: String, error: String },
    #[error(
        "resultType is {0:?}, expected \"matrix\" (save the output of /api/v1/query_range, not /api/v1/query)"
    )]
    NotMatrix(String),
    #[error("series {index}: {message}")]
    Series { index: usize, message: String },
}

fn json_err(e: serde_json::Error) -> PromJsonError {
    PromJsonError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}

/// Parse a saved `query_range` answer into count rows (one per target and timestamp).
pub fn parse_query_range(bytes: &[u8], source: &str) -> Result<Vec<CountRow>, PromJsonError> {
    let resp: Response = serde_json::from_slice(bytes).map_err(json_err)?;
    if resp.status != "success" {
        return Err(PromJsonError::Status {
            status: resp.status,
            error: resp.error.unwrap_or_default(),
        });
    }
    let data = resp
        .data
        .ok_or_else(|| PromJsonError::NotMatrix("(no data)".into()))?;
    if data.result_type != "matrix" {
        return Err(PromJsonError::NotMatrix(data.result_type));
    }
    let series: Vec<Series> = serde_json::from_value(data.result).map_err(json_err)?;
    let mut rows: BTreeMap<(Target, i64), CountRow> = BTreeMap::new();
    for (index, s) in series.into_iter().enumerate() {
        let target = target_from_labels(&s.metric).ok_or_else(|| PromJsonError::Series {
            index,
            message: format!(
                "labels {:?} name no pod or instance; cannot tell which target it is",
                s.metric
            ),
        })?;
        let name = s
            .metric
            .get("__name__")
            .map(String::as_str)
            .unwrap_or("go_goroutines");
        for (t, v) in s.values {
            let Ok(v) = v.parse::<f64>() else {
                return Err(PromJsonError::Series {
                    index,
                    message: format!("value {v:?} at {t} is not a number"),
                });
            };
            if !v.is_finite() || !t.is_finite() {
                continue; // NaN/Inf: a stale marker or a failed scrape, not a value.
            }
            if !(0.0..=1e15).contains(&v) {
                return Err(PromJsonError::Series {
                    index,
                    message: format!("value {v} at {t} is out of range"),
                });
            }
            let ts_us = (t * 1e6).round() as i64;
            let row = rows
                .entry((target.clone(), ts_us))
                .or_insert_with(|| CountRow {
                    target: target.clone(),
                    ts_us,
                    goroutines: -1,
                    source: "prometheus".into(),
                    format: "prometheus".into(),
                    content_hash: Some(source.to_string()),
                    ..Default::default()
                });
            let v = v.round() as i64;
            match name {
                "go_threads" => row.threads = Some(v),
                "go_memstats_heap_alloc_bytes" => row.heap_bytes = Some(v),
                _ => row.goroutines = v,
            }
        }
    }
    Ok(rows.into_values().filter(|r| r.goroutines >= 0).collect())
}

/// How [`stream_query_range`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streamed {
    /// Every row was handed on; this many.
    Done { rows: u64 },
    /// The document is outside the streamable shape (see the module header): nothing it
    /// handed on counts, read it with [`parse_query_range`].
    NeedsMerge,
}

/// Why a stream stopped early (kept aside: serde's error carries text only).
enum Stop {
    Err(PromJsonError),
    Sink(String),
    Merge,
}

fn stream_inner(
    r: &mut dyn Read,
    batch: usize,
    sink: &mut dyn FnMut(SeriesRows) -> Result<(), String>,
) -> Result<Streamed, StreamError> {
    let batch = batch.max(1);
    let mut st = StreamState {
        batch,
        sink,
        rows: SeriesRows::with_capacity(batch),
        total: 0,
        stop: None,
        seen: HashSet::new(),
        index: 0,
        result_type: None,
        status: None,
        error: None,
        has_data: false,
        keys: HashSet::new(),
    };
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 16, r));
    let parsed = (&mut st).deserialize(&mut de).and_then(|()| de.end());
    if let Some(stop) = st.stop.take() {
        return match stop {
            Stop::Err(e) => Err(StreamError::Json(e)),
            Stop::Sink(e) => Err(StreamError::Sink(e)),
            Stop::Merge => Ok(Streamed::NeedsMerge),
        };
    }
    if let Err(e) = parsed {
        return Err(StreamError::Json(json_err(e)));
    }
    let status = st.status.take().unwrap_or_default();
    if status != "success" {
        return Err(StreamError::Json(PromJsonError::Status {
            status,
            error: st.error.take().unwrap_or_default(),
        }));
    }
    match st.result_type.take() {
        None if !st.has_data => {
            return Err(StreamError::Json(PromJsonError::NotMatrix(
                "(no data)".into(),
            )));
        }
        Some(t) if t != "matrix" => return Err(StreamError::Json(PromJsonError::NotMatrix(t))),
        // `data` without `resultType`: the whole-document reader says why.
        None => return Ok(Streamed::NeedsMerge),
        Some(_) => {}
    }
    if !st.rows.is_empty() {
        let rows = std::mem::take(&mut st.rows);
        (st.sink)(rows).map_err(StreamError::Sink)?;
    }
    Ok(Streamed::Done { rows: st.total })
}

/// Why [`stream_query_range`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Json(PromJsonError),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("{0}")]
    Sink(String),
}

struct StreamState<'s> {
    batch: usize,
    sink: &'s mut dyn FnMut(SeriesRows) -> Result<(), String>,
    rows: SeriesRows,
    total: u64,
    stop: Option<Stop>,
    /// Targets of the series so far: a second series of one target needs merging.
    seen: HashSet<Target>,
    index: usize,
    result_type: Option<String>,
    status: Option<String>,
    error: Option<String>,
    has_data: bool,
    /// Keys of the answer and its `data` met so far: one met twice is for the whole-document
    /// reader to refuse, with its words.
    keys: HashSet<&'static str>,
}

impl StreamState<'_> {
    fn first<E: de::Error>(&mut self, key: &'static str) -> Result<(), E> {
        if self.keys.insert(key) {
            Ok(())
        } else {
            Err(self.halt(Stop::Merge))
        }
    }

    fn halt<E: de::Error>(&mut self, why: Stop) -> E {
        self.stop = Some(why);
        E::custom("stopped")
    }

    fn push(&mut self, target: &Arc<Target>, ts_us: i64, goroutines: i64) -> Result<(), Stop> {
        self.rows.push(target, ts_us, goroutines);
        self.total += 1;
        if self.rows.len() >= self.batch {
            let rows = std::mem::replace(&mut self.rows, SeriesRows::with_capacity(self.batch));
            (self.sink)(rows).map_err(Stop::Sink)?;
        }
        Ok(())
    }
}

/// Keeps a read error aside: serde_json turns it into text.
struct KeepIo<'r> {
    inner: &'r mut dyn Read,
    err: &'r mut Option<std::io::Error>,
}

impl Read for KeepIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                let copy = std::io::Error::new(e.kind(), e.to_string());
                *self.err = Some(e);
                Err(copy)
            }
        }
    }
}

/// Read a saved `query_range` answer from `r` as a stream and hand its rows to `sink` in
/// columns ([`SeriesRows`]: each target once per run, not once per point), at most `batch`
/// rows at a time. Returns
/// [`Streamed::NeedsMerge`] for a document that needs rows merged across series. On an error,
/// rows handed on before are not to be kept: a read error of `r` is returned as the reader gave
/// it ([`StreamError::Io`]), `sink`'s as [`StreamError::Sink`], a document refused as
/// [`StreamError::Json`] (for the exact words [`parse_query_range`] would use, read it again
/// with that: its messages name positions in the whole document).
pub fn stream_query_range(
    r: &mut dyn Read,
    batch: usize,
    sink: &mut dyn FnMut(SeriesRows) -> Result<(), String>,
) -> Result<Streamed, StreamError> {
    let mut err = None;
    let out = stream_inner(
        &mut KeepIo {
            inner: r,
            err: &mut err,
        },
        batch,
        sink,
    );
    match (out, err) {
        (Err(StreamError::Json(PromJsonError::Json { .. })), Some(e)) => Err(StreamError::Io(e)),
        (out, _) => out,
    }
}

impl<'de> DeserializeSeed<'de> for &mut StreamState<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut StreamState<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Prometheus API answer (an object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            match k.as_ref() {
                "status" => {
                    self.first("status")?;
                    self.status = Some(m.next_value()?);
                }
                "error" => {
                    self.first("error")?;
                    self.error = m.next_value()?;
                }
                "data" => {
                    self.first("data")?;
                    self.has_data = true;
                    m.next_value_seed(DataSeed(&mut *self))?;
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct DataSeed<'a, 's>(&'a mut StreamState<'s>);

impl<'de> DeserializeSeed<'de> for DataSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the answer's data")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        // `"data": null`: as if absent.
        self.0.has_data = false;
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let st = self.0;
        while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            match k.as_ref() {
                "resultType" => {
                    st.first("resultType")?;
                    st.result_type = Some(m.next_value()?);
                }
                "result" => match st.first("result").map(|()| st.result_type.as_deref())? {
                    Some("matrix") => m.next_value_seed(Matrix(&mut *st))?,
                    Some(_) => {
                        m.next_value::<IgnoredAny>()?;
                    }
                    // `result` before `resultType`: not the order Prometheus writes.
                    None => return Err(st.halt(Stop::Merge)),
                },
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !st.keys.contains("result") || !st.keys.contains("resultType") {
            // A `data` without one of them: the whole-document reader says which.
            return Err(st.halt(Stop::Merge));
        }
        Ok(())
    }
}

struct Matrix<'a, 's>(&'a mut StreamState<'s>);

impl<'de> DeserializeSeed<'de> for Matrix<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Matrix<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        while s.next_element_seed(OneSeries(&mut *self.0))?.is_some() {
            self.0.index += 1;
        }
        Ok(())
    }
}

struct OneSeries<'a, 's>(&'a mut StreamState<'s>);

impl<'de> DeserializeSeed<'de> for OneSeries<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OneSeries<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct Series")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let st = self.0;
        let mut target: Option<Arc<Target>> = None;
        let (mut saw_metric, mut saw_values) = (false, false);
        while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            match k.as_ref() {
                "metric" => {
                    if saw_metric {
                        return Err(st.halt(Stop::Merge));
                    }
                    saw_metric = true;
                    let metric: BTreeMap<String, String> = m.next_value()?;
                    let name = metric
                        .get("__name__")
                        .map(String::as_str)
                        .unwrap_or("go_goroutines");
                    if matches!(name, "go_threads" | "go_memstats_heap_alloc_bytes") {
                        return Err(st.halt(Stop::Merge));
                    }
                    let Some(t) = target_from_labels(&metric) else {
                        let e = PromJsonError::Series {
                            index: st.index,
                            message: format!(
                                "labels {metric:?} name no pod or instance; cannot tell which target it is"
                            ),
                        };
                        return Err(st.halt(Stop::Err(e)));
                    };
                    if !st.seen.insert(t.clone()) {
                        return Err(st.halt(Stop::Merge));
                    }
                    target = Some(Arc::new(t));
                }
                "values" => {
                    if saw_values {
                        return Err(st.halt(Stop::Merge));
                    }
                    saw_values = true;
                    let Some(t) = target.as_ref() else {
                        // `values` before `metric`: not the order Prometheus writes.
                        return Err(st.halt(Stop::Merge));
                    };
                    m.next_value_seed(Values {
                        st: &mut *st,
                        target: t,
                    })?;
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !saw_metric {
            return Err(st.halt(Stop::Merge));
        }
        Ok(())
    }
}

struct Values<'a, 's> {
    st: &'a mut StreamState<'s>,
    target: &'a Arc<Target>,
}

impl<'de> DeserializeSeed<'de> for Values<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Values<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        let st = self.st;
        let mut last: Option<i64> = None;
        while let Some((t, v)) = s.next_element::<(f64, NumText)>()? {
            let v = match v.0 {
                Ok(v) => v,
                Err(text) => {
                    let e = PromJsonError::Series {
                        index: st.index,
                        message: format!("value {text:?} at {t} is not a number"),
                    };
                    return Err(st.halt(Stop::Err(e)));
                }
            };
            if !v.is_finite() || !t.is_finite() {
                continue; // NaN/Inf: a stale marker or a failed scrape, not a value.
            }
            if !(0.0..=1e15).contains(&v) {
                let e = PromJsonError::Series {
                    index: st.index,
                    message: format!("value {v} at {t} is out of range"),
                };
                return Err(st.halt(Stop::Err(e)));
            }
            let ts_us = (t * 1e6).round() as i64;
            // A timestamp again or going back: rows to merge, not to append.
            if last.is_some_and(|l| ts_us <= l) {
                return Err(st.halt(Stop::Merge));
            }
            last = Some(ts_us);
            if let Err(why) = st.push(self.target, ts_us, v.round() as i64) {
                return Err(st.halt(why));
            }
        }
        Ok(())
    }
}

/// A sample value: Prometheus writes numbers as strings (`"12"`, `"NaN"`, `"+Inf"`). Parsed
/// from the text as it is read, without keeping it; the text when it is not a number.
struct NumText(Result<f64, String>);

impl<'de> Deserialize<'de> for NumText {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<NumText, E> {
                Ok(NumText(s.parse::<f64>().map_err(|_| s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

fn target_from_labels(m: &BTreeMap<String, String>) -> Option<Target> {
    let get = |keys: &[&str]| keys.iter().find_map(|k| m.get(*k).cloned());
    let instance = get(&["instance"]);
    let pod = get(&["pod", "kubernetes_pod_name", "pod_name"]).or_else(|| instance.clone())?;
    Some(Target {
        cluster: get(&["cluster"]),
        namespace: get(&["namespace", "kubernetes_namespace", "exported_namespace"])
            .unwrap_or_default(),
        workload_kind: None,
        workload: get(&["workload", "deployment", "job"]),
        pod,
        container: get(&["container", "container_name"]),
        node: get(&["node", "kubernetes_node"]),
        instance,
    })
}

/// Whether the head of a document looks like a Prometheus API answer.
pub fn looks_like_json(head: &[u8]) -> bool {
    head.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix() {
        let j = br#"{"status":"success","data":{"resultType":"matrix","result":[
          {"metric":{"__name__":"go_goroutines","namespace":"prod","pod":"api-1","instance":"10.0.0.1:8080"},
           "values":[[1795839000,"12"],[1795839015,"NaN"],[1795839030,"14"]]},
          {"metric":{"__name__":"go_threads","namespace":"prod","pod":"api-1","instance":"10.0.0.1:8080"},
           "values":[[1795839000,"7"]]}]}}"#;
        let rows = parse_query_range(j, "h").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].goroutines, 12);
        assert_eq!(rows[0].threads, Some(7));
        assert_eq!(rows[1].goroutines, 14);
        assert_eq!(rows[0].target.pod, "api-1");
    }

    /// Stream `j` in batches of `batch`; the rows, or NeedsMerge / the error.
    fn streamed(j: &[u8], batch: usize) -> Result<Option<Vec<CountRow>>, PromJsonError> {
        let mut rows = Vec::new();
        let out = stream_query_range(&mut &j[..], batch, &mut |b| {
            assert!(!b.is_empty() && b.len() <= batch);
            assert_eq!(b.runs.iter().map(|(_, n)| n).sum::<usize>(), b.len());
            rows.extend(b.to_rows(Some("h")));
            Ok(())
        });
        match out {
            Ok(Streamed::Done { rows: n }) => {
                assert_eq!(n as usize, rows.len());
                Ok(Some(rows))
            }
            Ok(Streamed::NeedsMerge) => Ok(None),
            Err(StreamError::Json(e)) => Err(e),
            Err(e) => panic!("{e}"),
        }
    }

    fn sorted(mut v: Vec<CountRow>) -> Vec<CountRow> {
        v.sort_by(|a, b| (&a.target, a.ts_us).cmp(&(&b.target, b.ts_us)));
        v
    }

    const TWO_PODS: &[u8] = br#"{"status":"success","data":{"resultType":"matrix","result":[
      {"metric":{"__name__":"go_goroutines","namespace":"prod","pod":"api-2"},
       "values":[[1795839000,"12"],[1795839015,"NaN"],[1795839030.5,"14.4"]]},
      {"metric":{"namespace":"prod","pod":"api-1","extra":"x"},"ignored":[1],
       "values":[[1795839000,"7"]]}]}}"#;

    #[test]
    fn stream_gives_the_rows_the_whole_document_reader_gives() {
        let whole = parse_query_range(TWO_PODS, "h").unwrap();
        for batch in [1, 2, 100] {
            let rows = streamed(TWO_PODS, batch).unwrap().expect("streamable");
            assert_eq!(sorted(rows), whole);
        }
    }

    #[test]
    fn stream_leaves_rows_to_merge_to_the_whole_document_reader() {
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[
          {"metric":{"__name__":"go_goroutines","namespace":"prod","pod":"api-1"},"values":[[1,"12"]]},
          {"metric":{"__name__":"go_threads","namespace":"prod","pod":"api-1"},"values":[[1,"7"]]}]}}"#;
        assert_eq!(streamed(matrix, 10), Ok(None));
        // The same target twice (labels the target does not keep differ).
        let twice = br#"{"status":"success","data":{"resultType":"matrix","result":[
          {"metric":{"namespace":"prod","pod":"api-1","job":"a"},"values":[[1,"12"]]},
          {"metric":{"namespace":"prod","pod":"api-1","job":"a","endpoint":"b"},"values":[[2,"7"]]}]}}"#;
        assert_eq!(streamed(twice, 10), Ok(None));
        // Timestamps not rising; `values` before `metric`; `result` before `resultType`.
        for j in [
            &br#"{"status":"success","data":{"resultType":"matrix","result":[
              {"metric":{"pod":"a"},"values":[[2,"1"],[1,"2"]]}]}}"#[..],
            br#"{"status":"success","data":{"resultType":"matrix","result":[
              {"values":[[2,"1"]],"metric":{"pod":"a"}}]}}"#,
            br#"{"status":"success","data":{"result":[],"resultType":"matrix"}}"#,
            br#"{"status":"success","status":"success","data":{"resultType":"matrix","result":[]}}"#,
        ] {
            assert_eq!(streamed(j, 10), Ok(None), "{}", String::from_utf8_lossy(j));
            assert!(parse_query_range(j, "h").is_ok() || j.starts_with(br#"{"status":"success","status""#));
        }
    }

    #[test]
    fn stream_refuses_what_the_whole_document_reader_refuses() {
        for j in [
            &br#"{"status":"error","error":"bad query"}"#[..],
            br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            br#"{"status":"success"}"#,
            br#"{"status":"success","data":{"resultType":"matrix","result":[
              {"metric":{"pod":"a"},"values":[[1,"1"]]},{"metric":{"pod":"b"},"values":[[1,"x"]]}]}}"#,
            br#"{"status":"success","data":{"resultType":"matrix","result":[
              {"metric":{"pod":"a"},"values":[[1,"-5"]]}]}}"#,
            br#"{"status":"success","data":{"resultType":"matrix","result":[
              {"metric":{"job":"a"},"values":[[1,"5"]]}]}}"#,
        ] {
            let whole = parse_query_range(j, "h").unwrap_err();
            assert_eq!(streamed(j, 10), Err(whole), "{}", String::from_utf8_lossy(j));
        }
        // Not JSON, or the wrong types: refused (the exact words are the whole reader's).
        for j in [
            &b"{\"status\":"[..],
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pod":"a"},"values":[[1,5]]}]}}"#,
            br#"[1,2]"#,
        ] {
            assert!(parse_query_range(j, "h").is_err());
            assert!(matches!(streamed(j, 10), Err(PromJsonError::Json { .. })));
        }
    }

    /// A document generated as it is read: `series` pods of `points` points each, never whole
    /// in memory.
    struct Generated {
        series: usize,
        points: usize,
        s: usize,
        p: usize,
        pending: Vec<u8>,
        done: bool,
    }

    impl Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            while self.pending.is_empty() && !self.done {
                use std::io::Write;
                let out = &mut self.pending;
                if self.s == 0 && self.p == 0 {
                    out.extend_from_slice(
                        br#"{"status":"success","data":{"resultType":"matrix","result":["#,
                    );
                }
                if self.s == self.series {
                    out.extend_from_slice(b"]}}");
                    self.done = true;
                    break;
                }
                if self.p == 0 {
                    let sep = if self.s > 0 { "," } else { "" };
                    write!(
                        out,
                        r#"{sep}{{"metric":{{"namespace":"n","pod":"p-{}"}},"values":["#,
                        self.s
                    )?;
                }
                // A few thousand points per refill.
                for _ in 0..4096 {
                    let sep = if self.p > 0 { "," } else { "" };
                    write!(
                        out,
                        r#"{sep}[{},"{}"]"#,
                        1_700_000_000 + 60 * self.p,
                        self.p % 1000
                    )?;
                    self.p += 1;
                    if self.p == self.points {
                        out.extend_from_slice(b"]}");
                        self.p = 0;
                        self.s += 1;
                        break;
                    }
                }
            }
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            Ok(n)
        }
    }

    /// A large document (1 M points, ~20 MB of JSON) streams in batches of the size asked,
    /// every row handed on once: what is held at a time is a batch, not the document.
    #[test]
    fn a_large_document_streams_in_bounded_batches() {
        let (series, points, batch) = (100, 10_000, 4096);
        let mut r = Generated {
            series,
            points,
            s: 0,
            p: 0,
            pending: Vec::new(),
            done: false,
        };
        let (mut total, mut calls, mut largest) = (0usize, 0usize, 0usize);
        let mut last_pod = String::new();
        let out = stream_query_range(&mut r, batch, &mut |rows| {
            calls += 1;
            total += rows.len();
            largest = largest.max(rows.len());
            last_pod = rows
                .runs
                .last()
                .map(|(t, _)| t.pod.clone())
                .unwrap_or_default();
            Ok(())
        })
        .unwrap();
        assert_eq!(
            out,
            Streamed::Done {
                rows: (series * points) as u64
            }
        );
        assert_eq!(total, series * points);
        assert_eq!(largest, batch);
        assert_eq!(calls, (series * points).div_ceil(batch));
        assert_eq!(last_pod, format!("p-{}", series - 1));
    }

    #[test]
    fn not_matrix() {
        let j = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(
            parse_query_range(j, "h"),
            Err(PromJsonError::NotMatrix("vector".into()))
        );
        assert!(matches!(
            parse_query_range(b"{\"status\":", "h"),
            Err(PromJsonError::Json { .. })
        ));
    }
}

/// Prometheus refuses a `query_range` whose answer would exceed this many points per series.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Points per page by default: a margin below the server's limit.
pub const DEFAULT_POINTS_PER_PAGE: i64 = 10_000;

/// A `query_range` request: PromQL, `[from, to]` in Unix seconds, the step, and how many points
/// per series one page may hold.
#[derive(Debug, Clone)]
pub struct RangeQuery {
    pub query: String,
    pub from_s: i64,
    pub to_s: i64,
    pub step_s: i64,
    pub points_per_page: i64,
}

/// The pages of a `query_range` request, fetched one at a time ([`Pages::next_page`]), each
/// under [`MAX_POINTS_PER_SERIES`] points per series: what is held is one page's answer.
pub struct Pages<'c> {
    client: &'c reqwest::Client,
    url: String,
    range: RangeQuery,
    span: i64,
    start: i64,
}

/// One page's answer: its bytes, their content hash, and the window it covers.
pub struct Page {
    pub hash: String,
    pub body: bytes::Bytes,
    pub start: i64,
    pub end: i64,
}

impl<'c> Pages<'c> {
    pub fn new(
        client: &'c reqwest::Client,
        base_url: &str,
        range: &RangeQuery,
    ) -> Result<Self, String> {
        let (from_s, to_s, step_s) = (range.from_s, range.to_s, range.step_s);
        if step_s <= 0 || to_s < from_s {
            return Err(format!("bad range: from {from_s} to {to_s} step {step_s}s"));
        }
        let per_page = range.points_per_page.clamp(2, MAX_POINTS_PER_SERIES);
        Ok(Pages {
            client,
            url: format!("{}/api/v1/query_range", base_url.trim_end_matches('/')),
            range: range.clone(),
            span: step_s * (per_page - 1),
            start: from_s,
        })
    }

    /// The request's URL (for messages).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetch the next page; `None` after the last.
    pub async fn next_page(&mut self) -> Option<Result<Page, String>> {
        let RangeQuery {
            query,
            to_s,
            step_s,
            ..
        } = &self.range;
        let (to_s, step_s) = (*to_s, *step_s);
        if self.start > to_s {
            return None;
        }
        let (start, url) = (self.start, &self.url);
        let end = (start + self.span).min(to_s);
        // Prometheus includes both ends: the next page starts one step later.
        self.start = end + step_s;
        let resp = match self
            .client
            .get(url)
            .query(&[
                ("query", query.to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("step", format!("{step_s}s")),
            ])
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Some(Err(format!(
                    "{url}: {}",
                    crate::error::chain(&e.without_url())
                )));
            }
        };
        let status = resp.status();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Some(Err(format!(
                    "{url}: {}",
                    crate::error::chain(&e.without_url())
                )));
            }
        };
        if !status.is_success() && body.first() != Some(&b'{') {
            return Some(Err(format!("{url}: HTTP {status}")));
        }
        let hash = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&body));
        Some(Ok(Page {
            hash,
            body,
            start,
            end,
        }))
    }
}

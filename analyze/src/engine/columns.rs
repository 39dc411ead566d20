//! Reading query results: typed columns of a record batch (any integer, string or timestamp
//! encoding the query produced), the scope columns every detector query returns, RFC 3339
//! literals for SQL, and running a named query of `queries/`.

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;

use super::Scope;
use crate::error::{Error, Result};
use crate::queries;

fn column<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    b.column_by_name(name)
        .ok_or_else(|| Error::MissingColumn(name.to_string()))
}

fn cast(a: &ArrayRef, to: &DataType, what: &str) -> Result<ArrayRef> {
    arrow::compute::cast(a, to).map_err(|source| Error::Column {
        column: what.to_string(),
        source,
    })
}

/// Any integer-like array as i64 values.
pub(crate) fn i64_values(a: &ArrayRef, what: &str) -> Result<Vec<Option<i64>>> {
    Ok(cast(a, &DataType::Int64, what)?
        .as_primitive::<Int64Type>()
        .iter()
        .collect())
}

/// Any array as strings.
pub(crate) fn str_values(a: &ArrayRef, what: &str) -> Result<Vec<Option<String>>> {
    Ok(cast(a, &DataType::Utf8, what)?
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect())
}

/// A string column read in place (no string copied out): views as they are, anything else
/// cast to views once per batch.
pub(crate) struct StrColumn(arrow::array::StringViewArray);

impl StrColumn {
    pub(crate) fn value(&self, i: usize) -> Option<&str> {
        self.0.is_valid(i).then(|| self.0.value(i))
    }
}

/// Column `name` as a [`StrColumn`].
pub(crate) fn str_values_ref(b: &RecordBatch, name: &str) -> Result<StrColumn> {
    let c = cast(column(b, name)?, &DataType::Utf8View, name)?;
    Ok(StrColumn(c.as_string_view().clone()))
}

/// A timestamp column as µs since the epoch.
pub(crate) fn ts_micros(b: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let c = cast(
        column(b, name)?,
        &DataType::Timestamp(TimeUnit::Microsecond, None),
        name,
    )?;
    i64_values(&c, name)
}

pub(crate) fn i64s(b: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    i64_values(column(b, name)?, name)
}

pub(crate) fn f64s(b: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    Ok(cast(column(b, name)?, &DataType::Float64, name)?
        .as_primitive::<Float64Type>()
        .iter()
        .collect())
}

pub(crate) fn strs(b: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    str_values(column(b, name)?, name)
}

/// A boolean column; null is false.
pub(crate) fn bools(b: &RecordBatch, name: &str) -> Result<Vec<bool>> {
    let c = column(b, name)?;
    let c = c.as_boolean_opt().ok_or_else(|| Error::ColumnType {
        column: name.to_string(),
        want: "boolean",
    })?;
    Ok((0..c.len()).map(|i| !c.is_null(i) && c.value(i)).collect())
}

/// Seconds since the epoch as an RFC 3339 literal (`2026-12-03T13:45:00Z`).
pub(crate) fn rfc(t: i64) -> String {
    DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Seconds since the epoch as a time.
pub(crate) fn at(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

/// Run the named query `name` of `queries/` with `params`.
pub(crate) async fn run_named(
    ctx: &SessionContext,
    name: &str,
    params: &[(&str, String)],
) -> Result<Vec<RecordBatch>> {
    let q = queries::find(name, None)?;
    let given: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let sql = q.render(&given, Utc::now())?;
    Ok(ctx.sql(&sql).await?.collect().await?)
}

/// The scope of every row: `cluster` (or `cl`), `namespace`, `workload_kind` (`wk`), `workload`
/// (`wl`), `pod`.
pub(crate) fn scope_rows(b: &RecordBatch) -> Result<Vec<Scope>> {
    let either = |a: &str, b2: &str| strs(b, a).or_else(|_| strs(b, b2));
    let (c, n, k, w, p) = (
        either("cluster", "cl")?,
        strs(b, "namespace")?,
        either("workload_kind", "wk")?,
        either("workload", "wl")?,
        strs(b, "pod")?,
    );
    Ok((0..b.num_rows())
        .map(|i| Scope {
            cluster: c[i].clone(),
            namespace: n[i].clone().unwrap_or_default(),
            workload_kind: k[i].clone(),
            workload: w[i].clone(),
            pod: p[i].clone(),
        })
        .collect())
}

//! Query results as a table, CSV or JSON. In JSON, a stack id column (`stack_id`,
//! `representative_stack_id`, `stack_ids`) is written as strings: the decimal spelling of
//! `StackId` past 2^53 would be rounded by JSON readers (`jq`, JavaScript) as a number.

use std::io::Write;

use arrow::array::RecordBatch;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Csv,
    /// A JSON array of objects.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            _ => Err(format!(
                "unknown output format {s:?}: use table, csv or json"
            )),
        }
    }
}

pub fn write(out: &mut dyn Write, batches: &[RecordBatch], format: Format) -> Result<()> {
    match format {
        Format::Table => {
            if batches.iter().all(|b| b.num_rows() == 0)
                && batches.iter().all(|b| b.num_columns() == 0)
            {
                writeln!(out, "(no rows)").map_err(|e| Error::Output {
                    format: "table",
                    source: e.into(),
                })?;
                return Ok(());
            }
            let s = arrow::util::pretty::pretty_format_batches(batches).map_err(|source| {
                Error::Output {
                    format: "table",
                    source,
                }
            })?;
            writeln!(out, "{s}").map_err(|e| Error::Output {
                format: "table",
                source: e.into(),
            })?;
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for b in batches {
                w.write(b).map_err(|source| Error::Output {
                    format: "csv",
                    source,
                })?;
            }
        }
        Format::Json => {
            let batches = batches
                .iter()
                .map(stack_ids_as_strings)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|source| Error::Output {
                    format: "json",
                    source,
                })?;
            let mut w = arrow::json::ArrayWriter::new(&mut *out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs).map_err(|source| Error::Output {
                format: "json",
                source,
            })?;
            w.finish().map_err(|source| Error::Output {
                format: "json",
                source,
            })?;
            drop(w);
            writeln!(out).map_err(|e| Error::Output {
                format: "json",
                source: e.into(),
            })?;
        }
    }
    Ok(())
}

/// Whether a column holds stack ids (see the module header).
fn is_stack_id_column(name: &str) -> bool {
    name == "stack_id" || name == "stack_ids" || name.ends_with("_stack_id")
}

/// `batch` with its Int64 stack id columns (and lists of them) cast to strings.
fn stack_ids_as_strings(
    batch: &RecordBatch,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    let mut changed = false;
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        let to = match f.data_type() {
            DataType::Int64 | DataType::UInt64 if is_stack_id_column(f.name()) => {
                Some(DataType::Utf8)
            }
            DataType::List(inner)
                if is_stack_id_column(f.name())
                    && matches!(inner.data_type(), DataType::Int64 | DataType::UInt64) =>
            {
                Some(DataType::List(Arc::new(Field::new(
                    inner.name(),
                    DataType::Utf8,
                    inner.is_nullable(),
                ))))
            }
            _ => None,
        };
        match to {
            Some(t) => {
                changed = true;
                columns.push(arrow::compute::cast(c, &t)?);
                fields.push(Field::new(f.name(), t, f.is_nullable()));
            }
            None => {
                columns.push(c.clone());
                fields.push(f.as_ref().clone());
            }
        }
    }
    if !changed {
        return Ok(batch.clone());
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod stack_id_tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn stack_ids_are_json_strings() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("stack_id", DataType::Int64, false),
            Field::new("goroutines", DataType::Int64, false),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![-4_021_929_379_218_146_519])),
                Arc::new(Int64Array::from(vec![3])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        write(&mut out, &[b], Format::Json).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s.trim(),
            r#"[{"stack_id":"-4021929379218146519","goroutines":3}]"#
        );
    }
}

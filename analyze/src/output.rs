//! Query results as a table, CSV or JSON.

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

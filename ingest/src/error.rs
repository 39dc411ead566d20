//! The ingest crate's error type: one variant per cause, each knowing whether a retry can help.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error with its causes, `: `-separated, each cause said once (a cause whose text its
/// parent already carries is skipped): "error sending request" alone does not say that the
/// connection was refused or the headers too large.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !message.contains(&s) {
            message.push_str(": ");
            message.push_str(&s);
        }
        cause = c.source();
    }
    message
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "invalid store URL {url:?}: {reason}. Use a local directory, file:///abs/path or s3://bucket/prefix"
    )]
    StoreUrl { url: String, reason: String },

    #[error("object store operation on {path} failed: {source}")]
    ObjectStore {
        path: String,
        #[source]
        source: object_store::Error,
    },

    #[error("Parquet file {path} could not be read or written: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("building Arrow rows for table {table} failed: {source}")]
    Arrow {
        table: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },

    #[error(
        "file {path} in the store was written with schema version {found}, this leakhound reads {expected}; upgrade leakhound or run an older one"
    )]
    SchemaVersion {
        path: String,
        found: String,
        expected: u32,
    },

    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{source_name}: {source}")]
    Parse {
        source_name: String,
        #[source]
        source: crate::parse::ParseError,
    },

    #[error(
        "no store at {url:?} (nothing has been written there yet; run backfill or ingest first, or pass --store)"
    )]
    NoStore { url: String },

    #[error("{source_name}: {message}")]
    Input {
        source_name: String,
        message: String,
    },
}

impl Error {
    /// Whether trying the same operation again may succeed (network and store hiccups), as
    /// opposed to bad input or configuration that will fail the same way every time.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::ObjectStore { source, .. } => !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
            ),
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }
}

//! The analyze crate's error type.

use leakhound_schemas::kinds::DetectorKind;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] leakhound_ingest::Error),

    #[error("SQL failed: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error("writing {format} output failed: {source}")]
    Output {
        format: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },

    #[error("no query named {name:?}; known queries: {known}")]
    UnknownQuery { name: String, known: String },

    #[error("query {query}: parameter {param}: {message}")]
    Param {
        query: String,
        param: String,
        message: String,
    },

    #[error("query file {file}: {message}")]
    QueryFile { file: String, message: String },

    #[error("analyze: query returned no column {0}")]
    MissingColumn(String),

    #[error("analyze: column {column}: {source}")]
    Column {
        column: String,
        #[source]
        source: arrow::error::ArrowError,
    },

    #[error("analyze: column {column} is not {want}")]
    ColumnType { column: String, want: &'static str },

    #[error("analyze: {table} batch: {source}")]
    Batch {
        table: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },

    #[error("analyze: detector {0} is not registered (detect::REGISTRY)")]
    UnregisteredDetector(DetectorKind),

    #[error("SQL: {0}")]
    Sql(String),

    #[error(
        "no cluster {id:?} in {store} (see `leakhound sql \"SELECT cluster_id, pattern FROM leak_clusters\"`)"
    )]
    NoCluster { id: String, store: String },

    #[error("analyze: {0}")]
    Internal(String),

    /// The reuse of the previous step's findings (a cache: never fatal to a step's reading).
    #[error("analyze: the previous step's findings: {0}")]
    Reuse(String),
}

impl Error {
    /// Whether the same call may succeed when retried (store hiccups only).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store(e) => e.is_retryable(),
            _ => false,
        }
    }
}

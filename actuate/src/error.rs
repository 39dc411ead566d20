//! The one error type of the crate. Each variant knows whether a later attempt may succeed
//! ([`Error::is_retryable`]): the engine records a retryable failure so that a later run (or a
//! re-delivered alert) tries again, and a final one so that it does not.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("policy file {path}: {reason}")]
    Policy { path: PathBuf, reason: String },
    #[error("policy: {0}")]
    PolicyValue(String),
    #[error("Kubernetes client configuration: {0}")]
    KubeConfig(String),
    #[error("Kubernetes API, {what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("no Kubernetes client: {0} needs one (pass --kubeconfig or run in-cluster)")]
    NoClient(&'static str),
    #[error("target {target}: {reason}")]
    Target { target: String, reason: String },
    #[error("store: {0}")]
    Store(#[from] leakhound_ingest::error::Error),
    #[error("building the {table} batch: {source}")]
    Arrow {
        table: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("capture of {pod}: {reason}")]
    Capture { pod: String, reason: String },
    #[error("webhook server: {0}")]
    Server(String),
    #[error("TLS configuration, {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error("credentials file {path}: {reason}")]
    Credentials { path: PathBuf, reason: String },
}

impl Error {
    pub fn kube(what: impl Into<String>, source: kube::Error) -> Error {
        Error::Kube {
            what: what.into(),
            source: Box::new(source),
        }
    }

    /// The HTTP status of an API error, when the error is one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Kube { source, .. } => match source.as_ref() {
                kube::Error::Api(s) => Some(s.code),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether trying again later can help: transport errors, 5xx, 429 and 409 (a conflict on
    /// resourceVersion), a capture that timed out, the store. Not 4xx, not configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Kube { source, .. } => match source.as_ref() {
                kube::Error::Api(s) => s.code >= 500 || s.code == 429 || s.code == 409,
                _ => true,
            },
            Error::Store(_) | Error::Capture { .. } => true,
            _ => false,
        }
    }

    /// A short cause for metrics (bounded cardinality).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Policy { .. } | Error::PolicyValue(_) => "policy",
            Error::KubeConfig(_) | Error::NoClient(_) => "config",
            Error::Kube { .. } => "kube",
            Error::Target { .. } => "target",
            Error::Store(_) | Error::Arrow { .. } => "store",
            Error::Capture { .. } => "capture",
            Error::Server(_) | Error::Tls { .. } | Error::Credentials { .. } => "server",
        }
    }
}

//! What to scrape: a target's URL, identity, paths and credentials.
//!
//! Targets come from `--target` flags (`[NAMESPACE/POD=]URL`), a targets file (JSON array of
//! [`TargetSpec`]), or Kubernetes discovery (`discovery`). Secrets are named by file and read at
//! scrape time; they are never logged and never stored.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::rows::Target;

/// One target as a file or flag describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Base URL of the Go process, e.g. `http://10.1.2.3:6060`.
    pub url: String,
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub pod: Option<String>,
    /// The pod's UID (discovery): what `--shard` hashes when present ([`super::shard`]).
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub workload_kind: Option<String>,
    #[serde(default)]
    pub workload: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    /// Path of the Prometheus endpoint (default `/metrics`).
    #[serde(default)]
    pub metrics_path: Option<String>,
    /// Prefix of the pprof handlers (default `/debug/pprof`).
    #[serde(default)]
    pub pprof_path: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub basic_auth_user: Option<String>,
    #[serde(default)]
    pub basic_auth_password_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// RFC 3339.
    #[serde(default)]
    pub pod_start_time: Option<String>,
    #[serde(default)]
    pub container_restarts: Option<i64>,
}

/// Credentials for one target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Auth {
    #[default]
    None,
    Bearer {
        token_file: PathBuf,
    },
    Basic {
        user: String,
        password_file: PathBuf,
    },
}

/// TLS options; targets sharing them share an HTTP client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

/// A target ready to scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeTarget {
    pub identity: Target,
    pub base: Url,
    pub metrics_path: String,
    pub pprof_path: String,
    pub auth: Auth,
    pub tls: Tls,
    pub pod_start_time_us: Option<i64>,
    pub container_restarts: Option<i64>,
}

impl ScrapeTarget {
    /// A stable key for per-target state: `namespace/pod`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.identity.namespace, self.identity.pod)
    }

    pub fn url(&self, path_and_query: &str) -> String {
        let base = self.base.as_str().trim_end_matches('/');
        format!("{base}{path_and_query}")
    }
}

impl TargetSpec {
    pub fn into_target(self) -> Result<ScrapeTarget, String> {
        let base = Url::parse(&self.url).map_err(|e| format!("target URL {:?}: {e}", self.url))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!(
                "target URL {:?}: scheme must be http or https",
                self.url
            ));
        }
        let host = base.host_str().unwrap_or_default().to_string();
        let port = base.port_or_known_default().unwrap_or(80);
        let auth = match (self.bearer_token_file, self.basic_auth_user) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "target {:?}: bearer token and basic auth are exclusive",
                    self.url
                ));
            }
            (Some(token_file), None) => Auth::Bearer { token_file },
            (None, Some(user)) => Auth::Basic {
                user,
                password_file: self.basic_auth_password_file.ok_or_else(|| {
                    format!(
                        "target {:?}: basic_auth_user needs basic_auth_password_file",
                        self.url
                    )
                })?,
            },
            (None, None) => Auth::None,
        };
        let pod_start_time_us = match &self.pod_start_time {
            Some(t) => Some(
                chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|e| format!("target {:?}: pod_start_time {t:?}: {e}", self.url))?
                    .timestamp_micros(),
            ),
            None => None,
        };
        Ok(ScrapeTarget {
            identity: Target {
                cluster: self.cluster,
                namespace: self.namespace.unwrap_or_else(|| "default".into()),
                workload_kind: self.workload_kind,
                workload: self.workload,
                pod: self.pod.unwrap_or_else(|| format!("{host}:{port}")),
                container: self.container,
                node: self.node,
                instance: Some(format!("{host}:{port}")),
            },
            base,
            metrics_path: self.metrics_path.unwrap_or_else(|| "/metrics".into()),
            pprof_path: self
                .pprof_path
                .unwrap_or_else(|| "/debug/pprof".into())
                .trim_end_matches('/')
                .to_string(),
            auth,
            tls: Tls {
                ca_file: self.ca_file,
                insecure_skip_verify: self.insecure_skip_verify,
            },
            pod_start_time_us,
            container_restarts: self.container_restarts,
        })
    }
}

/// `--target` flag: `URL` or `NAMESPACE/POD=URL`.
pub fn parse_target_flag(s: &str) -> Result<TargetSpec, String> {
    let (ident, url) = match s.split_once('=') {
        Some((ident, url)) if !ident.contains("://") => (Some(ident), url),
        _ => (None, s),
    };
    let mut spec = TargetSpec {
        url: url.to_string(),
        ..Default::default()
    };
    if let Some(ident) = ident {
        let (ns, pod) = ident
            .split_once('/')
            .ok_or_else(|| format!("--target {s:?}: write NAMESPACE/POD=URL or URL"))?;
        spec.namespace = Some(ns.to_string());
        spec.pod = Some(pod.to_string());
    }
    Ok(spec)
}

/// A targets file: a JSON array of [`TargetSpec`].
pub fn read_targets_file(path: &std::path::Path) -> Result<Vec<TargetSpec>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("targets file {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "targets file {}: line {}, column {}: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let t = parse_target_flag("shop/orders-1=http://127.0.0.1:6060")
            .unwrap()
            .into_target()
            .unwrap();
        assert_eq!(t.key(), "shop/orders-1");
        assert_eq!(t.url("/metrics"), "http://127.0.0.1:6060/metrics");
        let t = parse_target_flag("http://127.0.0.1:6060/")
            .unwrap()
            .into_target()
            .unwrap();
        assert_eq!(t.key(), "default/127.0.0.1:6060");
        assert!(parse_target_flag("ftp://x").unwrap().into_target().is_err());
        assert!(parse_target_flag("nopod=http://x").is_err());
    }
}

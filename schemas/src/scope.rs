//! The identity an event, a trigger or an action is about.

use serde::{Deserialize, Serialize};

use crate::k8s_names::{self, NameError, NameKind};

/// Who an event, a trigger or an action is about: a workload (`pod: None`) or one pod of it.
/// analyze's events are about a scope (`leakhound_analyze::engine::Scope`), actuate acts on one
/// (`leakhound_actuate::model::Target`); both are this type. A stored row's full identity
/// (container, node, instance too) is `leakhound_ingest::rows::Target`, whose `scope()` is this.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Scope {
    pub cluster: Option<String>,
    pub namespace: String,
    pub workload_kind: Option<String>,
    pub workload: Option<String>,
    pub pod: Option<String>,
}

impl Scope {
    /// `namespace/Kind/name[/pod]`, for keys and messages.
    pub fn display(&self) -> String {
        let mut s = self.namespace.clone();
        if let Some(w) = &self.workload {
            s.push('/');
            s.push_str(self.workload_kind.as_deref().unwrap_or("Deployment"));
            s.push('/');
            s.push_str(w);
        }
        if let Some(p) = &self.pod {
            s.push_str("/pod/");
            s.push_str(p);
        }
        s
    }

    /// Check every name that would reach an API path or a store key against Kubernetes' own
    /// rules (namespace: RFC 1123 label; workload and pod: RFC 1123 subdomain; kind: a kind).
    pub fn validate(&self) -> Result<(), NameError> {
        k8s_names::check("namespace", &self.namespace, NameKind::Namespace)?;
        if let Some(k) = &self.workload_kind {
            k8s_names::check("workload kind", k, NameKind::Kind)?;
        }
        if let Some(w) = &self.workload {
            k8s_names::check("workload", w, NameKind::Object)?;
        }
        if let Some(p) = &self.pod {
            k8s_names::check("pod", p, NameKind::Object)?;
        }
        Ok(())
    }

    /// The workload key cooldowns are kept by.
    pub fn workload_key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.namespace,
            self.workload_kind.as_deref().unwrap_or("Deployment"),
            self.workload.as_deref().unwrap_or("-")
        )
    }
}

impl Scope {
    /// `cluster/namespace/kind/workload/pod` (`*` for the whole workload): the key analyze keeps
    /// episodes and event ids by.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}",
            self.cluster.as_deref().unwrap_or(""),
            self.namespace,
            self.workload_kind.as_deref().unwrap_or(""),
            self.workload.as_deref().unwrap_or(""),
            self.pod.as_deref().unwrap_or("*")
        )
    }
}

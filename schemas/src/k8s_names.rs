//! Kubernetes' own rules for object names, checked before a name from outside (an alert label,
//! an event row, a file or tar entry name) reaches an API path, a store key or a file path.
//!
//! These are the apimachinery validations (`IsDNS1123Label`, `IsDNS1123Subdomain`) written out:
//! a valid name holds only `a-z`, `0-9`, `-` and (subdomains) `.` between alphanumerics, so it
//! cannot carry `/`, `?`, `#`, `%`, `..`, upper case or non-ASCII look-alikes (`KUBE-SYSTEM`,
//! `kube‐system` with U+2010), and needs no escaping anywhere. Written by hand: a dozen lines,
//! and the crates that have them (`k8s-openapi` has none) pull a regex engine for it.

/// What a name is checked as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// Namespaces (and Services): an RFC 1123 label, at most 63 characters.
    Namespace,
    /// Pods, Deployments, StatefulSets, ReplicaSets, DaemonSets, HPAs, VPAs: an RFC 1123
    /// subdomain, at most 253 characters.
    Object,
    /// A resource kind (`Deployment`): an upper-case ASCII letter, then letters and digits.
    Kind,
}

/// Why a name is refused; its `Display` names the field, the value (escaped) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: {rule}")]
pub struct NameError {
    pub field: String,
    pub value: String,
    pub rule: &'static str,
}

/// An RFC 1123 label's characters (the length is checked by the caller: Kubernetes' subdomain
/// rule bounds only the whole name, not each dot-separated part).
fn label_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Check `value` (the `field` of something) as a `kind` of name.
pub fn check(field: &str, value: &str, kind: NameKind) -> Result<(), NameError> {
    let err = |rule: &'static str| NameError {
        field: field.to_string(),
        value: value.chars().take(300).collect(),
        rule,
    };
    match kind {
        NameKind::Namespace => {
            if value.len() > 63 {
                return Err(err("longer than 63 characters"));
            }
            if value.is_empty() || !label_ok(value) {
                return Err(err(
                    "must be an RFC 1123 label: lower-case a-z, 0-9 and '-', starting and ending with an alphanumeric",
                ));
            }
        }
        NameKind::Object => {
            if value.len() > 253 {
                return Err(err("longer than 253 characters"));
            }
            if value.is_empty() || !value.split('.').all(label_ok) {
                return Err(err(
                    "must be an RFC 1123 subdomain: lower-case a-z, 0-9, '-' and '.', each part starting and ending with an alphanumeric",
                ));
            }
        }
        NameKind::Kind => {
            let b = value.as_bytes();
            if b.is_empty()
                || b.len() > 63
                || !b[0].is_ascii_uppercase()
                || !b.iter().all(u8::is_ascii_alphanumeric)
            {
                return Err(err(
                    "must be a resource kind: an upper-case letter, then ASCII letters and digits",
                ));
            }
        }
    }
    Ok(())
}

/// Whether `value` is a valid `kind` of name.
pub fn is_valid(value: &str, kind: NameKind) -> bool {
    check("", value, kind).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names_pass() {
        for ns in ["shop", "kube-system", "a", "a1-b2", &"x".repeat(63)] {
            assert!(is_valid(ns, NameKind::Namespace), "{ns}");
        }
        for n in [
            "orders-7d9c8b6f5-x2x4k",
            "web.v2",
            "a",
            "0abc",
            &"a".repeat(253),
        ] {
            assert!(is_valid(n, NameKind::Object), "{n}");
        }
        for k in ["Deployment", "StatefulSet", "V1Thing"] {
            assert!(is_valid(k, NameKind::Kind), "{k}");
        }
    }

    #[test]
    fn hostile_names_are_refused() {
        let hostile = [
            "",
            "orders#x",
            "orders-1?dryRun=",
            "../../kube-system/pods/x",
            "a%2Fb",
            "KUBE-SYSTEM",
            "kube\u{2010}system",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a b",
            "a/b",
            "a\nb",
            "ａ",
        ];
        for n in hostile {
            assert!(
                !is_valid(n, NameKind::Object),
                "{n:?} passed as an object name"
            );
            assert!(
                !is_valid(n, NameKind::Namespace),
                "{n:?} passed as a namespace"
            );
        }
        assert!(!is_valid("web.v2", NameKind::Namespace));
        assert!(!is_valid(&"x".repeat(64), NameKind::Namespace));
        assert!(!is_valid(&"a".repeat(254), NameKind::Object));
        for k in ["deployment", "Deploy/ment", "Deployment?x", "", "Dé"] {
            assert!(!is_valid(k, NameKind::Kind), "{k:?}");
        }
        let e = check("namespace", "KUBE-SYSTEM", NameKind::Namespace).unwrap_err();
        assert!(
            e.to_string().contains("invalid namespace \"KUBE-SYSTEM\""),
            "{e}"
        );
    }
}

//! HTTP fetches with the limits Prometheus' scraper has: a response-size cap (after gzip
//! decoding, so a bomb stops at the cap), credentials read from files at use (rotated secrets
//! work; nothing is logged), one client per TLS configuration. [`Clients::open`] hands the
//! body back chunk by chunk, so that a scrape streams it into a parser instead of holding it;
//! headers are bounded by hyper (about 400 KiB, at most 100 of them).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::targets::{Auth, ScrapeTarget, Tls};

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("HTTP {status} from {url}")]
    Status { url: String, status: u16 },
    #[error("{url}: response larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: timed out")]
    Timeout { url: String },
    #[error("credentials file {path}: {message}")]
    Credentials { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
}

impl FetchError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::Status { status: 404, .. })
    }

    /// Retrying helps with transport hiccups and 5xx, not with 4xx or a size cap.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => *status >= 500,
            FetchError::Transport { .. } | FetchError::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// Clients per TLS configuration (connection pools are per client).
#[derive(Debug, Default)]
pub struct Clients {
    clients: Mutex<HashMap<Tls, reqwest::Client>>,
    pub user_agent: String,
}

impl Clients {
    pub fn new() -> Self {
        Clients {
            clients: Mutex::new(HashMap::new()),
            user_agent: format!("leakhound/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    fn client(&self, tls: &Tls) -> Result<reqwest::Client, FetchError> {
        let mut map = self
            .clients
            .lock()
            .map_err(|_| FetchError::Tls("client pool poisoned".into()))?;
        if let Some(c) = map.get(tls) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .user_agent(&self.user_agent)
            .gzip(true)
            .pool_max_idle_per_host(1)
            .connect_timeout(Duration::from_secs(5))
            .danger_accept_invalid_certs(tls.insecure_skip_verify);
        if let Some(ca) = &tls.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| FetchError::Tls(format!("{}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| FetchError::Tls(format!("{}: {e}", ca.display())))?;
            b = b.add_root_certificate(cert);
        }
        let c = b.build().map_err(|e| FetchError::Tls(e.to_string()))?;
        map.insert(tls.clone(), c.clone());
        Ok(c)
    }

    /// GET `path` of `target`, reading at most `limit` bytes of (decoded) body.
    pub async fn get(
        &self,
        target: &ScrapeTarget,
        path: &str,
        limit: usize,
        timeout: Duration,
        accept: &str,
    ) -> Result<Bytes, FetchError> {
        let mut body = self.open(target, path, limit, timeout, accept).await?;
        let mut buf = BytesMut::new();
        while let Some(chunk) = body.chunk().await? {
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// GET `path` of `target` and hand back the body to read chunk by chunk (at most `limit`
    /// bytes of it, after gzip decoding; `timeout` covers the whole exchange).
    pub async fn open(
        &self,
        target: &ScrapeTarget,
        path: &str,
        limit: usize,
        timeout: Duration,
        accept: &str,
    ) -> Result<Body, FetchError> {
        let url = target.url(path);
        let client = self.client(&target.tls)?;
        let mut req = client
            .get(&url)
            .header(reqwest::header::ACCEPT, accept)
            .timeout(timeout);
        match &target.auth {
            Auth::None => {}
            Auth::Bearer { token_file } => {
                let token = read_secret(token_file)?;
                req = req.bearer_auth(token);
            }
            Auth::Basic {
                user,
                password_file,
            } => {
                let pw = read_secret(password_file)?;
                req = req.basic_auth(user, Some(pw));
            }
        }
        let resp = req.send().await.map_err(|e| transport(&url, e))?;
        if !resp.status().is_success() {
            return Err(FetchError::Status {
                url,
                status: resp.status().as_u16(),
            });
        }
        if resp.content_length().is_some_and(|n| n as usize > limit) {
            return Err(FetchError::TooLarge { url, limit });
        }
        // The Go agent's container context (kept raw; checked where it is used).
        let context = resp.headers().get(crate::context::HEADER).map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| "not ASCII".to_string())
        });
        Ok(Body {
            url,
            resp,
            limit,
            read: 0,
            context,
        })
    }
}

/// A response body being read: chunks as they arrive, refused past the size cap.
#[derive(Debug)]
pub struct Body {
    url: String,
    resp: reqwest::Response,
    limit: usize,
    read: usize,
    context: Option<Result<String, String>>,
}

impl Body {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `Leakhound-Context` header of the response, if it had one (`Err` when not ASCII).
    pub fn context_header(&self) -> Option<Result<&str, &str>> {
        self.context
            .as_ref()
            .map(|r| r.as_deref().map_err(String::as_str))
    }

    /// The next chunk (after gzip decoding), `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
        let Some(c) = self
            .resp
            .chunk()
            .await
            .map_err(|e| transport(&self.url, e))?
        else {
            return Ok(None);
        };
        self.read += c.len();
        if self.read > self.limit {
            return Err(FetchError::TooLarge {
                url: self.url.clone(),
                limit: self.limit,
            });
        }
        Ok(Some(c))
    }
}

fn transport(url: &str, e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout {
            url: url.to_string(),
        };
    }
    // Without the URL (it is in the variant) and without credentials, but with the causes:
    // "error sending request" alone does not say that the headers were too large.
    let message = crate::error::chain(&e.without_url());
    FetchError::Transport {
        url: url.to_string(),
        message,
    }
}

fn read_secret(path: &std::path::Path) -> Result<String, FetchError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| FetchError::Credentials {
            path: path.display().to_string(),
            message: e.kind().to_string(),
        })
}

//! A target's bodies streamed into their parsers, each byte charged to the pass's
//! [`MemoryBudget`] as it arrives, so that no body is ever held whole.
//!
//! ```text
//!  /metrics ─chunks─▶ MetricsReader (one line at a time)              charge: the chunk, while read
//!  goroutine?debug=N ─chunks─▶ channel ─▶ parse::parse_snapshot_with   charge: bytes × 32 (× 16 for
//!     (hashed on the way)        (bounded)   on a blocking thread          debug=2 text), then the snapshot's
//!                                                                          size until it is folded
//! ```
//!
//! A goroutine body goes through the parse module's own streaming entry point (debug=2 takes
//! its aggregating fast path), fed by a channel of chunks: the parser fails at its first bad
//! bytes (an HTML page, binary zeros) and the body is dropped there, unread. While it parses,
//! what the parser holds grows with what it read — one group per distinct stack, one id per
//! goroutine — by up to [`PARSE_CHARGE`] times the bytes for input made of ever-new tiny stacks
//! ([`DEBUG2_CHARGE`] for debug=2 text, recognised from the body's first 8 KiB with the parse
//! module's own `detect`; measured: see the constants), so the body is charged that much as it
//! arrives; once parsed,
//! the charge shrinks to the snapshot's estimated size ([`snapshot_bytes`]), held until its
//! rows are folded. The fetch's error wins over the parser's: a body cut by the size cap or the
//! timeout must not land as a short dump.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes};
use leakhound_schemas::Snapshot;
use leakhound_schemas::model::{Frame, SampleGroup};

use super::budget::{BudgetExhausted, Charge, MemoryBudget};
use super::http::{Clients, FetchError};
use super::metrics::{GoMetrics, MetricsReader};
use super::targets::ScrapeTarget;
use crate::parse;

/// Bytes charged per byte of a goroutine body while it is parsed, until its first 8 KiB show
/// debug=2 text: the parsers' state for a body of ever-new stacks in the smallest records they
/// accept (a group of some 500 bytes of heap per ~25-byte record) peaks at about 28 times the
/// body at debug=1 (`cargo bench -p leakhound-ingest --bench ingest_fleet` prints it; 16 MiB,
/// glibc), with a margin for other allocators.
pub const PARSE_CHARGE: usize = 32;

/// The same for debug=2 text (the aggregating parser caches each distinct stack once): about
/// 14 times at worst (same bench), with the same margin.
pub const DEBUG2_CHARGE: usize = 16;

/// Chunks in the channel between a body and its parser.
const CHANNEL_CHUNKS: usize = 4;

/// Why a body gave nothing.
#[derive(Debug)]
pub enum BodyError {
    Fetch(FetchError),
    Budget { url: String, why: BudgetExhausted },
    Parse { url: String, message: String },
}

impl BodyError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, BodyError::Fetch(e) if e.is_not_found())
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Fetch(e) => e.fmt(f),
            BodyError::Budget { url, why } => write!(f, "{url}: {why}"),
            BodyError::Parse { url, message } => write!(f, "{url}: {message}"),
        }
    }
}

/// A parsed goroutine body with what it holds of the budget.
#[derive(Debug)]
pub struct Fetched {
    pub snapshot: Snapshot,
    pub content_hash: String,
    pub bytes: i64,
    pub charge: Charge,
    /// The Go agent's `Leakhound-Context` header, read ([`crate::context::parse_header`]);
    /// `Err` says why it was refused. `None`: no such header (not the agent).
    pub context: Option<Result<crate::context::ContainerContext, String>>,
}

/// Largest goroutine body one fetch may take: `max_body`, and no more than the budget can hold
/// while it is parsed — debug=2 text; other formats run out of budget at a third of that.
pub fn goroutine_body_limit(max_body: usize, budget: &MemoryBudget) -> usize {
    max_body.min(budget.total() / DEBUG2_CHARGE)
}

/// GET and read a `/metrics` body; returns its values and size.
pub async fn fetch_metrics(
    clients: &Clients,
    t: &ScrapeTarget,
    max_body: usize,
    budget: &MemoryBudget,
    timeout: Duration,
) -> Result<(GoMetrics, i64), BodyError> {
    let accept =
        "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1";
    let started = tokio::time::Instant::now();
    let mut body = clients
        .open(t, &t.metrics_path, max_body, timeout, accept)
        .await
        .map_err(BodyError::Fetch)?;
    let url = body.url().to_string();
    let mut reader = MetricsReader::default();
    let mut bytes = 0i64;
    while let Some(chunk) = body.chunk().await.map_err(BodyError::Fetch)? {
        bytes += chunk.len() as i64;
        let mut charge = budget.charge();
        let left = timeout.saturating_sub(started.elapsed());
        charge
            .grow(chunk.len(), left)
            .await
            .map_err(|why| BodyError::Budget {
                url: url.clone(),
                why,
            })?;
        reader.feed(&chunk).map_err(|message| BodyError::Parse {
            url: url.clone(),
            message,
        })?;
        // A body that never ends always has its next chunk ready: let the other targets'
        // tasks run between two chunks, or a few endless bodies starve a whole pass.
        tokio::task::yield_now().await;
    }
    let m = reader.finish().map_err(|message| BodyError::Parse {
        url: url.clone(),
        message,
    })?;
    Ok((m, bytes))
}

/// GET a goroutine profile (`path_and_query` under the target) and parse it as it arrives.
pub async fn fetch_snapshot(
    clients: &Clients,
    t: &ScrapeTarget,
    path_and_query: &str,
    max_body: usize,
    budget: &MemoryBudget,
    timeout: Duration,
) -> Result<Fetched, BodyError> {
    let started = tokio::time::Instant::now();
    let limit = goroutine_body_limit(max_body, budget);
    let mut body = clients
        .open(t, path_and_query, limit, timeout, "*/*")
        .await
        .map_err(BodyError::Fetch)?;
    let url = body.url().to_string();
    let context = body.context_header().map(|h| {
        h.map_err(str::to_string)
            .and_then(crate::context::parse_header)
            .map_err(|e| format!("{url}: Leakhound-Context header refused ({e})"))
    });
    // Each chunk travels with its charge; the parser's thread keeps the charges of what it
    // read until it has finished with it, even when this fetch was dropped (a timeout) before:
    // its memory and its charge go together.
    let (tx, rx) = tokio::sync::mpsc::channel::<(Bytes, Charge)>(CHANNEL_CHUNKS);
    let read_charge = Arc::new(Mutex::new(budget.charge()));
    let popts = parse::ParseOptions {
        max_decompressed_bytes: limit as u64,
        max_line_bytes: limit.min(parse::ParseOptions::default().max_line_bytes),
        max_record_bytes: limit.min(parse::ParseOptions::default().max_record_bytes),
        ..Default::default()
    };
    let name = url.clone();
    let parser = {
        let held = read_charge.clone();
        let empty = budget.charge();
        tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                rx,
                cur: Bytes::new(),
                held: held.clone(),
            };
            let r = parse::parse_snapshot_with(reader, &name, &popts);
            let charge = held
                .lock()
                .map(|mut c| std::mem::replace(&mut *c, empty))
                .ok();
            (r, charge)
        })
    };
    let mut hasher = crate::content_hash::ContentHasher::new();
    let mut bytes = 0i64;
    // The body's first bytes, until they say which parser it goes to (and so its rate).
    let mut prefix: Vec<u8> = Vec::new();
    let mut rate = PARSE_CHARGE;
    let pumped: Result<(), BodyError> = async {
        while let Some(chunk) = body.chunk().await.map_err(BodyError::Fetch)? {
            if prefix.len() < parse::DETECT_PREFIX {
                prefix.extend_from_slice(
                    &chunk[..chunk.len().min(parse::DETECT_PREFIX - prefix.len())],
                );
                let whole = prefix.len() == parse::DETECT_PREFIX;
                match parse::detect(&prefix) {
                    // Text was asked for; gzip'd or binary content (not Content-Encoding, which
                    // the client decodes) would decompress or decode beyond what its bytes
                    // were charged.
                    Ok(f @ (parse::Detected::Gzip | parse::Detected::Proto)) => {
                        return Err(BodyError::Parse {
                            url: url.clone(),
                            message: format!(
                                "{} content where a text profile was asked for",
                                if f == parse::Detected::Gzip {
                                    "gzip"
                                } else {
                                    "profile.proto"
                                }
                            ),
                        });
                    }
                    Ok(parse::Detected::Debug2) if whole => {
                        rate = DEBUG2_CHARGE;
                        if let Ok(mut c) = read_charge.lock() {
                            c.shrink_to(bytes as usize * rate);
                        }
                    }
                    _ => {}
                }
            }
            let left = timeout.saturating_sub(started.elapsed());
            let mut charge = budget.charge();
            charge
                .grow_as(chunk.len() * rate, bytes as usize * rate, left)
                .await
                .map_err(|why| BodyError::Budget {
                    url: url.clone(),
                    why,
                })?;
            hasher.update(&chunk);
            bytes += chunk.len() as i64;
            if tx.send((chunk, charge)).await.is_err() {
                break; // the parser stopped: its error says why
            }
            tokio::task::yield_now().await;
        }
        Ok(())
    }
    .await;
    // The end of the body (or of the fetch) for the parser.
    drop(tx);
    drop(body);
    let parsed = parser.await;
    pumped?;
    let (parsed, charge) = parsed.map_err(|e| BodyError::Parse {
        url: url.clone(),
        message: format!("parser task failed: {e}"),
    })?;
    let snapshot = parsed.map_err(|e| BodyError::Parse {
        url: url.clone(),
        message: e.to_string(),
    })?;
    let mut charge = charge.unwrap_or_else(|| budget.charge());
    charge.shrink_to(snapshot_bytes(&snapshot));
    Ok(Fetched {
        content_hash: hasher.finish(),
        snapshot,
        bytes,
        charge,
        context,
    })
}

/// The chunks of a body as a blocking `Read`, for the parser's thread; it keeps their charges.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<(Bytes, Charge)>,
    cur: Bytes,
    held: Arc<Mutex<Charge>>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some((c, charge)) => {
                    self.cur = c;
                    if let Ok(mut held) = self.held.lock() {
                        held.absorb(charge);
                    }
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

/// The heap a snapshot takes, estimated from its groups (what it holds until folded).
pub fn snapshot_bytes(s: &Snapshot) -> usize {
    let frame = |f: &Frame| std::mem::size_of::<Frame>() + f.function.len() + f.file.len();
    s.groups
        .iter()
        .map(|g: &SampleGroup| {
            std::mem::size_of::<SampleGroup>()
                + g.stack.frames.iter().map(frame).sum::<usize>()
                + g.stack.created_by.as_ref().map_or(0, frame)
                + g.state.len()
                + g.labels
                    .iter()
                    .map(|(k, v)| 64 + k.len() + v.len())
                    .sum::<usize>()
                + g.goroutine_ids.len() * 8
        })
        .sum()
}

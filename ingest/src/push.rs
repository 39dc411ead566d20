//! Pushed snapshots into the store: what `leakhound serve --push-listen` (actuate's `push`,
//! the gRPC side) does with the Go agent's stream, exactly once.
//!
//! ```text
//!  snapshots of many agents (any order across agents, seq order per agent)
//!   ─ Lander::land(a group) ─ per snapshot: seq ≤ acked? duplicate, acknowledged, dropped
//!                           ─ parse debug=1 (and debug=2) ─ fold: count row (+ container
//!                             context), samples, stacks, ids tracked per agent; a log row
//!                             keyed by content + target + capture time
//!   ─ Writer::commit (one commit for the group: the same writer and tables as ingest)
//!   ─ then _state/push.json: per agent the acked seq, Lamport clock, tracked ids, and the
//!     commit-log head it reflects
//! ```
//!
//! Exactly once: the agent resends what it has not seen acknowledged (at-least-once), and a
//! snapshot lands only when its `seq` is above the agent's acknowledged one. A crash between
//! the commit and the state's save would forget those acknowledgements; the state remembers
//! the commit-log head it reflects, and on open the ingest keys of the commits after it are
//! read back ([`crate::commit::read_after`]) into `unclaimed_keys` (saved with the state until
//! a resend claims them, or for a day): a resent snapshot whose key is among them is a
//! duplicate. The writer itself drops keys other writers commit while it runs.
//!
//! One `serve` per store lands pushes (two would each keep their own state).

use std::collections::{BTreeMap, HashSet};
use std::io::Cursor;

use bytes::Bytes;
use leakhound_schemas::model::DumpFormat;
use leakhound_schemas::{ProfileKind, Snapshot};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::context::ContainerContext;
use crate::error::{Error, Result};
use crate::residence::{IdTracker, TrackedIds};
use crate::rows::{CountRow, LogRow, Target, state_counts};
use crate::store::Store;
use crate::writer::{Batch, CommitStats, Writer, ingest_key};

pub const STATE_PATH: &str = "_state/push.json";

/// An agent not heard from for this long is forgotten by the state (its buffer would have
/// been dropped long before).
const FORGET_AFTER_US: i64 = 24 * 3600 * 1_000_000;

/// One snapshot as received (checked for shape by the caller; the bodies are checked here).
#[derive(Debug, Clone)]
pub struct Pushed {
    pub agent_id: String,
    pub seq: u64,
    pub lamport: u64,
    pub ts_us: i64,
    pub target: Target,
    pub debug1: Bytes,
    pub debug2: Option<Bytes>,
    pub context: ContainerContext,
    pub process_start_us: Option<i64>,
}

/// What became of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed now.
    Landed,
    /// Committed before (a resend): acknowledged, not landed again.
    Duplicate,
    /// Never landable (a body that is not what it says): acknowledged so the agent drops it.
    Rejected(String),
}

/// What the server tells an agent after a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub outcome: Outcome,
    /// The agent's acknowledged sequence after this snapshot.
    pub acked_seq: u64,
    /// The server's Lamport clock.
    pub lamport: u64,
    /// Take a debug=2 dump with the next snapshot.
    pub want_debug2: bool,
}

/// Per agent process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AgentState {
    pub acked_seq: u64,
    pub lamport: u64,
    pub last_ts_us: i64,
    /// When this server last heard from the agent (its own clock, µs): what forgetting it
    /// goes by (the agent's clock may be off).
    #[serde(default)]
    pub last_seen_us: i64,
    /// Snapshots landed.
    pub snapshots: u64,
    /// `snapshots` when the last debug=2 landed.
    pub last_debug2: Option<u64>,
    #[serde(default)]
    pub ids: TrackedIds,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PushState {
    pub agents: BTreeMap<String, AgentState>,
    /// The commit-log head when this state was saved.
    pub head: u64,
    /// The server's Lamport clock.
    pub lamport: u64,
    /// Ingest keys committed after the head a state was saved with (read back on open: a
    /// crash between a commit and its state's save), not yet claimed by a resent snapshot;
    /// each with when it was read back (µs). Kept across saves until claimed or a day old, so
    /// an agent that comes back later, after other agents' commits, still finds its keys.
    #[serde(default)]
    pub unclaimed_keys: BTreeMap<String, i64>,
}

/// Options of the landing.
#[derive(Debug, Clone)]
pub struct LandOptions {
    /// Ask for a debug=2 dump every this many snapshots of an agent.
    pub debug2_every: u64,
    /// Largest body (after decompression) parsed.
    pub max_body: usize,
}

impl Default for LandOptions {
    fn default() -> Self {
        LandOptions {
            debug2_every: 10,
            max_body: 64 << 20,
        }
    }
}

/// Lands groups of pushed snapshots through one [`Writer`].
pub struct Lander {
    writer: Writer,
    state: PushState,
    opts: LandOptions,
}

impl std::fmt::Debug for Lander {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lander")
            .field("agents", &self.state.agents.len())
            .field("head", &self.state.head)
            .finish()
    }
}

fn state_path(store: &Store) -> Path {
    let mut p = store.root().clone();
    for part in STATE_PATH.split('/') {
        p = p.join(part);
    }
    p
}

impl Lander {
    /// The store's push state, and the keys of what was committed after it was saved.
    pub async fn open(store: Store, opts: LandOptions) -> Result<Lander> {
        let path = state_path(&store);
        let mut state: PushState = match store.raw().get(&path).await {
            Ok(g) => {
                let b = g.bytes().await.map_err(|e| Error::ObjectStore {
                    path: path.to_string(),
                    source: e,
                })?;
                serde_json::from_slice(&b).map_err(|e| Error::Input {
                    source_name: path.to_string(),
                    message: format!("corrupt push state ({e}); delete it to start afresh"),
                })?
            }
            Err(object_store::Error::NotFound { .. }) => PushState::default(),
            Err(e) => {
                return Err(Error::ObjectStore {
                    path: path.to_string(),
                    source: e,
                });
            }
        };
        let mut writer = Writer::new(store.clone()).named("serve-push");
        // What was committed after the state's head: snapshots landed before a crash that
        // the saved state does not count yet (and other writers' inputs, never resent here).
        let after: HashSet<String> =
            match crate::commit::read_after(&store.raw(), store.root(), state.head).await? {
                Some(recs) => recs.into_iter().flat_map(|r| r.keys).collect(),
                // Folded into a checkpoint: every key the ingest log holds.
                None => writer.imported().await?.ok,
            };
        let now_us = chrono::Utc::now().timestamp_micros();
        for k in after {
            state.unclaimed_keys.entry(k).or_insert(now_us);
        }
        Ok(Lander {
            writer,
            state,
            opts,
        })
    }

    pub fn state(&self) -> &PushState {
        &self.state
    }

    /// Land `snaps` in one commit (then save the state); one reply per snapshot, in order.
    /// On an error nothing is acknowledged (the agents resend).
    pub async fn land(&mut self, snaps: &[Pushed]) -> Result<(Vec<Reply>, CommitStats)> {
        let now_us = chrono::Utc::now().timestamp_micros();
        let mut batch = Batch::default();
        // Work on copies of the agents' states: applied only once the commit is done.
        let mut touched: BTreeMap<String, AgentState> = BTreeMap::new();
        let mut lamport = self.state.lamport;
        let mut replies = Vec::with_capacity(snaps.len());
        let mut claimed = Vec::new();
        for s in snaps {
            lamport = lamport.max(s.lamport) + 1;
            let st = touched.entry(s.agent_id.clone()).or_insert_with(|| {
                self.state
                    .agents
                    .get(&s.agent_id)
                    .cloned()
                    .unwrap_or_default()
            });
            let outcome = if s.seq <= st.acked_seq {
                Outcome::Duplicate
            } else {
                match fold(
                    &mut batch,
                    st,
                    s,
                    &self.state.unclaimed_keys,
                    now_us,
                    &self.opts,
                ) {
                    Ok(Ok(())) => Outcome::Landed,
                    Ok(Err(key)) => {
                        claimed.push(key);
                        Outcome::Duplicate
                    }
                    Err(why) => Outcome::Rejected(why),
                }
            };
            // A rejected snapshot is acknowledged too: it can never land.
            st.acked_seq = st.acked_seq.max(s.seq);
            st.lamport = st.lamport.max(s.lamport);
            st.last_ts_us = st.last_ts_us.max(s.ts_us);
            st.last_seen_us = now_us;
            let want_debug2 = st
                .last_debug2
                .is_none_or(|l| st.snapshots.saturating_sub(l) + 1 >= self.opts.debug2_every);
            replies.push(Reply {
                outcome,
                acked_seq: st.acked_seq,
                lamport,
                want_debug2,
            });
        }
        let stats = if batch.is_empty() {
            CommitStats::default()
        } else {
            self.writer.commit(batch).await?
        };
        self.state.lamport = lamport;
        self.state.agents.extend(touched);
        for k in claimed {
            self.state.unclaimed_keys.remove(&k);
        }
        self.save(now_us).await?;
        Ok((replies, stats))
    }

    async fn save(&mut self, now_us: i64) -> Result<()> {
        self.state
            .agents
            .retain(|_, a| now_us.saturating_sub(a.last_seen_us) < FORGET_AFTER_US);
        self.state
            .unclaimed_keys
            .retain(|_, at| now_us.saturating_sub(*at) < FORGET_AFTER_US);
        self.state.head = self.writer.head().unwrap_or(self.state.head);
        let path = state_path(self.writer.store());
        let body = serde_json::to_vec(&self.state).unwrap_or_default();
        self.writer
            .store()
            .raw()
            .put(&path, PutPayload::from(body))
            .await
            .map_err(|e| Error::ObjectStore {
                path: path.to_string(),
                source: e,
            })?;
        Ok(())
    }
}

fn parse(
    body: &Bytes,
    want: DumpFormat,
    name: &str,
    opts: &LandOptions,
) -> std::result::Result<Snapshot, String> {
    let popts = crate::parse::ParseOptions {
        max_decompressed_bytes: opts.max_body as u64,
        ..Default::default()
    };
    let snap = crate::parse::parse_snapshot_with(Cursor::new(body.as_ref()), name, &popts)
        .map_err(|e| format!("{name}: {e}"))?;
    if snap.kind != ProfileKind::Goroutine || snap.format != Some(want) {
        return Err(format!(
            "{name}: not a goroutine profile at {}",
            want.as_str()
        ));
    }
    Ok(snap)
}

/// Fold one snapshot into the batch and its agent's state: `Ok(Ok(()))` landed,
/// `Ok(Err(key))` its key was committed already (before a crash: a duplicate), `Err` when a
/// body is not what it says.
fn fold(
    batch: &mut Batch,
    st: &mut AgentState,
    s: &Pushed,
    unclaimed: &BTreeMap<String, i64>,
    now_us: i64,
    opts: &LandOptions,
) -> std::result::Result<std::result::Result<(), String>, String> {
    let name = format!("push:{}#{}", s.agent_id, s.seq);
    let d1 = parse(&s.debug1, DumpFormat::Debug1, &name, opts)?;
    let d2 = match &s.debug2 {
        Some(b) if !b.is_empty() => Some(parse(b, DumpFormat::Debug2, &name, opts)?),
        _ => None,
    };
    let hash = |b: &Bytes| {
        let mut h = crate::content_hash::ContentHasher::new();
        h.update(b);
        h.finish()
    };
    let h1 = hash(&s.debug1);
    let key = ingest_key(
        &h1,
        &s.target,
        s.ts_us,
        ProfileKind::Goroutine,
        Some("debug1"),
    );
    if unclaimed.contains_key(&key) {
        return Ok(Err(key));
    }
    let mut tracker = IdTracker::default();
    let ids = std::mem::take(&mut st.ids);
    if !ids.first_seen.is_empty() || ids.latest_ts_us != 0 {
        tracker.import(&s.target, ids);
    }
    let (running, runnable, waiting, syscall) = d2
        .as_ref()
        .map(state_counts)
        .unwrap_or((None, None, None, None));
    let goroutines = i64::try_from(d1.total()).unwrap_or(i64::MAX);
    batch.add_counts(
        vec![CountRow {
            target: s.target.clone(),
            ts_us: s.ts_us,
            goroutines,
            running,
            runnable,
            waiting,
            syscall,
            process_start_time_us: s.process_start_us,
            source: "push".into(),
            format: "debug1".into(),
            content_hash: Some(h1.clone()),
            partial: Some(false),
            context: s.context,
            ..Default::default()
        }],
        &h1,
    );
    let mut rows = 1 + batch.add_samples(&mut tracker, &s.target, s.ts_us, &h1, &d1);
    if let (Some(d2), Some(b)) = (&d2, &s.debug2) {
        rows += batch.add_samples(&mut tracker, &s.target, s.ts_us, &hash(b), d2);
        st.last_debug2 = Some(st.snapshots + 1);
    }
    if let Some(ids) = tracker.export(&s.target) {
        st.ids = ids;
    }
    st.snapshots += 1;
    batch.add_log(LogRow {
        ingested_at_us: now_us,
        source: "push".into(),
        content_hash: h1,
        format: Some("debug1".into()),
        namespace: Some(s.target.namespace.clone()),
        pod: Some(s.target.pod.clone()),
        snapshot_ts_us: Some(s.ts_us),
        goroutines,
        rows: rows as i64,
        status: "ok",
        error: None,
        ingest_key: Some(key),
    });
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(agent: &str, seq: u64, ts_us: i64) -> Pushed {
        Pushed {
            agent_id: agent.into(),
            seq,
            lamport: seq,
            ts_us,
            target: Target {
                namespace: "shop".into(),
                pod: agent.into(),
                ..Default::default()
            },
            debug1: Bytes::from_static(
                b"goroutine profile: total 2\n2 @ 0x1 0x2\n#\t0x1\tmain.f+0x1\t/src/main.go:7\n#\t0x2\tmain.main+0x2\t/src/main.go:3\n\n",
            ),
            debug2: None,
            context: ContainerContext::default(),
            process_start_us: None,
        }
    }

    /// A crash between a commit and the save of the state that counts it: on open, the keys of
    /// the commits after the saved head are read back, and each agent's resend is a duplicate
    /// whenever it comes — after other agents' commits and saves too.
    #[tokio::test]
    async fn resends_after_a_lost_state_save_are_duplicates_whenever_they_come() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("store");
        let store = Store::open(url.to_str().unwrap()).unwrap();
        let t0 = 1_764_300_000_000_000;
        let mut l = Lander::open(store.clone(), LandOptions::default())
            .await
            .unwrap();
        let (r, _) = l.land(&[snap("a", 1, t0), snap("b", 1, t0)]).await.unwrap();
        assert!(r.iter().all(|r| r.outcome == Outcome::Landed), "{r:?}");
        // The same snapshots again: duplicates by seq.
        let (r, _) = l.land(&[snap("a", 1, t0), snap("b", 1, t0)]).await.unwrap();
        assert!(r.iter().all(|r| r.outcome == Outcome::Duplicate), "{r:?}");
        drop(l);
        // As if the save after that commit never happened.
        let path = state_path(&store);
        store
            .raw()
            .put(
                &path,
                PutPayload::from(b"{\"agents\":{},\"head\":0,\"lamport\":0}".to_vec()),
            )
            .await
            .unwrap();
        let mut l = Lander::open(store.clone(), LandOptions::default())
            .await
            .unwrap();
        let (r, _) = l.land(&[snap("a", 1, t0)]).await.unwrap();
        assert_eq!(r[0].outcome, Outcome::Duplicate);
        assert_eq!(r[0].acked_seq, 1);
        // Another agent's commit and save come between.
        let (r, _) = l.land(&[snap("c", 1, t0)]).await.unwrap();
        assert_eq!(r[0].outcome, Outcome::Landed);
        drop(l);
        // ... and a restart: b's resend is still recognised.
        let mut l = Lander::open(store.clone(), LandOptions::default())
            .await
            .unwrap();
        let (r, _) = l
            .land(&[snap("b", 1, t0), snap("b", 2, t0 + 1)])
            .await
            .unwrap();
        assert_eq!(r[0].outcome, Outcome::Duplicate, "{r:?}");
        assert_eq!(r[1].outcome, Outcome::Landed, "{r:?}");
        // Claimed keys leave the state.
        assert!(
            l.state().unclaimed_keys.is_empty(),
            "{:?}",
            l.state().unclaimed_keys
        );
        // A body that is not a debug=1 profile is rejected (and acknowledged).
        let mut bad = snap("d", 1, t0);
        bad.debug1 = Bytes::from_static(b"hello");
        let (r, _) = l.land(&[bad]).await.unwrap();
        assert!(matches!(r[0].outcome, Outcome::Rejected(_)), "{r:?}");
        assert_eq!(r[0].acked_seq, 1);
    }
}

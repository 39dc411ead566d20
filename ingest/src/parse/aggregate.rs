//! debug=2 straight into a [`Snapshot`], without building a record per goroutine.
//!
//! ```text
//!  lines ─▶ debug2::Machine ─▶ AggSink ──(raw frames: bytes, no String)──▶ stack cache ─hit─▶ group += 1
//!                                                                              └─miss─▶ Frames, canonical_frames, stack_id (once per stack)
//! ```
//!
//! Most goroutines of a large dump repeat a few stacks. [`AggSink`] is a [`Sink`] of the same
//! state machine as [`super::Debug2Parser`] (so every decision, error and position is shared),
//! but instead of building `Frame`s and `String`s it appends each frame's raw bytes (function
//! as printed, file, line) to a reusable key buffer. At the end of a record the key is looked
//! up in a cache of stacks seen before: a hit gives the canonical [`Stack`] and its
//! [`StackId`] at the cost of one hash and one compare; only a miss (the first time a stack is
//! seen) builds `Frame`s and runs [`canonical_frames`]. States and label sets are interned the
//! same way. The cache keys are the exact bytes (compared on every hit), so the result is the
//! one [`SnapshotBuilder`](leakhound_schemas::model::SnapshotBuilder) gives over the full path's
//! records — same groups, in the same order, with the same stacks, wait ranges, labels and
//! goroutine ids — which `tests::aggregate` and the `snapshot_fast` fuzz target check.
//!
//! Every `created by` site is counted too (one add per goroutine, into a slot of the raw-stack
//! cache entry, whose key includes the creator), so the snapshot lists all sites of a stack
//! ([`Snapshot::creators`]) as the full path does. `(leaked)` is part of the group key.
//!
//! A sink folds records into a [`Partial`] (groups in order of first appearance); partials of
//! consecutive pieces of the input merge into an [`Aggregate`] in input order, which is what
//! lets [`super::parallel`] parse pieces on several threads.
//!
//! Memory: the caches hold one entry per distinct raw stack, state and label set (each is also
//! a group of the snapshot, or close to it), and are emptied when they pass [`CACHE_LIMIT`]
//! entries, so input made of ever-new stacks cannot grow them without bound. The snapshot
//! itself keeps one goroutine id (8 bytes) per goroutine, unless
//! [`ParseOptions::max_ids_per_group`] bounds them (as `leakhound inspect` does): then memory no
//! longer grows with the goroutines of a stack.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use leakhound_schemas::model::{
    DumpFormat, Frame, ProfileKind, SampleGroup, Snapshot, Stack, StackId, max_opt, min_opt,
    sort_creators, wait_bucket,
};

use super::ParseOptions;
use super::debug2::{Header, LabelForm, Machine, Sink};
use super::error::{ParseError, Position, Result};
use super::lines::LineSource;
use super::normalise::canonical_frames;
use super::quote::{QuoteError, parse_bare_label_set, parse_label_set};

/// Entries after which a raw-bytes cache is emptied (it refills with what is still in use).
pub(crate) const CACHE_LIMIT: usize = 1 << 16;

type Labels = BTreeMap<String, String>;

/// A hasher for the caches: xxh3 over byte strings, a multiply-rotate mix over integers, from a
/// per-process random seed (the keys come from the input; a fixed seed would let a crafted dump
/// collide them all).
#[derive(Clone, Copy)]
pub(crate) struct FastState(u64);

impl FastState {
    pub(crate) fn new() -> Self {
        FastState(std::collections::hash_map::RandomState::new().hash_one(0x6c65_616b_u64))
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

pub(crate) struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn mix(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(23) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.mix(u64::from(v));
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.mix(u64::from(v));
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.mix(v);
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.mix(v as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // One last round so that the low bits (hashbrown's buckets) depend on every input bit.
        let x = self.0 ^ (self.0 >> 29);
        x.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (x >> 32)
    }
}

type FastMap<K, V> = HashMap<K, V, FastState>;

/// Label set bytes → (label set id, bytes taken).
type RawLabels = FastMap<Box<[u8]>, (u32, usize)>;

/// One group of a [`Partial`] or an [`Aggregate`]: goroutines sharing stack id, state, wait
/// bucket, labels and `(leaked)` — a [`SampleGroup`] in the making.
pub(crate) struct Group {
    stack_id: StackId,
    /// The stack of the group's first goroutine.
    stack: Arc<Stack>,
    /// The stack of its first goroutine with a `created by` frame, if the first one had none:
    /// where [`SnapshotBuilder`](leakhound_schemas::model::SnapshotBuilder) takes `created_by`
    /// from then.
    created_by_from: Option<Arc<Stack>>,
    state: Arc<str>,
    wait_bucket: &'static str,
    labels: Arc<Labels>,
    wait_min: Option<u32>,
    wait_max: Option<u32>,
    count: u64,
    ids: Ids,
    leaked: bool,
}

/// A group's goroutine ids, at most [`ParseOptions::max_ids_per_group`] of them kept: all of
/// them in input order while there are no more than that, else the lowest ones (see
/// [`cap_ids`], which gives the same from the full list). Between compactions `kept` holds up to
/// twice the cap; ids that cannot be among the lowest are dropped on arrival.
pub(crate) struct Ids {
    kept: Vec<u64>,
    /// Ids pushed or merged in, kept or not.
    seen: u64,
    /// Only ids below this can still be among the lowest (`u64::MAX` before the first
    /// compaction: everything is kept until then).
    below: u64,
}

impl Ids {
    fn one(id: u64, cap: usize) -> Self {
        let mut ids = Ids {
            kept: Vec::new(),
            seen: 0,
            below: u64::MAX,
        };
        ids.push(id, cap);
        ids
    }

    #[inline]
    fn push(&mut self, id: u64, cap: usize) {
        self.seen += 1;
        // `u64::MAX` itself is kept until the first compaction (the full path keeps it too).
        if id < self.below || self.below == u64::MAX {
            self.kept.push(id);
            if self.kept.len() > cap.saturating_mul(2) {
                self.compact(cap);
            }
        }
    }

    fn merge(&mut self, other: Ids, cap: usize) {
        self.seen += other.seen;
        let below = self.below;
        self.kept.extend(
            other
                .kept
                .into_iter()
                .filter(|&id| id < below || below == u64::MAX),
        );
        if self.kept.len() > cap.saturating_mul(2) {
            self.compact(cap);
        }
    }

    /// Keep the `cap` lowest (unordered).
    fn compact(&mut self, cap: usize) {
        if self.kept.len() > cap {
            let (_, &mut nth, _) = self.kept.select_nth_unstable(cap);
            self.below = self.below.min(nth);
            self.kept.truncate(cap);
        }
    }

    fn finish(mut self, cap: usize) -> Vec<u64> {
        if self.seen > cap as u64 {
            self.compact(cap);
            self.kept.sort_unstable();
        }
        self.kept
    }
}

/// What [`ParseOptions::max_ids_per_group`] makes of a group's full list of ids: unchanged if
/// it holds no more than `cap`, else its `cap` lowest, ascending.
pub(crate) fn cap_ids(ids: &mut Vec<u64>, cap: usize) {
    if ids.len() > cap {
        ids.select_nth_unstable(cap);
        ids.truncate(cap);
        ids.sort_unstable();
    }
}

impl Group {
    fn created_by_missing(&self) -> bool {
        self.stack.created_by.is_none() && self.created_by_from.is_none()
    }

    /// The stack a later goroutine's `created by` would come from, if it has one.
    fn created_by_source(&self) -> Option<&Arc<Stack>> {
        if self.stack.created_by.is_some() {
            Some(&self.stack)
        } else {
            self.created_by_from.as_ref()
        }
    }

    fn into_sample_group(self, max_ids: usize) -> SampleGroup {
        let mut stack = Arc::unwrap_or_clone(self.stack);
        if stack.created_by.is_none()
            && let Some(from) = self.created_by_from
        {
            stack.created_by.clone_from(&from.created_by);
        }
        SampleGroup {
            stack_id: self.stack_id,
            stack,
            state: self.state.to_string(),
            wait_bucket: self.wait_bucket,
            wait_minutes_min: self.wait_min,
            wait_minutes_max: self.wait_max,
            labels: Arc::unwrap_or_clone(self.labels),
            count: self.count,
            goroutine_ids: self.ids.finish(max_ids),
            leaked: self.leaked,
        }
    }
}

/// What a sink folded from consecutive records: groups in order of first appearance.
#[derive(Default)]
pub(crate) struct Partial {
    pub(crate) groups: Vec<Group>,
    pub(crate) records: u64,
    /// `created by` sites: (stack id, site, goroutines), possibly several entries per site.
    pub(crate) creators: Vec<(StackId, Frame, u64)>,
}

/// The current record, as far as the snapshot cares.
#[derive(Default)]
struct Current {
    id: u64,
    state: u32,
    labels: u32,
    wait_minutes: Option<u32>,
    leaked: bool,
    elided: bool,
    /// The frames, each as `len(function) function len(file) file line` (lengths and line as
    /// u32 LE): an injective encoding, so equal keys mean equal frames.
    key: Vec<u8>,
    /// The `created by` frame, same encoding; empty if none.
    created_by: Vec<u8>,
}

/// The aggregating [`Sink`]. Its caches live as long as it does (across pieces of one input);
/// its groups are handed out by [`AggSink::take`].
pub(crate) struct AggSink {
    cur: Current,
    /// Raw status bytes → state id.
    state_raw: FastMap<Box<[u8]>, u32>,
    /// State (as a lossy UTF-8 string) → state id, and back.
    state_ids: FastMap<Arc<str>, u32>,
    states: Vec<Arc<str>>,
    /// (form, label set bytes to the end of the header line) → (label set id, bytes taken).
    label_raw: [RawLabels; 2],
    /// Label set → id, and back. Id 0 is the empty set (a header without labels).
    label_ids: FastMap<Arc<Labels>, u32>,
    label_sets: Vec<Arc<Labels>>,
    /// Raw stack key (frames, elided, created by) → index into `stack_vals`.
    stack_raw: FastMap<Box<[u8]>, u32>,
    stack_vals: Vec<(StackId, Arc<Stack>)>,
    /// Goroutines per entry of `stack_vals` since the last [`AggSink::flush_creators`]: where
    /// the `created by` sites are counted (one add per goroutine).
    stack_counts: Vec<u64>,
    /// (stack id, state id, wait bucket, label set id, leaked) → index into `part.groups`.
    index: FastMap<(u64, u32, &'static str, u32, bool), u32>,
    part: Partial,
    /// [`ParseOptions::max_ids_per_group`].
    max_ids: usize,
}

impl Default for AggSink {
    fn default() -> Self {
        let hasher = FastState::new();
        let empty = Arc::new(Labels::new());
        let mut label_ids = FastMap::with_hasher(hasher);
        label_ids.insert(Arc::clone(&empty), 0);
        AggSink {
            cur: Current::default(),
            state_raw: FastMap::with_hasher(hasher),
            state_ids: FastMap::with_hasher(hasher),
            states: Vec::new(),
            label_raw: [FastMap::with_hasher(hasher), FastMap::with_hasher(hasher)],
            label_ids,
            label_sets: vec![empty],
            stack_raw: FastMap::with_hasher(hasher),
            stack_vals: Vec::new(),
            stack_counts: Vec::new(),
            index: FastMap::with_hasher(hasher),
            part: Partial::default(),
            max_ids: usize::MAX,
        }
    }
}

impl AggSink {
    /// The groups folded since the last call (the caches are kept).
    pub(crate) fn take(&mut self) -> Partial {
        self.flush_creators();
        self.index.clear();
        std::mem::take(&mut self.part)
    }

    /// Move the `created by` counts of `stack_counts` into the partial.
    fn flush_creators(&mut self) {
        for (i, n) in self.stack_counts.iter_mut().enumerate() {
            if *n == 0 {
                continue;
            }
            if let Some((sid, stack)) = self.stack_vals.get(i)
                && let Some(c) = &stack.created_by
            {
                self.part.creators.push((*sid, c.clone(), *n));
            }
            *n = 0;
        }
    }

    fn intern_state(&mut self, raw: &[u8]) -> u32 {
        if let Some(&id) = self.state_raw.get(raw) {
            return id;
        }
        if self.state_raw.len() >= CACHE_LIMIT {
            self.state_raw.clear();
        }
        let name: Arc<str> = match std::str::from_utf8(raw) {
            Ok(s) => s.into(),
            Err(_) => String::from_utf8_lossy(raw).into(),
        };
        let id = match self.state_ids.get(&name) {
            Some(&id) => id,
            None => {
                let id = self.states.len() as u32;
                self.states.push(Arc::clone(&name));
                self.state_ids.insert(name, id);
                id
            }
        };
        self.state_raw.insert(raw.into(), id);
        id
    }

    fn intern_labels(&mut self, labels: Labels) -> u32 {
        if let Some(&id) = self.label_ids.get(&labels) {
            return id;
        }
        let id = self.label_sets.len() as u32;
        let labels = Arc::new(labels);
        self.label_sets.push(Arc::clone(&labels));
        self.label_ids.insert(labels, id);
        id
    }

    /// The canonical stack of the current record (key: frames, then the trailer).
    fn stack_of(&mut self, frames_len: usize) -> u32 {
        if let Some(&i) = self.stack_raw.get(&self.cur.key[..]) {
            return i;
        }
        if self.stack_raw.len() >= CACHE_LIMIT {
            self.flush_creators();
            self.stack_raw.clear();
            self.stack_vals.clear();
            self.stack_counts.clear();
        }
        let frames = canonical_frames(decode_frames(&self.cur.key[..frames_len]));
        let stack = Stack {
            created_by: decode_frames(&self.cur.created_by).pop(),
            frames,
            elided: self.cur.elided,
        };
        let i = self.stack_vals.len() as u32;
        self.stack_vals.push((stack.id(), Arc::new(stack)));
        self.stack_counts.push(0);
        self.stack_raw.insert(self.cur.key[..].into(), i);
        i
    }
}

fn encode_frame(out: &mut Vec<u8>, function: &[u8], file: &[u8], line: u32) {
    // Lines are capped well below 4 GiB (`max_line_bytes`); saturate rather than wrap anyway.
    out.extend_from_slice(
        &u32::try_from(function.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(function);
    out.extend_from_slice(&u32::try_from(file.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(file);
    out.extend_from_slice(&line.to_le_bytes());
}

fn decode_frames(mut b: &[u8]) -> Vec<Frame> {
    fn u32_at(b: &mut &[u8]) -> Option<u32> {
        let (n, rest) = b.split_first_chunk::<4>()?;
        *b = rest;
        Some(u32::from_le_bytes(*n))
    }
    fn bytes_at<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
        let n = u32_at(b)? as usize;
        let (s, rest) = b.split_at_checked(n)?;
        *b = rest;
        Some(s)
    }
    let mut frames = Vec::new();
    while let (Some(function), Some(file), Some(line)) =
        (bytes_at(&mut b), bytes_at(&mut b), u32_at(&mut b))
    {
        frames.push(Frame {
            function: lossy(function),
            file: lossy(file),
            line,
        });
    }
    frames
}

fn lossy(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

impl Sink for AggSink {
    type Labels = u32;
    type Out = ();

    fn labels(
        &mut self,
        form: LabelForm,
        set: &[u8],
    ) -> std::result::Result<(u32, usize), QuoteError> {
        let f = form as usize;
        if let Some(&v) = self.label_raw[f].get(set) {
            return Ok(v);
        }
        let (labels, n) = match form {
            LabelForm::Quoted => parse_label_set(set)?,
            LabelForm::Bare => parse_bare_label_set(set)?,
        };
        let id = self.intern_labels(labels);
        if self.label_raw[f].len() >= CACHE_LIMIT {
            self.label_raw[f].clear();
        }
        self.label_raw[f].insert(set.into(), (id, n));
        Ok((id, n))
    }

    fn start(&mut self, h: Header<'_, u32>) {
        let state = self.intern_state(h.status);
        let c = &mut self.cur;
        c.id = h.id;
        c.state = state;
        c.labels = h.labels.unwrap_or(0);
        c.wait_minutes = h.wait_minutes;
        c.leaked = h.leaked;
        c.elided = false;
        c.key.clear();
        c.created_by.clear();
    }

    #[inline]
    fn frame(&mut self, function: &[u8], file: &[u8], line: u32) {
        encode_frame(&mut self.cur.key, function, file, line);
    }

    fn created_by(&mut self, function: &[u8], file: &[u8], line: u32) {
        self.cur.created_by.clear();
        encode_frame(&mut self.cur.created_by, function, file, line);
    }

    fn creator_goroutine(&mut self, _id: u64) {}

    fn elided(&mut self) {
        self.cur.elided = true;
    }

    fn end(&mut self, emit: bool) -> Option<()> {
        if !emit {
            return None;
        }
        // The key: frames, then elided and `created by` (not in the stack id, but part of the
        // stack the group keeps).
        let frames_len = self.cur.key.len();
        self.cur.key.push(u8::from(self.cur.elided));
        if !self.cur.created_by.is_empty() {
            let cb = std::mem::take(&mut self.cur.created_by);
            self.cur.key.extend_from_slice(&cb);
            self.cur.created_by = cb;
        }
        let si = self.stack_of(frames_len) as usize;
        self.cur.key.truncate(frames_len);
        self.stack_counts[si] += 1;
        let (sid, ref stack) = self.stack_vals[si];
        let c = &self.cur;
        let bucket = wait_bucket(c.wait_minutes);
        let key = (sid.0, c.state, bucket, c.labels, c.leaked);
        self.part.records += 1;
        match self.index.get(&key) {
            Some(&g) => {
                let g = &mut self.part.groups[g as usize];
                g.count = g.count.saturating_add(1);
                g.ids.push(c.id, self.max_ids);
                g.wait_min = min_opt(g.wait_min, c.wait_minutes);
                g.wait_max = max_opt(g.wait_max, c.wait_minutes);
                if g.created_by_missing() && stack.created_by.is_some() {
                    g.created_by_from = Some(Arc::clone(stack));
                }
            }
            None => {
                self.index.insert(key, self.part.groups.len() as u32);
                self.part.groups.push(Group {
                    stack_id: sid,
                    stack: Arc::clone(stack),
                    created_by_from: None,
                    state: Arc::clone(&self.states[c.state as usize]),
                    wait_bucket: bucket,
                    labels: Arc::clone(&self.label_sets[c.labels as usize]),
                    wait_min: c.wait_minutes,
                    wait_max: c.wait_minutes,
                    count: 1,
                    ids: Ids::one(c.id, self.max_ids),
                    leaked: c.leaked,
                });
            }
        }
        Some(())
    }
}

/// Partials merged in input order.
pub(crate) struct Aggregate {
    /// Stack id → indices into `groups` (few per id: one per state, bucket and label set).
    by_stack: FastMap<u64, Vec<u32>>,
    groups: Vec<Group>,
    /// `created by` sites per stack id, in order of first appearance.
    creators: FastMap<StackId, Vec<(Frame, u64)>>,
    records: u64,
    /// [`ParseOptions::max_ids_per_group`].
    max_ids: usize,
}

impl Aggregate {
    pub(crate) fn new(opts: &ParseOptions) -> Self {
        Aggregate {
            by_stack: FastMap::with_hasher(FastState::new()),
            groups: Vec::new(),
            creators: FastMap::with_hasher(FastState::new()),
            records: 0,
            max_ids: opts.max_ids_per_group,
        }
    }

    /// Goroutines folded in so far.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// Fold in the partial of the input that follows everything merged so far.
    pub(crate) fn merge(&mut self, part: Partial) {
        self.records += part.records;
        for (sid, frame, n) in part.creators {
            let sites = self.creators.entry(sid).or_default();
            match sites.iter_mut().find(|(f, _)| *f == frame) {
                Some((_, m)) => *m = m.saturating_add(n),
                None => sites.push((frame, n)),
            }
        }
        for g in part.groups {
            let same = self.by_stack.entry(g.stack_id.0).or_default();
            let found = same.iter().copied().find(|&i| {
                let h = &self.groups[i as usize];
                h.wait_bucket == g.wait_bucket
                    && h.state == g.state
                    && h.labels == g.labels
                    && h.leaked == g.leaked
            });
            let Some(i) = found else {
                same.push(self.groups.len() as u32);
                self.groups.push(g);
                continue;
            };
            let h = &mut self.groups[i as usize];
            h.count = h.count.saturating_add(g.count);
            h.wait_min = min_opt(h.wait_min, g.wait_min);
            h.wait_max = max_opt(h.wait_max, g.wait_max);
            if h.created_by_missing() {
                h.created_by_from = g.created_by_source().cloned();
            }
            h.ids.merge(g.ids, self.max_ids);
        }
    }

    /// The snapshot, groups ordered as
    /// [`SnapshotBuilder::finish`](leakhound_schemas::model::SnapshotBuilder::finish) orders
    /// them (largest first, then by stack id; a stable sort, so ties keep first appearance).
    pub(crate) fn into_snapshot(self) -> Snapshot {
        let max_ids = self.max_ids;
        let mut groups: Vec<SampleGroup> = self
            .groups
            .into_iter()
            .map(|g| g.into_sample_group(max_ids))
            .collect();
        groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.stack_id.cmp(&b.stack_id)));
        let creators = self
            .creators
            .into_iter()
            .map(|(sid, mut sites)| {
                sort_creators(&mut sites);
                (sid, sites)
            })
            .collect();
        Snapshot {
            kind: ProfileKind::Goroutine,
            format: Some(DumpFormat::Debug2),
            groups,
            creators,
            ..Default::default()
        }
    }
}

/// What parsing one stretch of input gave: its groups, then the error that stopped it (if
/// any), and its first non-blank line.
pub(crate) struct PieceOut {
    pub(crate) part: Partial,
    pub(crate) error: Option<ParseError>,
    pub(crate) first_line: Option<String>,
    /// The first line that starts a dump before any record of the stretch.
    pub(crate) first_dump_start: Option<Position>,
}

/// Parse `lines` (a stretch of input starting right after a blank line or at the start) into
/// `sink`'s groups, up to its end or its first error. `seen_before`: goroutines of the dump
/// came before this stretch. Returns the output, the offset reached, and the sink (to reuse
/// its caches).
pub(crate) fn parse_stretch<L: LineSource>(
    lines: L,
    opts: &ParseOptions,
    sink: AggSink,
    seen_before: bool,
) -> (PieceOut, u64, AggSink) {
    let mut sink = sink;
    sink.max_ids = opts.max_ids_per_group;
    let mut m = Machine::new(lines, opts, sink);
    m.set_seen_before(seen_before);
    let mut error = None;
    while let Some(r) = m.next() {
        if let Err(e) = r {
            error = Some(e);
            break;
        }
    }
    let part = m.sink_mut().take();
    let first_line = m.first_line().map(str::to_owned);
    let first_dump_start = m.first_dump_start();
    let bytes = m.bytes_read();
    (
        PieceOut {
            part,
            error,
            first_line,
            first_dump_start,
        },
        bytes,
        m.into_sink(),
    )
}

/// The snapshot, or [`ParseError::NoGoroutines`] if the input held none. `error`: what
/// stopped the parse, if anything: a cut after goroutines gives a partial snapshot
/// ([`super::cut_of`]); any other error is the result.
pub(crate) fn finish(
    agg: Aggregate,
    bytes: u64,
    first_line: Option<String>,
    error: Option<ParseError>,
    opts: &ParseOptions,
) -> Result<Snapshot> {
    let partial = match error {
        None => None,
        Some(e) => match super::cut_of(&e) {
            Some(cut) if agg.records() > 0 => Some(cut),
            _ => return Err(e),
        },
    };
    if agg.records() == 0 {
        return Err(ParseError::NoGoroutines {
            bytes,
            first_line: first_line.unwrap_or_default(),
        });
    }
    let mut snap = agg.into_snapshot();
    snap.partial = partial;
    super::check_one_dump(&snap, opts)?;
    Ok(snap)
}

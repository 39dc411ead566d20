//! `leakhound inspect`: a dump or profile read without a store, summarised the way panicparse
//! does it: totals by state, then stacks grouped with counts, wait ranges and labels, largest
//! first.
//!
//! Grouping decision: a stack is its frames and state; `created by` is *not* part of it (the
//! stack id is the same in debug=0/1, which have no creation sites), so a stack whose goroutines
//! were started at several places lists every site with its count (`created_by_sites`).
//! `leaked` counts the goroutines the runtime marked `(leaked)` (`leaked_count`), not the stack.
//! A dump cut short (crash logs often are) is summarised from its complete records, says where
//! it was cut (`partial`), and makes the command exit 1.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use leakhound_ingest::parse::{ParseOptions, parse_snapshot_with};
use leakhound_schemas::model::{Cut, Frame, Snapshot, StackId};
use serde::Serialize;

use crate::cli::InspectArgs;

/// Stacks grouped by (stack id, state) — wait buckets and label sets folded together.
#[derive(Debug, Serialize)]
pub struct StackReport {
    pub stack_id: String,
    pub count: u64,
    pub state: String,
    pub wait_minutes: Option<WaitRange>,
    pub labels: Vec<BTreeMap<String, String>>,
    /// Some goroutine of the stack is marked `(leaked)` (`leaked_count > 0`).
    pub leaked: bool,
    /// Goroutines of the stack the runtime marked `(leaked)` (all of them in a goroutineleak
    /// profile).
    pub leaked_count: u64,
    pub frames: Vec<Frame>,
    /// The `created by` site of the stack's most frequent creator.
    pub created_by: Option<Frame>,
    /// Every `created by` site of the stack's goroutines with their count, most first.
    pub created_by_sites: Vec<CreatorSite>,
    pub elided: bool,
    /// Every goroutine id of the stack if it has at most [`ParseOptions::SUMMARY_IDS`]
    /// goroutines, else the lowest that many (the oldest goroutines, usually), ascending.
    pub goroutine_ids: Vec<u64>,
}

#[derive(Debug, Serialize, Clone)]
pub struct CreatorSite {
    pub frame: Frame,
    pub count: u64,
}

#[derive(Debug, Serialize, Clone, Copy)]
pub struct WaitRange {
    pub min: u32,
    pub max: u32,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub source: String,
    pub format: Option<&'static str>,
    pub profile: &'static str,
    pub total: u64,
    pub declared_total: Option<u64>,
    /// Where the dump was cut, if it was: the report holds its complete records only.
    pub partial: Option<Cut>,
    pub by_state: BTreeMap<String, u64>,
    pub stacks: Vec<StackReport>,
}

pub fn report(source: &str, snap: &Snapshot) -> Report {
    let mut groups: BTreeMap<(StackId, String), StackReport> = BTreeMap::new();
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    for g in &snap.groups {
        let state = if g.state.is_empty() {
            "(unknown)".to_string()
        } else {
            g.state.clone()
        };
        *by_state.entry(state.clone()).or_default() += g.count;
        let e = groups
            .entry((g.stack_id, g.state.clone()))
            .or_insert_with(|| StackReport {
                stack_id: g.stack_id.to_string(),
                count: 0,
                state: g.state.clone(),
                wait_minutes: None,
                labels: Vec::new(),
                leaked: false,
                leaked_count: 0,
                frames: g.stack.frames.clone(),
                created_by: None,
                created_by_sites: Vec::new(),
                elided: g.stack.elided,
                goroutine_ids: Vec::new(),
            });
        e.count += g.count;
        if g.leaked {
            e.leaked = true;
            e.leaked_count += g.count;
        }
        if !g.labels.is_empty() && !e.labels.contains(&g.labels) {
            e.labels.push(g.labels.clone());
        }
        e.goroutine_ids.extend(&g.goroutine_ids);
        if let (Some(lo), Some(hi)) = (g.wait_minutes_min, g.wait_minutes_max) {
            e.wait_minutes = Some(match e.wait_minutes {
                Some(w) => WaitRange {
                    min: w.min.min(lo),
                    max: w.max.max(hi),
                },
                None => WaitRange { min: lo, max: hi },
            });
        }
    }
    let mut stacks: Vec<StackReport> = groups.into_values().collect();
    for s in &mut stacks {
        // Sites of the stack id (all its states: the same goroutines' entry points).
        let id = u64::from_str_radix(&s.stack_id, 16).map(StackId);
        if let Some(sites) = id.ok().and_then(|id| snap.creators.get(&id)) {
            s.created_by_sites = sites
                .iter()
                .map(|(frame, count)| CreatorSite {
                    frame: frame.clone(),
                    count: *count,
                })
                .collect();
            s.created_by = sites.first().map(|(f, _)| f.clone());
        }
        s.goroutine_ids.sort_unstable();
        // Each group kept at most its lowest `SUMMARY_IDS`; so does the stack.
        s.goroutine_ids.truncate(ParseOptions::SUMMARY_IDS);
        s.labels.sort();
    }
    stacks.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.stack_id.cmp(&b.stack_id))
            .then_with(|| a.state.cmp(&b.state))
    });
    Report {
        source: source.to_string(),
        format: snap.format.map(|f| f.as_str()),
        profile: snap.kind.as_str(),
        total: snap.total(),
        declared_total: snap.declared_total,
        partial: snap.partial.clone(),
        by_state,
        stacks,
    }
}

fn print_text(out: &mut dyn Write, r: &Report, max_frames: usize) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {} goroutines ({} profile, {})",
        r.source,
        r.total,
        r.profile,
        r.format.unwrap_or("?")
    )?;
    let mut states: Vec<(&String, &u64)> = r.by_state.iter().collect();
    states.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let line: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
    writeln!(out, "  by state: {}", line.join(", "))?;
    if let Some(c) = &r.partial {
        writeln!(
            out,
            "  PARTIAL: the dump is {c}; only the goroutines before the cut are counted"
        )?;
    }
    let distinct: BTreeSet<&str> = r.stacks.iter().map(|s| s.stack_id.as_str()).collect();
    writeln!(out, "  {} distinct stacks", distinct.len())?;
    for s in &r.stacks {
        writeln!(out)?;
        let mut head = format!(
            "{} x [{}",
            s.count,
            if s.state.is_empty() { "?" } else { &s.state }
        );
        if let Some(w) = s.wait_minutes {
            if w.min == w.max {
                head.push_str(&format!(", {} minutes", w.min));
            } else {
                head.push_str(&format!(", {}-{} minutes", w.min, w.max));
            }
        }
        head.push(']');
        if s.leaked_count == s.count {
            head.push_str(" LEAKED (runtime-confirmed)");
        } else if s.leaked_count > 0 {
            head.push_str(&format!(" {} LEAKED (runtime-confirmed)", s.leaked_count));
        }
        writeln!(out, "{head}  stack {}", s.stack_id)?;
        for l in &s.labels {
            let kv: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(out, "    labels: {}", kv.join(" "))?;
        }
        let n = if max_frames == 0 {
            s.frames.len()
        } else {
            max_frames.min(s.frames.len())
        };
        for f in &s.frames[..n] {
            writeln!(out, "    {}\n        {}:{}", f.function, f.file, f.line)?;
        }
        if n < s.frames.len() {
            writeln!(out, "    ... {} more frames", s.frames.len() - n)?;
        }
        if s.elided {
            writeln!(out, "    ...frames elided by the runtime...")?;
        }
        for c in &s.created_by_sites {
            let n = if s.created_by_sites.len() > 1 {
                format!(" ({} goroutines)", c.count)
            } else {
                String::new()
            };
            writeln!(
                out,
                "    created by {}{n}\n        {}:{}",
                c.frame.function, c.frame.file, c.frame.line
            )?;
        }
    }
    Ok(())
}

pub fn run(a: InspectArgs) -> Result<ExitCode> {
    let json = match a.format.as_str() {
        "json" => true,
        "text" => false,
        other => anyhow::bail!("unknown --format {other:?}: use text or json"),
    };
    if let Some(code) = crate::check::reached("inspect") {
        return Ok(code);
    }
    let mut files = a.files.clone();
    if files.is_empty() {
        files.push("-".into());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = false;
    let mut reports = Vec::new();
    for f in &files {
        let name = f.display().to_string();
        // The parsers read in large chunks themselves: no `BufReader` (it would only add a copy).
        let opts = ParseOptions::one_large_dump();
        let parsed = if name == "-" {
            parse_snapshot_with(std::io::stdin().lock(), "stdin", &opts)
        } else {
            match std::fs::File::open(f) {
                Ok(file) => parse_snapshot_with(file, &name, &opts),
                Err(e) => {
                    eprintln!("error: {name}: cannot open: {e}");
                    failed = true;
                    continue;
                }
            }
        };
        match parsed {
            Ok(snap) => {
                if let Some(c) = &snap.partial {
                    eprintln!("error: {name}: the dump is {c}; reporting the goroutines before it");
                    failed = true;
                }
                let r = report(if name == "-" { "stdin" } else { &name }, &snap);
                if json {
                    reports.push(r);
                } else {
                    print_text(&mut out, &r, a.frames)?;
                    writeln!(out)?;
                }
            }
            Err(e) => {
                eprintln!("error: {name}: {e}");
                failed = true;
            }
        }
    }
    if json {
        // One file: the report object; several: an array of them.
        if reports.len() == 1 {
            serde_json::to_writer_pretty(&mut out, &reports[0])?;
        } else {
            serde_json::to_writer_pretty(&mut out, &reports)?;
        }
        writeln!(out)?;
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

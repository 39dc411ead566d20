//! `leakhound inspect`: dumps or profiles read without a store, each summarised by
//! `leakhound_ingest::summary` and printed as text or JSON. A dump cut short (crash logs often
//! are) is summarised from its complete records and makes the command exit 1.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use leakhound_ingest::parse::{ParseOptions, parse_snapshot_with};
use leakhound_ingest::summary::{Report, report};

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Dumps or profiles; `-` (or nothing) reads stdin.
    pub files: Vec<PathBuf>,
    /// text or json.
    #[arg(long, env = "LEAKHOUND_INSPECT_FORMAT", value_enum, default_value_t = InspectFormat::Text)]
    pub format: InspectFormat,
    /// Frames printed per stack in text output (0 = all).
    #[arg(long, default_value_t = 12)]
    pub frames: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InspectFormat {
    Text,
    Json,
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
    let json = a.format == InspectFormat::Json;
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

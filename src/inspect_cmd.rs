//! `leakhound inspect`: dumps or profiles read without a store, each summarised by
//! `leakhound_ingest::summary` and printed as text or JSON. A dump cut short (crash logs often
//! are) is summarised from its complete records and makes the command exit 1.
//!
//! As panicparse does: directories are read for every file under them; `--match REGEX` keeps
//! the stacks with a frame (function or file:line) matching, `--filter REGEX` drops them; text
//! on a terminal is coloured (counts bold, leaked red, standard-library and runtime frames
//! dimmed) unless `NO_COLOR` is set or the output is not a terminal.

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
    /// text, or json: JSON Lines, one report object per input (one file: one JSON document).
    #[arg(long, env = "LEAKHOUND_INSPECT_FORMAT", value_enum, default_value_t = InspectFormat::Text)]
    pub format: InspectFormat,
    /// Frames printed per stack in text output (0 = all).
    #[arg(long, default_value_t = 12)]
    pub frames: usize,
    /// Keep only the stacks with a frame (`function file:line`, or `created by`) matching.
    #[arg(long, value_name = "REGEX", value_parser = regex_arg)]
    pub r#match: Option<regex::Regex>,
    /// Drop the stacks with a frame (`function file:line`, or `created by`) matching.
    #[arg(long, value_name = "REGEX", value_parser = regex_arg)]
    pub filter: Option<regex::Regex>,
}

fn regex_arg(s: &str) -> std::result::Result<regex::Regex, String> {
    regex::Regex::new(s).map_err(|e| e.to_string())
}

/// Whether a stack has a frame matching `re` (function and location, or a creation site).
fn stack_matches(s: &leakhound_ingest::summary::StackReport, re: &regex::Regex) -> bool {
    s.frames
        .iter()
        .chain(s.created_by_sites.iter().map(|c| &c.frame))
        .any(|f| re.is_match(&format!("{} {}:{}", f.function, f.file, f.line)))
}

/// The Go standard library and runtime: a package path whose first element has no dot
/// (`runtime`, `net/http`, `internal/poll`), other than `main`.
fn is_std(function: &str) -> bool {
    let slash = function.rfind('/').map(|i| i + 1).unwrap_or(0);
    let pkg_end = function[slash..]
        .find('.')
        .map(|i| slash + i)
        .unwrap_or(function.len());
    let pkg = &function[..pkg_end];
    let first = pkg.split('/').next().unwrap_or(pkg);
    !first.contains('.') && pkg != "main"
}

/// ANSI styles, or nothing.
#[derive(Clone, Copy)]
struct Style {
    on: bool,
}

impl Style {
    fn wrap(self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn dim(self, s: &str) -> String {
        self.wrap("2", s)
    }
    fn red(self, s: &str) -> String {
        self.wrap("1;31", s)
    }
}

/// Colour on a terminal, unless `NO_COLOR` (any non-empty value) says otherwise.
fn colour_wanted() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Files under the paths (directories walked, sorted; `-` kept).
fn expand(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" || !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut stack = vec![p.clone()];
        let mut found = Vec::new();
        let mut seen = BTreeSet::new();
        while let Some(d) = stack.pop() {
            // Each real directory once: a link loop ends.
            if let Ok(c) = std::fs::canonicalize(&d)
                && !seen.insert(c)
            {
                continue;
            }
            match std::fs::read_dir(&d) {
                Ok(rd) => {
                    for e in rd.flatten() {
                        let path = e.path();
                        if path.is_dir() {
                            stack.push(path);
                        } else if path.is_file() {
                            found.push(path);
                        }
                    }
                }
                Err(e) => errors.push(format!("{}: cannot read: {e}", d.display())),
            }
        }
        found.sort();
        out.extend(found);
    }
    (out, errors)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InspectFormat {
    Text,
    Json,
}

fn print_text(
    out: &mut dyn Write,
    r: &Report,
    max_frames: usize,
    st: Style,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {} goroutines ({} profile, {})",
        st.bold(&r.source),
        st.bold(&r.total.to_string()),
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
        let mut head = st.bold(&head);
        if s.leaked_count == s.count {
            head.push_str(&st.red(" LEAKED (runtime-confirmed)"));
        } else if s.leaked_count > 0 {
            head.push_str(&st.red(&format!(" {} LEAKED (runtime-confirmed)", s.leaked_count)));
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
            let frame = format!("    {}\n        {}:{}", f.function, f.file, f.line);
            if is_std(&f.function) {
                writeln!(out, "{}", st.dim(&frame))?;
            } else {
                writeln!(out, "{frame}")?;
            }
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
    let (mut files, unreadable) = expand(&a.files);
    if files.is_empty() && a.files.is_empty() {
        files.push("-".into());
    }
    let style = Style {
        on: !json && colour_wanted(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = !unreadable.is_empty();
    for e in &unreadable {
        eprintln!("error: {e}");
    }
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
                let mut r = report(if name == "-" { "stdin" } else { &name }, &snap);
                if let Some(re) = &a.r#match {
                    r.stacks.retain(|s| stack_matches(s, re));
                }
                if let Some(re) = &a.filter {
                    r.stacks.retain(|s| !stack_matches(s, re));
                }
                if json {
                    reports.push(r);
                } else {
                    print_text(&mut out, &r, a.frames, style)?;
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
        // JSON Lines: one report object per input, whatever their number, so a reader handles
        // one shape (`jq -s` gathers them; one file's output is one JSON document, as before).
        for r in &reports {
            serde_json::to_writer(&mut out, r)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

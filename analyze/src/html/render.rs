//! The report as one HTML page: inline CSS, inline SVG charts, the flamegraphs in `srcdoc`
//! frames (each is a whole SVG document with inferno's own script, which expects to be alone in
//! its document), pprof downloads as `data:` URLs. No script of our own and no network fetch.
//!
//! Every string from the store goes through [`esc`], which makes it inert in text and in quoted
//! attributes alike (`srcdoc` too: the frame's document is the unescaped attribute, in which
//! inferno has already escaped the names for XML).

use base64::Engine as _;

use super::chart::{Chart, VMark};
use super::{EventView, Report, flame};

/// HTML-escape for text and for attribute values in double or single quotes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn opt_f(v: Option<f64>, digits: usize, unit: &str) -> String {
    v.map(|v| format!("{v:.digits$}{unit}"))
        .unwrap_or_else(|| "—".into())
}

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:16px 24px;color:#1b1f24}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;width:100%;margin:6px 0 12px}th,td{border:1px solid #d0d7de;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}pre{background:#f6f8fa;padding:8px;overflow-x:auto}
.lvl{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;color:#fff}
.L1{background:#6e7781}.L2{background:#bf8700}.L3{background:#cf222e}
.meta{color:#57606a}.yes{color:#1a7f37;font-weight:600}.no{color:#57606a}
iframe.flame{width:100%;border:1px solid #d0d7de}
svg.chart{border:1px solid #d0d7de;background:#fff}
svg.chart .grid{stroke:#eaeef2}svg.chart .tick,svg.chart .legend,svg.chart .mark{font-size:11px;fill:#57606a}
svg.chart .series{fill:none;stroke-width:1.6}
svg.chart .baseline{stroke:#57606a;stroke-dasharray:6 4}
svg.chart .trend{stroke:#cf222e;stroke-width:2.5;stroke-dasharray:2 3}
svg.chart .vmark{stroke-width:1.2}svg.chart .vmark.onset{stroke:#cf222e}svg.chart .vmark.level{stroke:#bf8700;stroke-dasharray:3 3}
svg.chart .vmark.restart{stroke:#0969da;stroke-dasharray:1 3}
svg.chart text.onset{fill:#cf222e}svg.chart text.level{fill:#9a6700}svg.chart text.restart{fill:#0969da}
"#;

/// The chart of every pod's counts with each event's marks.
pub fn chart(r: &Report) -> Chart {
    let mut c = Chart {
        title: format!("goroutines per pod, {} to {}", time(r.from_s), time(r.to_s)),
        from_s: r.from_s,
        to_s: r.to_s,
        ..Default::default()
    };
    for s in &r.series {
        c.series.push((s.pod.clone(), s.points.clone()));
        for (t, why) in &s.restarts {
            c.vmarks.push(VMark {
                t: *t,
                label: format!("restart {} ({why})", s.pod),
                class: "restart",
            });
        }
    }
    let single_pod = r.series.len() == 1;
    for e in &r.events {
        c.vmarks.push(VMark {
            t: e.onset,
            label: format!("onset ({})", e.detector),
            class: "onset",
        });
        let mut prev = String::new();
        for d in &e.detections {
            if d.level != prev {
                c.vmarks.push(VMark {
                    t: d.detected_at,
                    label: d.level.clone(),
                    class: "level",
                });
                prev = d.level.clone();
            }
        }
        // The baseline and trend are the scope's: drawn where the scope is one series. The
        // trend: each evaluation's growth per second over the 10 minutes before it, ending at
        // the evaluation's count.
        if e.pod.is_some() || single_pod {
            if let Some(b) = e.baseline_goroutines {
                c.hmarks
                    .push((b, format!("baseline {b:.0} ({})", e.detector)));
            }
            for d in &e.detections {
                if !d.growth_per_s.is_finite() {
                    continue;
                }
                let end_v = d.goroutines as f64;
                let start_v = (end_v - d.growth_per_s * 600.0).max(0.0);
                c.segments.push((
                    (d.detected_at - 600, start_v),
                    (d.detected_at, end_v),
                    format!(
                        "{} at {}: {:.2} goroutines/s",
                        e.detector,
                        time(d.detected_at),
                        d.growth_per_s
                    ),
                ));
            }
        }
    }
    c
}

/// A flamegraph in a frame of its own: an HTML document holding the SVG (from its `<svg`, the
/// XML prologue dropped) at the frame's width; inferno's script sizes the frames to it.
fn frame(svg: &str, class: &str, title: &str) -> String {
    let h = flame::svg_height(svg).unwrap_or(400).clamp(100, 4000);
    let body = svg.find("<svg").map(|i| &svg[i..]).unwrap_or(svg);
    let doc = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>html,body{{margin:0}}\
         svg{{width:100%;display:block}}</style></head><body>{body}</body></html>"
    );
    format!(
        "<iframe class=\"flame {class}\" title=\"{}\" height=\"{}\" srcdoc=\"{}\"></iframe>",
        esc(title),
        h + 4,
        esc(&doc)
    )
}

/// The container's memory, limit and time to the limit (the Go agent's context), when known.
fn memory_row(e: &EventView) -> String {
    let Some(m) = e.memory_bytes else {
        return String::new();
    };
    let mib = |b: i64| format!("{:.0} MiB", b as f64 / 1_048_576.0);
    format!(
        "<tr><th>memory / limit</th><td class=\"num\" data-memory=\"{m}\">{} / {}</td>\
         <th>limit reached in</th><td data-time-to-limit=\"{}\">{}</td></tr>",
        mib(m),
        e.memory_limit_bytes.map_or("none".into(), mib),
        e.time_to_limit_s
            .map_or(String::new(), |t| format!("{t:.0}")),
        e.time_to_limit_s
            .map_or("— (no limit or no growth)".into(), |t| format!(
                "{:.0} min at the current slope",
                t / 60.0
            )),
    )
}

fn event_section(out: &mut String, e: &EventView) {
    let last = e.latest();
    let level = e.max_level();
    let scope = match (&e.workload, &e.pod) {
        (_, Some(p)) => format!("pod {}/{}", e.namespace, p),
        (Some(w), None) => format!("workload {}/{} (every pod)", e.namespace, w),
        (None, None) => format!("namespace {}", e.namespace),
    };
    out.push_str(&format!(
        "<section class=\"event\" id=\"event-{id}\" data-event-id=\"{id}\">\
         <h2>Event <code>{id}</code> <span class=\"lvl {lvl}\">{lvl}</span></h2>\
         <table class=\"facts\">\
         <tr><th>scope</th><td>{scope}</td><th>detector</th><td>{det}</td></tr>\
         <tr><th>onset</th><td>{onset}</td><th>last detection</th><td>{at} ({n} evaluations)</td></tr>\
         <tr><th>goroutines now</th><td class=\"num\" data-goroutines=\"{g}\">{g}</td><th>baseline</th><td class=\"num\">{base}</td></tr>\
         <tr><th>growth</th><td class=\"num\">{gr:.2}/s</td><th>residence P99 / alive &gt; 5 min</th><td>{res} / {alive}</td></tr>\
         {memory}<tr><th>why</th><td colspan=\"3\">{reason}</td></tr></table>",
        id = esc(&e.id),
        lvl = esc(&level),
        scope = esc(&scope),
        det = esc(&e.detector),
        onset = time(e.onset),
        at = time(last.detected_at),
        n = e.detections.len(),
        g = last.goroutines,
        base = opt_f(e.baseline_goroutines, 0, ""),
        gr = last.growth_per_s,
        res = opt_f(e.residence_p99_s, 0, " s"),
        alive = opt_f(e.alive_over_5m_share.map(|a| a * 100.0), 1, " %"),
        memory = memory_row(e),
        reason = esc(&e.reason),
    ));
    // Level changes.
    out.push_str("<h3>Level over time</h3><table class=\"levels\"><tr><th>detected at</th><th>level</th><th>goroutines</th><th>growth/s</th></tr>");
    let mut prev = String::new();
    for d in &e.detections {
        if d.level == prev {
            continue;
        }
        prev = d.level.clone();
        out.push_str(&format!(
            "<tr><td>{}</td><td><span class=\"lvl {l}\">{l}</span></td><td class=\"num\">{}</td><td class=\"num\">{:.2}</td></tr>",
            time(d.detected_at),
            d.goroutines,
            d.growth_per_s,
            l = esc(&d.level)
        ));
    }
    out.push_str("</table>");
    // Clusters.
    out.push_str("<h3>Root cause: the stacks that grew, by blocking site</h3>");
    if e.clusters.is_empty() {
        out.push_str("<p class=\"meta\">No cluster: no stack grew between the captures before the onset and at detection (counts only, or no goroutine profile in that span).</p>");
    } else {
        out.push_str("<table class=\"clusters\"><tr><th>pattern</th><th>blocking site</th><th>goroutines now</th><th>at onset</th><th>growth/s</th><th>residence P99</th><th>runtime-confirmed</th><th>pprof</th></tr>");
        for c in &e.clusters {
            let pprof = base64::engine::general_purpose::STANDARD.encode(&c.pprof);
            out.push_str(&format!(
                "<tr class=\"cluster\" data-cluster-id=\"{id}\">\
                 <td>{pat}</td>\
                 <td><code class=\"fn\">{f}</code><br><code class=\"loc\">{file}:{line}</code></td>\
                 <td class=\"num now\" data-goroutines=\"{now}\">{now}</td><td class=\"num\">{base}</td>\
                 <td class=\"num\">{gr:.2}</td><td class=\"num\">{res}</td>\
                 <td class=\"{cc}\">{conf}</td>\
                 <td><a download=\"cluster-{id}.pb.gz\" href=\"data:application/octet-stream;base64,{pprof}\">download</a></td></tr>",
                id = esc(&c.id),
                pat = esc(&c.pattern),
                f = esc(&c.top_function),
                file = esc(&c.top_file),
                line = c.top_line,
                now = c.goroutines_now,
                base = c.goroutines_at_onset,
                gr = c.growth_per_s,
                res = opt_f(c.residence_p99_s, 0, " s"),
                cc = if c.confirmed || c.confirmed_at.is_some() {
                    "yes"
                } else {
                    "no"
                },
                conf = match (c.confirmed, c.confirmed_at) {
                    (true, _) => "yes (goroutineleak profile)".to_string(),
                    (false, Some(t)) => format!(
                        "yes: goroutineleak profile at {} (after this detection)",
                        time(t)
                    ),
                    (false, None) => "no".to_string(),
                },
            ));
        }
        out.push_str("</table><p class=\"meta\">The pprof files open with <code>go tool pprof -traces FILE</code> or <code>go tool pprof -http=: FILE</code>.</p>");
        for c in &e.clusters {
            out.push_str(&format!(
                "<details class=\"stack\"{open}><summary>{pat} at <code>{site}</code>: representative stack (innermost first)</summary><pre>{frames}</pre></details>",
                open = if std::ptr::eq(c, &e.clusters[0]) { " open" } else { "" },
                pat = esc(&c.pattern),
                site = esc(&c.blocking_site),
                frames = esc(&c.representative.join("\n")),
            ));
        }
    }
    out.push_str("<h3>Flamegraph of the leaking stacks at detection</h3>");
    match &e.flamegraph {
        Some(svg) => out.push_str(&frame(svg, "leaking", "flamegraph of the leaking stacks")),
        None => out.push_str("<p class=\"meta\">No stacks to draw.</p>"),
    }
    out.push_str(&format!(
        "<h3>Differential flamegraph: capture before the onset ({}) against detection</h3>\
         <p class=\"meta\">Widths are goroutines at detection; red grew, blue shrank.</p>",
        time(e.baseline_at)
    ));
    match &e.differential {
        Some(svg) => out.push_str(&frame(svg, "differential", "differential flamegraph")),
        None => out.push_str("<p class=\"meta\">No captures to compare.</p>"),
    }
    out.push_str("<h3>Actions</h3>");
    if e.actions.is_empty() {
        out.push_str("<p class=\"meta\">None recorded: <code>leakhound actuate</code> (dry-run by default) or <code>serve</code> writes them to the <code>actions</code> table.</p>");
    } else {
        out.push_str("<table class=\"actions\"><tr><th>decided at</th><th>action</th><th>outcome</th><th>pod</th><th>level</th><th>reason</th></tr>");
        for a in &e.actions {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                time(a.decided_at),
                esc(&a.action),
                esc(&a.outcome),
                if a.dry_run { " (dry run)" } else { "" },
                esc(a.pod.as_deref().unwrap_or("—")),
                esc(a.level.as_deref().unwrap_or("—")),
                esc(&a.reason)
            ));
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

/// The whole page.
pub fn page(r: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    out.push_str(&format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; frame-src 'self' about: data:\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{t}</title><style>{CSS}</style></head><body>\
         <h1>leakhound: {t}</h1>\
         <p class=\"meta\">{scope} · {from} to {to} · store <code>{store}</code> · written {gen}</p>",
        t = esc(&r.title),
        scope = esc(&match &r.workload {
            Some(w) => format!("{}/{}", r.namespace, w),
            None => r.namespace.clone(),
        }),
        from = time(r.from_s),
        to = time(r.to_s),
        store = esc(&r.store),
        gen = time(r.generated_at),
    ));
    if r.events.is_empty() {
        out.push_str("<p><strong>No leak event in this scope and range.</strong></p>");
    } else {
        out.push_str("<table class=\"summary\"><tr><th>event</th><th>level</th><th>scope</th><th>onset</th><th>goroutines</th><th>leaking at</th></tr>");
        for e in &r.events {
            let top = e
                .clusters
                .first()
                .map(|c| format!("{} {}:{}", c.top_function, c.top_file, c.top_line))
                .unwrap_or_else(|| "—".into());
            out.push_str(&format!(
                "<tr><td><a href=\"#event-{id}\"><code>{id}</code></a></td><td><span class=\"lvl {l}\">{l}</span></td><td>{s}</td><td>{o}</td><td class=\"num\">{g}</td><td><code>{top}</code></td></tr>",
                id = esc(&e.id),
                l = esc(&e.max_level()),
                s = esc(&match (&e.workload, &e.pod) {
                    (_, Some(p)) => p.clone(),
                    (Some(w), None) => format!("{w} (workload)"),
                    (None, None) => e.namespace.clone(),
                }),
                o = time(e.onset),
                g = e.latest().goroutines,
                top = esc(&top),
            ));
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Goroutines per pod</h2>");
    if r.series.is_empty() {
        out.push_str("<p class=\"meta\">No counts in this range.</p>");
    } else {
        out.push_str(&chart(r).svg());
        out.push_str("<p class=\"meta\">Solid: each pod's goroutines. Red line: onset; amber dashes: level changes; blue dots: restarts; grey dashes: the baseline; red dots: the growth per second the detector measured at each evaluation, over the 10 minutes before it.</p>");
        out.push_str("<table class=\"pods\"><tr><th>pod</th><th>points</th><th>first</th><th>last</th><th>max</th><th>restarts</th></tr>");
        for s in &r.series {
            let first = s.points.first().map(|p| p.1).unwrap_or(0);
            let last = s.points.last().map(|p| p.1).unwrap_or(0);
            let max = s.points.iter().map(|p| p.1).max().unwrap_or(0);
            out.push_str(&format!(
                "<tr data-pod=\"{p}\"><td>{p}</td><td class=\"num\">{}</td><td class=\"num\">{first}</td><td class=\"num last\">{last}</td><td class=\"num\">{max}</td><td class=\"num\">{}</td></tr>",
                s.points.len(),
                s.restarts.len(),
                p = esc(&s.pod),
            ));
        }
        out.push_str("</table>");
    }
    for e in &r.events {
        event_section(&mut out, e);
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::{ClusterView, Detection, PodSeries};
    use super::*;

    fn hostile() -> Report {
        let evil = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>";
        Report {
            title: format!("leak event {evil}"),
            namespace: evil.into(),
            workload: Some(evil.into()),
            from_s: 1_000,
            to_s: 5_000,
            series: vec![PodSeries {
                pod: evil.into(),
                points: vec![(1_000, 10), (3_000, 50)],
                restarts: vec![(2_000, evil.into())],
            }],
            events: vec![EventView {
                id: evil.into(),
                namespace: evil.into(),
                pod: Some(evil.into()),
                detector: evil.into(),
                onset: 2_000,
                window_start: 2_000,
                window_end: 3_000,
                reason: evil.into(),
                detections: vec![Detection {
                    detected_at: 3_000,
                    level: evil.into(),
                    goroutines: 50,
                    growth_per_s: 0.04,
                }],
                clusters: vec![ClusterView {
                    id: evil.into(),
                    pattern: evil.into(),
                    blocking_site: evil.into(),
                    top_function: evil.into(),
                    top_file: evil.into(),
                    representative: vec![evil.into()],
                    goroutines_now: 40,
                    ..Default::default()
                }],
                flamegraph: flame::flamegraph(
                    &[(
                        crate::rootcause::StackInfo {
                            frames: vec![leakhound_schemas::model::Frame {
                                function: evil.into(),
                                file: evil.into(),
                                line: 1,
                            }],
                            created_by: None,
                        },
                        40,
                    )],
                    evil,
                ),
                ..Default::default()
            }],
            store: evil.into(),
            generated_at: 0,
        }
    }

    #[test]
    fn nothing_from_the_store_becomes_markup() {
        let html = page(&hostile());
        // The only script elements are inferno's, inside the escaped srcdoc.
        assert!(!html.contains("<script"), "a <script> escaped the escaping");
        assert!(!html.contains("<img"), "an <img> escaped the escaping");
        // No tag of the page (the frame's document aside, checked below) carries the handler.
        let mut outside = String::new();
        for (i, part) in html.split("srcdoc=\"").enumerate() {
            outside.push_str(if i == 0 {
                part
            } else {
                part.split_once('"').map(|(_, rest)| rest).unwrap_or("")
            });
        }
        for tag in outside.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap_or("");
            // Outside the quoted values (a `"` in a value is `&quot;`): names only.
            let names: String = tag.split('"').step_by(2).collect();
            assert!(
                !names.contains("onerror"),
                "an attribute escaped the escaping: <{tag}>"
            );
        }
        // The srcdoc frame's document, once the attribute is unescaped, has inferno's escaping.
        let srcdoc = html
            .split("srcdoc=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let inner = srcdoc
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        assert!(inner.contains("<svg"), "the frame holds the flamegraph");
        assert!(
            !inner.contains("<script>alert"),
            "the function name is markup in the frame"
        );
        assert!(
            !inner.contains("<img"),
            "the function name is markup in the frame"
        );
    }
}

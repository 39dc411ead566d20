//! The count chart: an inline SVG of goroutine series over time with marks (vertical lines for
//! the onset, level changes and restarts; horizontal ones for a baseline; a segment for the
//! trend a detector fitted). No script; every label is escaped.

use super::render::esc;

/// A vertical mark at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct VMark {
    pub t: i64,
    pub label: String,
    /// CSS class: `onset`, `level`, `restart`.
    pub class: &'static str,
}

/// ((t0, v0), (t1, v1), label): a trend a detector measured.
pub type Segment = ((i64, f64), (i64, f64), String);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chart {
    pub title: String,
    pub from_s: i64,
    pub to_s: i64,
    /// (name, points (t, value)).
    pub series: Vec<(String, Vec<(i64, i64)>)>,
    pub vmarks: Vec<VMark>,
    /// (value, label): a baseline.
    pub hmarks: Vec<(f64, String)>,
    /// A measured trend from one point to another.
    pub segments: Vec<Segment>,
}

pub const COLORS: &[&str] = &[
    "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];

const W: f64 = 960.0;
const H: f64 = 300.0;
const ML: f64 = 60.0;
const MR: f64 = 20.0;
const MT: f64 = 24.0;
const MB: f64 = 36.0;

fn hhmm(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%H:%M").to_string())
        .unwrap_or_default()
}

/// A "nice" step for about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-9);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

impl Chart {
    pub fn svg(&self) -> String {
        let (t0, t1) = (self.from_s as f64, (self.to_s.max(self.from_s + 1)) as f64);
        let mut vmax = 1.0f64;
        for (_, pts) in &self.series {
            for (_, v) in pts {
                vmax = vmax.max(*v as f64);
            }
        }
        for (v, _) in &self.hmarks {
            vmax = vmax.max(*v);
        }
        for (a, b, _) in &self.segments {
            vmax = vmax.max(a.1).max(b.1);
        }
        let ystep = nice_step(vmax * 1.05, 5.0);
        let ymax = (vmax * 1.05 / ystep).ceil() * ystep;
        let x = |t: f64| ML + (t - t0) / (t1 - t0) * (W - ML - MR);
        let y = |v: f64| MT + (1.0 - v / ymax) * (H - MT - MB);
        let inside = |t: i64| (t as f64) >= t0 && (t as f64) <= t1;
        let mut s = String::new();
        s += &format!(
            "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" \
             width=\"100%\" role=\"img\" aria-label=\"{}\">",
            esc(&self.title)
        );
        s += &format!("<title>{}</title>", esc(&self.title));
        // Axes and grid.
        let mut v = 0.0;
        while v <= ymax + 1e-9 {
            s += &format!(
                "<line class=\"grid\" x1=\"{ML}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
                 <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                W - MR,
                y(v),
                y(v),
                ML - 6.0,
                y(v) + 4.0,
                v as i64
            );
            v += ystep;
        }
        let tstep = nice_step((t1 - t0) / 60.0, 8.0).max(1.0) * 60.0;
        let mut t = (t0 / tstep).ceil() * tstep;
        while t <= t1 {
            s += &format!(
                "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x(t),
                H - MB + 16.0,
                hhmm(t as i64)
            );
            t += tstep;
        }
        s += &format!(
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">UTC</text>",
            W - MR,
            H - 4.0
        );
        // Baselines and trends under the series.
        for (v, label) in &self.hmarks {
            s += &format!(
                "<line class=\"baseline\" x1=\"{ML}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"><title>{}</title></line>\
                 <text class=\"mark\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                W - MR,
                y(*v),
                y(*v),
                esc(label),
                ML + 4.0,
                y(*v) - 4.0,
                esc(label)
            );
        }
        for (i, (name, pts)) in self.series.iter().enumerate() {
            let pts: Vec<String> = pts
                .iter()
                .filter(|(t, _)| inside(*t))
                .map(|(t, v)| format!("{:.1},{:.1}", x(*t as f64), y(*v as f64)))
                .collect();
            s += &format!(
                "<polyline class=\"series\" data-series=\"{}\" stroke=\"{}\" points=\"{}\"><title>{}</title></polyline>",
                esc(name),
                COLORS[i % COLORS.len()],
                pts.join(" "),
                esc(name)
            );
        }
        for ((ta, va), (tb, vb), label) in &self.segments {
            s += &format!(
                "<line class=\"trend\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"><title>{}</title></line>",
                x(*ta as f64),
                y(*va),
                x(*tb as f64),
                y(*vb),
                esc(label)
            );
        }
        for (k, m) in self.vmarks.iter().filter(|m| inside(m.t)).enumerate() {
            let xm = x(m.t as f64);
            s += &format!(
                "<line class=\"vmark {c}\" x1=\"{xm:.1}\" x2=\"{xm:.1}\" y1=\"{MT}\" y2=\"{:.1}\"><title>{}</title></line>\
                 <text class=\"mark {c}\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                H - MB,
                esc(&m.label),
                xm + 3.0,
                MT + 10.0 + 11.0 * (k % 4) as f64,
                esc(&m.label),
                c = m.class,
            );
        }
        // Legend.
        let mut lx = ML;
        for (i, (name, _)) in self.series.iter().enumerate() {
            s += &format!(
                "<rect x=\"{lx:.1}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{}\"/>\
                 <text class=\"legend\" x=\"{:.1}\" y=\"13\">{}</text>",
                COLORS[i % COLORS.len()],
                lx + 14.0,
                esc(name)
            );
            lx += 24.0 + 7.0 * name.chars().count().min(60) as f64;
        }
        s += "</svg>";
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_marks_outside_the_range_are_left_out() {
        let c = Chart {
            title: "<b>t</b>".into(),
            from_s: 0,
            to_s: 600,
            series: vec![("pod<script>".into(), vec![(0, 1), (300, 5), (900, 9)])],
            vmarks: vec![
                VMark {
                    t: 100,
                    label: "onset \"x\"".into(),
                    class: "onset",
                },
                VMark {
                    t: 10_000,
                    label: "late".into(),
                    class: "level",
                },
            ],
            hmarks: vec![(3.0, "baseline".into())],
            segments: vec![((0, 1.0), (600, 6.0), "trend".into())],
        };
        let s = c.svg();
        assert!(!s.contains("<script>") && !s.contains("<b>"));
        assert!(s.contains("pod&lt;script&gt;"));
        assert!(s.contains("onset &quot;x&quot;"));
        assert!(!s.contains("late"));
        // Two points inside the range.
        let pts = s
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(pts.split(' ').count(), 2, "{pts}");
    }
}

//! The convergence plot, written as SVG text (no plotting library).

use std::fmt::Write;

use crate::{Outcome, Time};

const W: f64 = 960.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 80.0;

/// `s` escaped for SVG text and attributes.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn color(label: &str) -> &'static str {
    if label.starts_with("partition") {
        "#d62728"
    } else if label.starts_with("move") {
        "#1f77b4"
    } else if label.ends_with(" down") {
        "#7f7f7f"
    } else {
        "#ff7f0e"
    }
}

/// A tick step giving about `n` ticks over `span`.
fn step(span: f64, n: f64) -> f64 {
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10.0 * mag
}

pub(crate) fn svg(o: &Outcome) -> String {
    let r = &o.report;
    let end = r.end.max(1) as f64;
    let min = o.series.iter().map(|s| s.fraction).fold(1.0f64, f64::min);
    let lo = ((min * 10.0).floor() / 10.0).clamp(0.0, 0.9);
    let fr = Frame {
        end,
        lo,
        pw: W - LEFT - RIGHT,
        ph: H - TOP - BOTTOM,
    };
    let mut s = String::new();
    header(&mut s, o);
    fault_windows(&mut s, o, &fr);
    axes(&mut s, &fr);
    healing(&mut s, o, &fr);
    series(&mut s, o, &fr);
    s.push_str("</svg>\n");
    s
}

/// The plot area: virtual time up to `end`, fractions from `lo`, the plot width and height.
struct Frame {
    end: f64,
    lo: f64,
    pw: f64,
    ph: f64,
}

impl Frame {
    /// The x coordinate of time `t`.
    fn x(&self, t: Time) -> f64 {
        LEFT + self.pw * (t as f64 / self.end)
    }

    /// The y coordinate of fraction `f`.
    fn y(&self, f: f64) -> f64 {
        TOP + self.ph * (1.0 - (f - self.lo) / (1.0 - self.lo))
    }
}

/// Writes the SVG header, background, title and summary line.
fn header(s: &mut String, o: &Outcome) {
    let r = &o.report;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">cophr simulation: {} (seed {}) — convergence over virtual time</text>"#,
        r.scenario, r.seed
    );
    let verdict = if r.ok() {
        "all invariants hold"
    } else {
        "INVARIANTS VIOLATED"
    };
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="40" fill="{}">{} entries, {} replicas, {} messages ({} lost); {}</text>"#,
        if r.ok() { "#2ca02c" } else { "#d62728" },
        r.entries,
        r.replicas,
        r.messages,
        r.lost,
        verdict
    );
}

/// Writes the shaded fault windows, labelled when there are few.
fn fault_windows(s: &mut String, o: &Outcome, fr: &Frame) {
    let ph = fr.ph;
    let x = |t: Time| fr.x(t);
    let label_them = o.windows.len() <= 8;
    for (i, w) in o.windows.iter().enumerate() {
        let (x0, x1) = (x(w.from), x(w.to.max(w.from + 1)));
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{ph}" fill="{}" fill-opacity="0.12"><title>{} {}–{}</title></rect>"#,
            (x1 - x0).max(1.0),
            color(&w.label),
            esc(&w.label),
            crate::report::fmt_time(w.from),
            crate::report::fmt_time(w.to)
        );
        if label_them {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" fill="{}" font-size="11">{}</text>"#,
                x0 + 3.0,
                TOP + ph - 22.0 - 13.0 * (i % 4) as f64,
                color(&w.label),
                esc(&w.label)
            );
        }
    }
    if !label_them && !o.windows.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="{:.1}" fill="#7f7f7f" font-size="11">shaded: {} fault windows (nodes down, loss, partitions, moves)</text>"##,
            H - 12.0,
            o.windows.len()
        );
    }
}

/// Writes the axes, grid and axis labels.
fn axes(s: &mut String, fr: &Frame) {
    let (pw, ph) = (fr.pw, fr.ph);
    let x = |t: Time| fr.x(t);
    let y = |f: f64| fr.y(f);
    let end = fr.end;
    let lo = fr.lo;
    let minutes = end / 60_000.0;
    let xs = step(minutes, 10.0);
    let mut m = 0.0;
    while m <= minutes + 1e-9 {
        let px = x((m * 60_000.0) as Time);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#e0e0e0"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{m}</text>"##,
            TOP + ph,
            TOP + ph + 16.0
        );
        m += xs;
    }
    let ys = step(1.0 - lo, 5.0);
    let mut f = lo;
    while f <= 1.0 + 1e-9 {
        let py = y(f);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{:.0} %</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            py + 4.0,
            f * 100.0
        );
        f += ys;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">virtual time (minutes)</text>"#,
        LEFT + pw / 2.0,
        TOP + ph + 36.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">(replica, entry it may see) pairs held</text>"#,
        TOP + ph / 2.0
    );
}

/// Writes the line at the last write or fault.
fn healing(s: &mut String, o: &Outcome, fr: &Frame) {
    let ph = fr.ph;
    let x = |t: Time| fr.x(t);
    let r = &o.report;
    let hx = x(r.last_disturbance());
    let _ = writeln!(
        s,
        r##"<line x1="{hx:.1}" y1="{TOP}" x2="{hx:.1}" y2="{:.1}" stroke="#2ca02c" stroke-dasharray="5 4"/><text x="{:.1}" y="{:.1}" fill="#2ca02c" font-size="11">last write or fault</text>"##,
        TOP + ph,
        hx + 3.0,
        TOP + ph - 6.0
    );
}

/// Writes the convergence series as a step line, and the point it reached 100 %.
fn series(s: &mut String, o: &Outcome, fr: &Frame) {
    let x = |t: Time| fr.x(t);
    let y = |f: f64| fr.y(f);
    let lo = fr.lo;
    let r = &o.report;
    let mut pts = String::new();
    let mut prev: Option<f64> = None;
    for p in &o.series {
        let (px, py) = (x(p.at), y(p.fraction.max(lo)));
        if let Some(q) = prev {
            let _ = write!(pts, "{px:.1},{q:.1} ");
        }
        let _ = write!(pts, "{px:.1},{py:.1} ");
        prev = Some(py);
    }
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#1f3a93" stroke-width="1.8"/>"##,
        pts.trim_end()
    );
    if let Some(t) = r.converged {
        let cx = x(t);
        let _ = writeln!(
            s,
            r##"<circle cx="{cx:.1}" cy="{:.1}" r="4" fill="#2ca02c"><title>100 % from {}</title></circle>"##,
            y(1.0),
            crate::report::fmt_time(t)
        );
    }
}

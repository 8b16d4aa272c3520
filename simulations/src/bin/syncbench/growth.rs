//! How costs grow with a record's size (`syncbench --growth 1000,10000,…`): for each size,
//! the generated record of that many ~1 KB entries (with its snapshot, as a node leaves it
//! at shutdown) is copied twice, and
//!
//! - a fresh node process over the first copy loads it (from its snapshot and the log
//!   beyond): the load's time, and the resident memory the process gained by it;
//! - state at a time: the record as it stood at its middle entry's time, folded for the
//!   patient (the median of five, in that process);
//! - catch-up: 10 entries written on that node, pulled by a node over the second copy
//!   (which loaded it first, as a running node has it): round trips, and bytes beyond the
//!   entries themselves;
//! - the first write after a restart: another fresh process over the first copy writes one
//!   entry before anything else (it loads the record to check the write).
//!
//! The figures go into the JSON report and an SVG plot of six panels, each against record
//! size on log scales.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use cophr_simulations::svg_escape as esc;

use super::{cached, load_average, machine, median, num, traffic, Machine, Proc, T0};

/// New entries in the catch-up measured at each size.
const CATCH_UP: usize = 10;

/// One size's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Point {
    entries: usize,
    load_ms: f64,
    resident_before_kib: u64,
    resident_after_kib: u64,
    /// Resident memory the load added, bytes per entry.
    bytes_per_entry: f64,
    first_write_ms: f64,
    /// Whether the first write loaded only the record's admission part (false in reports
    /// from before there were admission parts, and for records too small to have one).
    #[serde(default)]
    first_write_part: bool,
    state_at_ms: f64,
    /// The same, with every shown item's body read (0 in reports from before bodies were
    /// read when first asked, when the fold read them all).
    #[serde(default)]
    state_at_read_ms: f64,
    state_at_items: usize,
    catch_up_round_trips: u64,
    catch_up_overhead_bytes: u64,
    catch_up_entry_bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct GrowthReport {
    machine: Machine,
    catch_up_entries: usize,
    points: Vec<Point>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Measures every size, prints a table, writes the report and the plot.
pub(super) fn run(sizes: &[usize], work: &Path, out: &Path, plot: &Path) -> Result<()> {
    let load_start = load_average();
    let runs = work.join("runs");
    std::fs::create_dir_all(&runs)?;
    let mut points = Vec::new();
    for &n in sizes {
        if n == 0 {
            bail!("--growth sizes must be at least 1");
        }
        eprintln!("growth: a {n}-entry record");
        points.push(point(work, &runs, n)?);
    }
    let report = GrowthReport {
        machine: machine(load_start),
        catch_up_entries: CATCH_UP,
        points,
    };
    print(&report);
    for f in [out, plot] {
        if let Some(parent) = f.parent() {
            std::fs::create_dir_all(parent)?;
        }
    }
    std::fs::write(out, serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(plot, svg(&report))?;
    println!(
        "\nreport written to {}, plot to {}",
        out.display(),
        plot.display()
    );
    Ok(())
}

fn point(work: &Path, runs: &Path, n: usize) -> Result<Point> {
    let (a, b) = (runs.join("growth-server"), runs.join("growth-replica"));
    cached(work, "record", n, &a)?;
    cached(work, "record", n, &b)?;
    // The first write after a restart, in a fresh process, before anything else.
    let (first_write_ms, first_write_part) = {
        let mut p = Proc::spawn("growth-first-write", &a, "patient", 11, runs)?;
        let w = p.call(json!({"op": "write", "n": 1}))?;
        (num(&w, "ms")?, num(&w, "admission_loads")? > 0.0)
    };
    // A fresh process loads it: time and memory.
    let mut server = Proc::spawn("growth-server", &a, "patient", 13, runs)?;
    let before = server.memory()?;
    let load = server.call(json!({"op": "load"}))?;
    let after = server.memory()?;
    let loaded = num(&load, "entries")? as usize;
    // Genesis, the grant, the entries, and the first write's entry.
    if loaded != n + 3 {
        bail!("the {n}-entry record loaded {loaded} entries");
    }
    let at = T0 + 2 + n as u64 / 2;
    let state = server.call(json!({"op": "state_at", "at": at, "reps": 5}))?;
    let times: Vec<f64> = state["ms"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    let state_at_ms = median(&times);
    let read_times: Vec<f64> = state["read_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    let state_at_read_ms = median(&read_times);
    let state_at_items = num(&state, "items")? as usize;
    // Catch-up: the replica has it loaded, the server writes, the replica pulls.
    let mut replica = Proc::spawn("growth-replica", &b, "reader", 14, runs)?;
    replica.call(json!({"op": "load"}))?;
    // The replica first pulls the first write's entry (not measured).
    replica.call(json!({"op": "sync", "peer": server.addr}))?;
    server.call(json!({"op": "write", "n": CATCH_UP}))?;
    let synced = replica.call(json!({"op": "sync", "peer": server.addr}))?;
    let pulled = num(&synced, "pulled")? as usize;
    if pulled != CATCH_UP {
        bail!("the catch-up at {n} entries pulled {pulled}, not {CATCH_UP}");
    }
    let t = traffic(&synced)?;
    drop(replica);
    drop(server);
    std::fs::remove_dir_all(&a)?;
    std::fs::remove_dir_all(&b)?;
    let added = after.resident_kib.saturating_sub(before.resident_kib);
    Ok(Point {
        entries: n,
        load_ms: num(&load, "ms")?,
        resident_before_kib: before.resident_kib,
        resident_after_kib: after.resident_kib,
        bytes_per_entry: added as f64 * 1024.0 / n as f64,
        first_write_ms,
        first_write_part,
        state_at_ms,
        state_at_read_ms,
        state_at_items,
        catch_up_round_trips: t.requests,
        catch_up_overhead_bytes: t.overhead(),
        catch_up_entry_bytes: t.entry_bytes,
    })
}

fn print(r: &GrowthReport) {
    let m = &r.machine;
    println!(
        "how costs grow with record size: {} × {}; load average {} at start, {} at end{}",
        m.cpus,
        m.cpu_model,
        m.load_average_at_start,
        m.load_average_at_end,
        if m.debug_build {
            " (DEBUG BUILD: figures not meaningful)"
        } else {
            ""
        }
    );
    println!(
        "\n| entries | load (fresh process) | resident added | per entry | first write after restart | state at a time | the same, every body read | catch-up of {} (round trips, bytes beyond entries) |",
        r.catch_up_entries
    );
    println!("|---|---|---|---|---|---|---|---|");
    for p in &r.points {
        println!(
            "| {} | {:.1} ms | {:.1} MiB | {:.0} B | {:.1} ms{} | {:.1} ms ({} items) | {:.1} ms | {}, {} B |",
            p.entries,
            p.load_ms,
            mib(p.resident_after_kib.saturating_sub(p.resident_before_kib)),
            p.bytes_per_entry,
            p.first_write_ms,
            if p.first_write_part { " (admission part)" } else { " (whole record)" },
            p.state_at_ms,
            p.state_at_items,
            p.state_at_read_ms,
            p.catch_up_round_trips,
            p.catch_up_overhead_bytes,
        );
    }
}

// ----------------------------------------------------------------------------------------
// The plot: six log-log panels, written as SVG text.

const PANEL_W: f64 = 320.0;
const PANEL_H: f64 = 220.0;
const PAD_L: f64 = 62.0;
const PAD_R: f64 = 14.0;
const PAD_T: f64 = 34.0;
const PAD_B: f64 = 40.0;
const COLS: usize = 3;

struct Panel<'a> {
    title: &'a str,
    unit: &'a str,
    /// A target line, if the issue sets one for this measure.
    target: Option<(f64, &'a str)>,
    values: Vec<f64>,
}

fn svg(r: &GrowthReport) -> String {
    let xs: Vec<f64> = r.points.iter().map(|p| p.entries as f64).collect();
    let panels = [
        Panel {
            title: "load in a fresh process",
            unit: "ms",
            target: Some((1000.0, "1 s at 1M")),
            values: r.points.iter().map(|p| p.load_ms).collect(),
        },
        Panel {
            title: "resident memory added by the load",
            unit: "MiB",
            target: Some((300.0 / 1.048_576, "300 MB at 1M")),
            values: r
                .points
                .iter()
                .map(|p| mib(p.resident_after_kib.saturating_sub(p.resident_before_kib)))
                .collect(),
        },
        Panel {
            title: "first write after a restart",
            unit: "ms",
            target: None,
            values: r.points.iter().map(|p| p.first_write_ms).collect(),
        },
        Panel {
            title: "state at a time (middle)",
            unit: "ms",
            target: Some((100.0, "100 ms at 100k")),
            values: r.points.iter().map(|p| p.state_at_ms).collect(),
        },
        Panel {
            title: "catch-up of 10: round trips",
            unit: "",
            target: Some((3.0, "3")),
            values: r
                .points
                .iter()
                .map(|p| p.catch_up_round_trips as f64)
                .collect(),
        },
        Panel {
            title: "catch-up of 10: bytes beyond entries",
            unit: "B",
            target: Some((4096.0, "4 KB")),
            values: r
                .points
                .iter()
                .map(|p| p.catch_up_overhead_bytes as f64)
                .collect(),
        },
    ];
    let rows = panels.len().div_ceil(COLS);
    let (w, h) = (PANEL_W * COLS as f64, PANEL_H * rows as f64 + 30.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14">How costs grow with record size (entries of ~1 KB; log scales; {} × {})</text>"##,
        r.machine.cpus,
        esc(&r.machine.cpu_model)
    );
    for (i, p) in panels.iter().enumerate() {
        let (ox, oy) = (
            (i % COLS) as f64 * PANEL_W,
            30.0 + (i / COLS) as f64 * PANEL_H,
        );
        panel(&mut s, ox, oy, &xs, p);
    }
    s.push_str("</svg>\n");
    s
}

/// Decades covering `lo..=hi` (positive), as exponents.
fn decades(lo: f64, hi: f64) -> (i32, i32) {
    let a = lo.max(1e-3).log10().floor() as i32;
    let b = hi.max(1e-3).log10().ceil() as i32;
    (a, b.max(a + 1))
}

fn label(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v if v >= 1.0 => format!("{v}"),
        v => format!("{v:.2}"),
    }
}

fn panel(s: &mut String, ox: f64, oy: f64, xs: &[f64], p: &Panel<'_>) {
    let (pw, ph) = (PANEL_W - PAD_L - PAD_R, PANEL_H - PAD_T - PAD_B);
    let (x0, x1) = decades(
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(0.0, f64::max),
    );
    let mut ys: Vec<f64> = p.values.iter().copied().filter(|v| *v > 0.0).collect();
    if let Some((t, _)) = p.target {
        ys.push(t);
    }
    let (y0, y1) = decades(
        ys.iter().copied().fold(f64::INFINITY, f64::min),
        ys.iter().copied().fold(0.0, f64::max),
    );
    let px = |x: f64| ox + PAD_L + (x.log10() - f64::from(x0)) / f64::from(x1 - x0) * pw;
    let py =
        |y: f64| oy + PAD_T + ph - (y.max(1e-3).log10() - f64::from(y0)) / f64::from(y1 - y0) * ph;
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="12">{}{}</text><rect x="{:.1}" y="{:.1}" width="{pw:.1}" height="{ph:.1}" fill="none" stroke="#999"/>"##,
        ox + PAD_L,
        oy + PAD_T - 10.0,
        esc(p.title),
        if p.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", p.unit)
        },
        ox + PAD_L,
        oy + PAD_T,
    );
    for e in x0..=x1 {
        let v = 10f64.powi(e);
        let x = px(v);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            oy + PAD_T,
            oy + PAD_T + ph,
            oy + PAD_T + ph + 14.0,
            label(v)
        );
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">entries in the record</text>"##,
        ox + PAD_L + pw / 2.0,
        oy + PAD_T + ph + 30.0
    );
    for e in y0..=y1 {
        let v = 10f64.powi(e);
        let y = py(v);
        let _ = write!(
            s,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            ox + PAD_L,
            ox + PAD_L + pw,
            ox + PAD_L - 4.0,
            y + 4.0,
            label(v)
        );
    }
    if let Some((t, name)) = p.target {
        let y = py(t);
        let _ = write!(
            s,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#d62728" stroke-dasharray="5,3"/><text x="{:.1}" y="{:.1}" fill="#d62728" text-anchor="end">target {}</text>"##,
            ox + PAD_L,
            ox + PAD_L + pw,
            ox + PAD_L + pw - 2.0,
            y - 3.0,
            esc(name)
        );
    }
    let pts: Vec<(f64, f64)> = xs
        .iter()
        .zip(&p.values)
        .filter(|(_, v)| **v > 0.0)
        .map(|(x, v)| (px(*x), py(*v)))
        .collect();
    let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = write!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#1f77b4" stroke-width="2"/>"##,
        path.join(" ")
    );
    let last = pts.len().saturating_sub(1);
    for (i, ((x, y), v)) in pts
        .iter()
        .zip(p.values.iter().filter(|v| **v > 0.0))
        .enumerate()
    {
        // The last point's label goes to its left, inside the panel.
        let (dx, anchor) = if i == last && i > 0 {
            (-5.0, "end")
        } else {
            (4.0, "start")
        };
        let _ = write!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="#1f77b4"><title>{v:.1}</title></circle><text x="{:.1}" y="{:.1}" font-size="9" fill="#1f77b4" text-anchor="{anchor}">{}</text>"##,
            x + dx,
            y - 4.0,
            if *v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_has_a_panel_and_a_point_per_figure() {
        let points = [1_000usize, 10_000, 100_000]
            .iter()
            .map(|&n| Point {
                entries: n,
                load_ms: n as f64 / 1000.0,
                resident_before_kib: 10_000,
                resident_after_kib: 10_000 + n as u64 / 4,
                bytes_per_entry: 256.0,
                first_write_ms: 2.0,
                first_write_part: true,
                state_at_ms: n as f64 / 2000.0,
                state_at_read_ms: n as f64 / 500.0,
                state_at_items: n / 2,
                catch_up_round_trips: 2,
                catch_up_overhead_bytes: 1_000,
                catch_up_entry_bytes: 10_000,
            })
            .collect();
        let r = GrowthReport {
            machine: machine(String::new()),
            catch_up_entries: CATCH_UP,
            points,
        };
        let svg = svg(&r);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 6);
        assert_eq!(svg.matches("<circle").count(), 18);
        assert!(svg.contains("target 100 ms at 100k"));
    }
}

//! The results as a terminal table, a JSON file and a README section.

use std::path::Path;

use serde::Serialize;

use super::machine::Machine;
use super::{
    Cell, OtherRatio, Poll, Role, MSGRD_V2, ONE_WAY, ONE_WAY_V2, ZMQ_ECHO, ZMQ_IN_FLIGHT, ZMQ_SIZE,
    ZMQ_STREAM, ZMQ_STREAM_SIZES,
};

pub const README_START: &str = "<!-- bench:start -->";
pub const README_END: &str = "<!-- bench:end -->";

/// Facts about the whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Meta {
    pub date: String,
    pub git_rev: String,
    pub machine: Machine,
    pub command: String,
    pub rdma_device: String,
}

pub fn size_label(size: u64) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{}MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{}KiB", s >> 10),
        s => format!("{s}B"),
    }
}

/// The name of the baseline row a cell is compared with, as `implementation size`.
fn baseline_for(cell: &Cell) -> Vec<(&'static str, bool, bool)> {
    if cell.is_memory() {
        // Judged by server memory; tcp-baseline has no shape like theirs.
        return vec![];
    }
    // (implementation, compare p50, compare msgs/s)
    match (cell.spec.transport.as_str(), cell.spec.concurrency) {
        ("tcp", _) if matches!(cell.spec.implementation.as_str(), ONE_WAY | ONE_WAY_V2) => {
            vec![("tcp-baseline stream", false, true)]
        }
        ("tcp", _) => vec![("tcp-baseline echo", true, true)],
        ("rdma", 1) => vec![("ib_send_lat", true, true)],
        ("rdma", _) => vec![("ib_send_bw", false, true)],
        _ => vec![],
    }
}

/// Sets each cell's baseline and its ratios (cell / baseline; for p50 lower is better, for
/// msgs/s higher is better). A baseline must be in the cell's completion mode (RDMA latency).
pub fn link_baselines(cells: &mut [Cell]) {
    let snapshot: Vec<Cell> = cells.to_vec();
    for cell in cells.iter_mut().filter(|c| c.spec.role == Role::Cell) {
        for (imp, p50, rate) in baseline_for(cell) {
            // Echo baselines have the cell's shape; streams its connections (a stream's
            // in-flight depth is its own); perftest runs one connection.
            let same_in_flight = imp == "tcp-baseline echo";
            let same_conns = imp.starts_with("tcp-baseline");
            let Some(base) = snapshot.iter().find(|b| {
                b.spec.role == Role::Baseline
                    && b.spec.implementation == imp
                    && b.spec.transport == cell.spec.transport
                    && b.spec.size == cell.spec.size
                    && b.spec.poll == cell.spec.poll
                    && (!same_in_flight || b.spec.concurrency == cell.spec.concurrency)
                    && (!same_conns || b.spec.connections == cell.spec.connections)
            }) else {
                continue;
            };
            cell.baseline = Some(base.label());
            if !(cell.ok() && base.ok()) {
                continue;
            }
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            if p50 {
                cell.ratio_p50 = ratio(cell.p50_us, base.p50_us);
            }
            if rate {
                cell.ratio_msgs_per_s = ratio(cell.msgs_per_s, base.msgs_per_s);
            }
        }
        link_zmq(cell, &snapshot);
    }
}

/// The issue's ZeroMQ targets, against libzmq PUSH/PULL on the same loopback (one
/// connection): msgr's 64 B echo rate with 16 in flight against ZeroMQ's echo with 16 in
/// flight and its stream; msgr's one-way rate against ZeroMQ's stream of the same size.
fn link_zmq(cell: &mut Cell, rows: &[Cell]) {
    let s = &cell.spec;
    if !(s.transport == "tcp" && s.connections == 1 && cell.ok()) {
        return;
    }
    let against: &[&str] = match s.implementation.as_str() {
        "msgrd" if s.size == ZMQ_SIZE && s.concurrency == ZMQ_IN_FLIGHT => &[ZMQ_ECHO, ZMQ_STREAM],
        ONE_WAY if ZMQ_STREAM_SIZES.contains(&s.size) => &[ZMQ_STREAM],
        _ => return,
    };
    let size = s.size;
    let Some(rate) = cell.msgs_per_s else { return };
    for &imp in against {
        let base = rows.iter().find(|b| {
            b.spec.implementation == imp && b.spec.transport == "tcp" && b.spec.size == size
        });
        if let Some(b) = base.filter(|b| b.ok()) {
            if let Some(r) = b.msgs_per_s.filter(|r| *r > 0.0) {
                cell.other_ratios.push(OtherRatio {
                    baseline: b.label(),
                    ratio_msgs_per_s: rate / r,
                });
            }
        }
    }
}

/// How the "vs baseline" column names a cell's baseline: by its first word (`tcp-baseline`), or
/// with its mode where there is one per mode (`ib_send_lat -e`).
fn baseline_short(label: &str, cells: &[Cell]) -> String {
    match cells.iter().find(|b| b.label() == label) {
        Some(b) if b.spec.poll.is_some() => b.spec.name(),
        _ => label.split(' ').next().unwrap_or(label).to_string(),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// The last column of a memory row: what the server's resident set did.
fn memory_note(c: &Cell) -> String {
    match (c.server_rss_start_bytes, c.server_rss_peak_bytes) {
        (Some(start), Some(peak)) => {
            let per = c
                .server_bytes_per_connection
                .map_or(String::new(), |b| format!(", {:.1} KiB/conn", b / 1024.0));
            format!("server peak RSS {} (start {}){per}", mib(peak), mib(start))
        }
        _ => "server RSS not read (server exited?)".into(),
    }
}

/// Three significant digits, for columns whose values span many decades (GB/s, s/GB).
fn sig(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() && v != 0.0 => {
            let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
            format!("{v:.digits$}")
        }
        Some(0.0) => "0".into(),
        _ => "-".into(),
    }
}

fn num(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(v) if v.is_finite() => {
            if v >= 100_000.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.prec$}")
            }
        }
        _ => "-".into(),
    }
}

/// The aligned result table, with numbered notes for rows that did not run.
pub fn table(cells: &[Cell]) -> String {
    let header = [
        "transport",
        "implementation",
        "size",
        "in-flight",
        "conns",
        "p50 us",
        "p99 us",
        "msgs/s",
        "GB/s",
        "cpu s/GB cli",
        "cpu s/GB srv",
        "cpu s/Mmsg cli",
        "cpu s/Mmsg srv",
        "vs baseline",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for c in cells {
        let s = &c.spec;
        let dash_if_0 = |v: u64, text: String| if v == 0 { "-".into() } else { text };
        let mut row = vec![
            s.transport.clone(),
            s.name(),
            dash_if_0(s.size, size_label(s.size)),
            dash_if_0(s.concurrency, s.concurrency.to_string()),
            s.connections.to_string(),
        ];
        if c.ok() {
            row.extend([
                num(c.p50_us, 1),
                num(c.p99_us, 1),
                match c.msgs_per_s {
                    Some(r) if r < 100.0 => sig(Some(r)),
                    r => num(r, 0),
                },
                sig(c.gbytes_per_s),
                sig(c.cpu_s_per_gb_client),
                sig(c.cpu_s_per_gb_server),
                sig(c.cpu_s_per_mmsg_client),
                sig(c.cpu_s_per_mmsg_server),
            ]);
            let mut vs = Vec::new();
            if let Some(r) = c.ratio_p50 {
                vs.push(format!("p50 {r:.2}x"));
            }
            if let Some(r) = c.ratio_msgs_per_s {
                vs.push(format!("rate {r:.2}x"));
            }
            if c.is_memory() {
                vs.push(memory_note(c));
            } else if let (Some(b), false) = (&c.baseline, vs.is_empty()) {
                vs.push(format!("of {}", baseline_short(b, cells)));
            } else if c.spec.role == Role::Cell {
                vs.push("no baseline result".into());
            }
            for o in &c.other_ratios {
                // `zmq push/pull echo tcp 64B x16 c1` -> `zmq echo x16`
                let words: Vec<&str> = o.baseline.split(' ').collect();
                let short = match words.as_slice() {
                    [a, _, mode, _, _, inflight, _] => format!("{a} {mode} {inflight}"),
                    _ => o.baseline.clone(),
                };
                vs.push(format!("; rate {:.2}x of {short}", o.ratio_msgs_per_s));
            }
            row.push(vs.join(" ").replace(" ;", ";"));
        } else {
            let reason = c.status.clone();
            let n = match notes.iter().position(|r| *r == reason) {
                Some(i) => i + 1,
                None => {
                    notes.push(reason);
                    notes.len()
                }
            };
            row.extend(["not available".to_string(), format!("[{n}]")]);
        }
        rows.push(row);
    }
    let cols = header.len();
    let mut w = vec![0; cols];
    for (i, h) in header.iter().enumerate() {
        w[i] = h.len();
    }
    for r in &rows {
        for (i, v) in r.iter().enumerate() {
            if i < cols && v != "not available" {
                w[i] = w[i].max(v.len());
            }
        }
    }
    let numeric = |i: usize| (3..13).contains(&i);
    let line = |r: &[String]| -> String {
        let mut s = String::new();
        for (i, v) in r.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            if v == "not available" {
                s.push_str(v);
                continue;
            }
            if numeric(i) {
                s.push_str(&format!("{v:>width$}", width = w[i]));
            } else if i + 1 == r.len() {
                s.push_str(v);
            } else {
                s.push_str(&format!("{v:<width$}", width = w[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(&header.map(String::from));
    out.push('\n');
    out.push_str(&"-".repeat(out.len() - 1));
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out.push_str(
        "\nLatency: round trip of one message (echo), p50 / p99. GB/s and cpu s/GB count payload \
         bytes one way; cpu s/Mmsg is CPU seconds per million messages; server CPU comes from \
         /proc in 10 ms ticks, so rows run at least 0.5 s (rerun with more messages until they \
         do; RDMA rows in the VM, perftest's too, at least 2 s). vs baseline: p50 ratio (lower is better) and msgs/s ratio (higher is better).\n",
    );
    if cells.iter().any(|c| c.spec.implementation == ONE_WAY) {
        out.push_str(
            "One-way rows: msgrd ping --one-way (the server answers nothing but msgr1 ACKs, then \
             its count on an end marker; in-flight = messages the client may queue per \
             connection) against tcp-baseline stream (a BufWriter over a blocking socket, a \
             4-byte length per frame) with as many connections.\n",
        );
    }
    if cells
        .iter()
        .any(|c| matches!(c.spec.implementation.as_str(), MSGRD_V2 | ONE_WAY_V2))
    {
        out.push_str(
            "msgrd v2 rows: the same msgrd cells speaking msgr2.1 in crc mode (`ping --peer \
             v2:ADDR`; the server accepts both protocols on its one port), against the same \
             baselines as their msgr1 rows.\n",
        );
    }
    if cells
        .iter()
        .any(|c| c.spec.transport == "rdma" && c.spec.concurrency > 1)
    {
        out.push_str(
            "RDMA streaming rows (more than 1 in flight): msgrd ping --one-way, the payload one way \
             with nothing back but msgr1 ACKs, as ib_send_bw moves it one way. msgrd (crc off): the same \
             without the data crc (ping --no-crc-data), which perftest does not compute either.\n",
        );
    }
    if cells
        .iter()
        .any(|c| c.spec.implementation == ZMQ_ECHO || c.spec.implementation == ZMQ_STREAM)
    {
        out.push_str(
            "ZeroMQ: libzmq PUSH/PULL over loopback; echo keeps 16 messages unanswered (the server \
             PUSHes each back on a second pipe), stream sends one way as fast as libzmq takes them.\n",
        );
    }
    if cells.iter().any(|c| c.is_memory()) {
        out.push_str(
            "Memory rows: msgrd serve's peak RSS (VmHWM) before and after the client; idle: sessions \
             opened by msgr-idle and held 1 s; stress: msgrd ping with that many connections and \
             messages in flight on each. KiB/conn = (peak - start) / connections.\n",
        );
    }
    if cells.iter().any(|c| c.spec.transport == "rdma") {
        out.push_str(
            "RDMA baselines: ib_send_lat p50 / p99 are its typical / 99% one-way figures doubled \
             (round trip); ib_*_bw rows are streams (no latency).\n",
        );
    }
    if cells.iter().any(|c| c.spec.poll.is_some()) {
        let busy_us = cells
            .iter()
            .find(|c| c.spec.poll == Some(Poll::BusyPoll) && c.spec.poll_us.is_some())
            .and_then(|c| c.spec.poll_us)
            .map_or("> 0".to_string(), |us| format!("= {us}"));
        out.push_str(&format!(
            "RDMA latency (1 in flight) in two completion modes, each against perftest in the same \
             mode: event = msgrd with poll_us = 0 (its reactor sleeps on the completion channel) vs \
             ib_send_lat -e; busy-poll = msgrd with poll_us {busy_us} (it keeps polling its CQs \
             that many microseconds after activity) vs ib_send_lat (spins on its CQ). Other msgrd \
             rdma rows run config/rdma.toml as shipped.\n"
        ));
    }
    for (i, n) in notes.iter().enumerate() {
        out.push_str(&format!("[{}] {n}\n", i + 1));
    }
    out
}

pub fn write_json(path: &Path, meta: &Meta, cells: &[Cell]) -> std::io::Result<()> {
    let doc = serde_json::json!({ "meta": meta, "cells": cells });
    let text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

/// Replaces what is between the README markers with the table.
pub fn update_readme(path: &Path, meta: &Meta, table: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let new = splice(&text, meta, table).ok_or_else(|| {
        format!(
            "{} has no `{README_START}` ... `{README_END}` markers; add them where the table goes",
            path.display()
        )
    })?;
    std::fs::write(path, new).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn splice(text: &str, meta: &Meta, table: &str) -> Option<String> {
    let a = text.find(README_START)? + README_START.len();
    let b = a + text[a..].find(README_END)?;
    let section = format!(
        "\n_{}, on {} (git {}), `cargo xtask {}`; RDMA: {}._\n\n```text\n{}```\n",
        meta.date,
        meta.machine.one_line(),
        meta.git_rev,
        meta.command,
        meta.rdma_device,
        table
    );
    Some(format!("{}{}{}", &text[..a], section, &text[b..]))
}

#[cfg(test)]
mod tests {
    use super::super::{Cell, Role, Spec};
    use super::*;

    fn cell(imp: &str, role: Role, p50: f64, rate: f64) -> Cell {
        let spec = Spec {
            transport: "tcp".into(),
            implementation: imp.into(),
            role,
            size: 64,
            concurrency: 1,
            connections: 1,
            count: 10,
            poll: None,
            poll_us: None,
        };
        let mut c = Cell::new(spec, "lo", &Machine::default());
        c.status = "ok".into();
        c.p50_us = Some(p50);
        c.msgs_per_s = Some(rate);
        c
    }

    #[test]
    fn ratios_are_cell_over_baseline_of_the_same_shape() {
        let mut cells = vec![
            cell("msgrd", Role::Cell, 30.0, 500.0),
            cell("tcp-baseline echo", Role::Baseline, 20.0, 1000.0),
        ];
        link_baselines(&mut cells);
        assert_eq!(cells[0].ratio_p50, Some(1.5));
        assert_eq!(cells[0].ratio_msgs_per_s, Some(0.5));
        assert!(cells[1].ratio_p50.is_none());
        let t = table(&cells);
        assert!(t.contains("p50 1.50x rate 0.50x"), "{t}");
    }

    #[test]
    fn rdma_latency_cells_are_compared_with_perftest_in_their_own_mode() {
        use super::super::Poll;
        let rdma = |imp: &str, role, poll, p50: f64| {
            let mut c = cell(imp, role, p50, 1e6 / p50);
            c.spec.transport = "rdma".into();
            c.spec.poll = Some(poll);
            if role == Role::Cell {
                c.spec.poll_us = Some(if poll == Poll::Event { 0 } else { 150 });
            }
            c
        };
        let mut cells = vec![
            rdma("msgrd", Role::Cell, Poll::Event, 60.0),
            rdma("msgrd", Role::Cell, Poll::BusyPoll, 30.0),
            rdma("ib_send_lat", Role::Baseline, Poll::Event, 40.0),
            rdma("ib_send_lat", Role::Baseline, Poll::BusyPoll, 25.0),
        ];
        link_baselines(&mut cells);
        assert_eq!(
            cells[0].baseline.as_deref(),
            Some("ib_send_lat -e rdma 64B x1 c1")
        );
        assert_eq!(cells[0].ratio_p50, Some(1.5));
        assert_eq!(
            cells[1].baseline.as_deref(),
            Some("ib_send_lat rdma 64B x1 c1")
        );
        assert_eq!(cells[1].ratio_p50, Some(1.2));
        let t = table(&cells);
        let row = |name: &str| {
            t.lines()
                .find(|l| l.starts_with(&format!("rdma       {name} ")))
                .unwrap_or_else(|| panic!("no {name} row in\n{t}"))
                .to_string()
        };
        assert!(
            row("msgrd (event)").ends_with("p50 1.50x rate 0.67x of ib_send_lat -e"),
            "{t}"
        );
        assert!(
            row("msgrd (busy-poll)").ends_with("p50 1.20x rate 0.83x of ib_send_lat"),
            "{t}"
        );
        assert!(t.contains("ib_send_lat -e  "), "{t}");
        assert!(
            t.contains("poll_us = 0 (") && t.contains("busy-poll = msgrd with poll_us = 150 ("),
            "{t}"
        );
        // Without its own mode's baseline a cell gets none (not the other mode's).
        cells.remove(2);
        for c in cells.iter_mut() {
            c.baseline = None;
            c.ratio_p50 = None;
        }
        link_baselines(&mut cells);
        assert!(cells[0].baseline.is_none() && cells[0].ratio_p50.is_none());
        assert_eq!(cells[1].ratio_p50, Some(1.2));
    }

    #[test]
    fn three_significant_digits() {
        assert_eq!(sig(Some(0.000123456)), "0.000123");
        assert_eq!(sig(Some(1.23456)), "1.23");
        assert_eq!(sig(Some(123456.0)), "123456");
        assert_eq!(sig(Some(0.0)), "0");
        assert_eq!(sig(None), "-");
    }

    #[test]
    fn unavailable_rows_get_one_note_per_reason() {
        let mut a = cell("msgrd", Role::Cell, 1.0, 1.0);
        a.status = "not available: msgrd does not build".into();
        let b = a.clone();
        let t = table(&[a, b]);
        assert_eq!(
            t.matches("[1] not available: msgrd does not build").count(),
            1
        );
        assert!(!t.contains("[2]"));
    }

    #[test]
    fn readme_section_is_replaced_between_markers_only() {
        let meta = Meta {
            date: "D".into(),
            git_rev: "R".into(),
            machine: Machine::default(),
            command: "bench".into(),
            rdma_device: "rxe0".into(),
        };
        let text = format!("intro\n{README_START}\nold\n{README_END}\nrest\n");
        let out = splice(&text, &meta, "TABLE\n").unwrap();
        assert!(out.starts_with("intro\n"));
        assert!(out.ends_with(&format!("{README_END}\nrest\n")));
        assert!(out.contains("TABLE") && !out.contains("old"));
        assert!(splice("no markers", &meta, "T").is_none());
    }

    #[test]
    fn the_64b_x16_cell_is_compared_with_both_zmq_rows() {
        let mut msgr = cell("msgrd", Role::Cell, 100.0, 90_000.0);
        msgr.spec.concurrency = 16;
        let mut echo = cell("tcp-baseline echo", Role::Baseline, 80.0, 100_000.0);
        echo.spec.concurrency = 16;
        let mut zecho = cell(ZMQ_ECHO, Role::Baseline, 50.0, 180_000.0);
        zecho.spec.concurrency = 16;
        let zstream = cell(ZMQ_STREAM, Role::Baseline, 0.0, 900_000.0);
        // A 1-in-flight cell is not the ZeroMQ target's shape.
        let single = cell("msgrd", Role::Cell, 30.0, 9_000.0);
        let mut cells = vec![msgr, echo, zecho, zstream, single];
        link_baselines(&mut cells);
        let r = &cells[0].other_ratios;
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].baseline, "zmq push/pull echo tcp 64B x16 c1");
        assert_eq!(r[0].ratio_msgs_per_s, 0.5);
        assert_eq!(r[1].ratio_msgs_per_s, 0.1);
        assert_eq!(cells[0].ratio_msgs_per_s, Some(0.9));
        assert!(cells[4].other_ratios.is_empty());
        // The ZeroMQ rows are baselines themselves: they get no ratio.
        assert!(cells[2].other_ratios.is_empty() && cells[2].ratio_msgs_per_s.is_none());
        let t = table(&cells);
        assert!(
            t.contains("rate 0.90x of tcp-baseline; rate 0.50x of zmq echo x16; rate 0.10x of zmq stream x1"),
            "{t}"
        );
    }

    #[test]
    fn msgr2_rows_share_the_baselines_of_their_msgr1_rows() {
        let mut v2 = cell(MSGRD_V2, Role::Cell, 40.0, 600.0);
        v2.spec.concurrency = 16;
        let mut base = cell("tcp-baseline echo", Role::Baseline, 20.0, 1200.0);
        base.spec.concurrency = 16;
        let mut ow = cell(ONE_WAY_V2, Role::Cell, 0.0, 3e6);
        ow.p50_us = None;
        ow.spec.concurrency = 4096;
        let mut stream = cell("tcp-baseline stream", Role::Baseline, 0.0, 6e6);
        stream.p50_us = None;
        stream.spec.concurrency = 1;
        let mut zmq = cell(ZMQ_STREAM, Role::Baseline, 0.0, 1e6);
        zmq.p50_us = None;
        let mut cells = vec![v2, base, ow, stream, zmq];
        link_baselines(&mut cells);
        assert_eq!(cells[0].ratio_p50, Some(2.0));
        assert_eq!(cells[0].ratio_msgs_per_s, Some(0.5));
        assert_eq!(cells[2].ratio_msgs_per_s, Some(0.5));
        assert!(
            cells[2].other_ratios.is_empty(),
            "ZeroMQ targets are msgr1's rows"
        );
        assert!(table(&cells).contains("msgrd v2 rows"));
    }

    #[test]
    fn one_way_cells_are_compared_with_the_stream_of_their_connections_and_zmq() {
        let shape = |imp: &str, role, size: u64, conns: u64, rate: f64| {
            let mut c = cell(imp, role, 0.0, rate);
            c.p50_us = None;
            c.spec.size = size;
            c.spec.concurrency = if role == Role::Cell { 4096 } else { 1 };
            c.spec.connections = conns;
            c
        };
        let mut cells = vec![
            shape(ONE_WAY, Role::Cell, 64, 1, 3e6),
            shape("tcp-baseline stream", Role::Baseline, 64, 1, 30e6),
            shape(ONE_WAY, Role::Cell, 64, 8, 2e6),
            shape("tcp-baseline stream", Role::Baseline, 64, 8, 40e6),
            shape(ZMQ_STREAM, Role::Baseline, 64, 1, 2e6),
            shape(ONE_WAY, Role::Cell, 1 << 20, 1, 3000.0),
            shape("tcp-baseline stream", Role::Baseline, 1 << 20, 1, 4000.0),
            shape("tcp-baseline echo", Role::Baseline, 64, 1, 1e5),
        ];
        link_baselines(&mut cells);
        assert_eq!(cells[0].ratio_msgs_per_s, Some(0.1));
        assert_eq!(cells[0].ratio_p50, None);
        assert_eq!(cells[0].other_ratios.len(), 1);
        assert_eq!(cells[0].other_ratios[0].ratio_msgs_per_s, 1.5);
        assert_eq!(
            cells[2].baseline.as_deref(),
            Some("tcp-baseline stream tcp 64B x1 c8")
        );
        assert_eq!(cells[2].ratio_msgs_per_s, Some(0.05));
        // ZeroMQ runs one connection: the 8-connection cell is not compared with it.
        assert!(cells[2].other_ratios.is_empty());
        assert_eq!(cells[5].ratio_msgs_per_s, Some(0.75));
        assert!(cells[5].other_ratios.is_empty());
        let t = table(&cells);
        assert!(
            t.contains("rate 0.10x of tcp-baseline; rate 1.50x of zmq stream x1"),
            "{t}"
        );
        assert!(t.contains("One-way rows: msgrd ping --one-way"), "{t}");
    }

    #[test]
    fn memory_rows_show_the_server_peak_and_the_cost_per_connection() {
        let mut c = cell(super::super::MSGRD_IDLE, Role::Cell, 0.0, 0.0);
        c.spec.size = 0;
        c.spec.concurrency = 0;
        c.spec.connections = 1000;
        c.p50_us = None;
        c.msgs_per_s = None;
        c.fill_memory(Some(8 << 20), Some((8 << 20) + 1000 * 10240));
        let mut cells = vec![c];
        link_baselines(&mut cells);
        assert!(cells[0].baseline.is_none());
        let t = table(&cells);
        let row = t.lines().nth(2).unwrap();
        assert!(row.contains("msgrd idle"), "{t}");
        assert!(
            row.ends_with("server peak RSS 17.8 MiB (start 8.0 MiB), 10.0 KiB/conn"),
            "{t}"
        );
        assert!(!row.contains("no baseline"), "{t}");
    }
}

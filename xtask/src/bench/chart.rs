//! `matrix.svg`: latency and throughput against message size, one line per transport (and RDMA
//! completion mode), baselines dashed in the same colour.

use std::path::Path;

use plotters::prelude::*;
use plotters::series::DashedLineSeries;

use super::{Cell, Poll, Role};

/// One line of a panel: which rows, how it is drawn.
struct Line {
    label: &'static str,
    transport: &'static str,
    implementation: &'static str,
    /// Messages in flight of the rows (0: any; one-way rows scale it with the size).
    concurrency: u64,
    /// The RDMA latency rows' completion mode (None: rows without one).
    poll: Option<Poll>,
    dashed: bool,
    color: RGBColor,
}

const TCP: RGBColor = RGBColor(31, 119, 180);
const TCP_2: RGBColor = RGBColor(23, 190, 207);
const RDMA: RGBColor = RGBColor(214, 39, 40);
const RDMA_2: RGBColor = RGBColor(255, 127, 14);

const LATENCY: &[Line] = &[
    Line {
        label: "msgr tcp",
        transport: "tcp",
        implementation: "msgrd",
        concurrency: 1,
        poll: None,
        dashed: false,
        color: TCP,
    },
    Line {
        label: "tcp-baseline echo",
        transport: "tcp",
        implementation: "tcp-baseline echo",
        concurrency: 1,
        poll: None,
        dashed: true,
        color: TCP,
    },
    Line {
        label: "msgr rdma (event)",
        transport: "rdma",
        implementation: "msgrd",
        concurrency: 1,
        poll: Some(Poll::Event),
        dashed: false,
        color: RDMA,
    },
    Line {
        label: "ib_send_lat -e",
        transport: "rdma",
        implementation: "ib_send_lat",
        concurrency: 1,
        poll: Some(Poll::Event),
        dashed: true,
        color: RDMA,
    },
    Line {
        label: "msgr rdma (busy-poll)",
        transport: "rdma",
        implementation: "msgrd",
        concurrency: 1,
        poll: Some(Poll::BusyPoll),
        dashed: false,
        color: RDMA_2,
    },
    Line {
        label: "ib_send_lat",
        transport: "rdma",
        implementation: "ib_send_lat",
        concurrency: 1,
        poll: Some(Poll::BusyPoll),
        dashed: true,
        color: RDMA_2,
    },
];

const THROUGHPUT: &[Line] = &[
    Line {
        label: "msgr tcp x16",
        transport: "tcp",
        implementation: "msgrd",
        concurrency: 16,
        poll: None,
        dashed: false,
        color: TCP,
    },
    Line {
        label: "tcp-baseline echo x16",
        transport: "tcp",
        implementation: "tcp-baseline echo",
        concurrency: 16,
        poll: None,
        dashed: true,
        color: TCP,
    },
    Line {
        label: "msgr tcp one-way",
        transport: "tcp",
        implementation: super::ONE_WAY,
        concurrency: 0,
        poll: None,
        dashed: false,
        color: TCP_2,
    },
    Line {
        label: "tcp-baseline stream",
        transport: "tcp",
        implementation: "tcp-baseline stream",
        concurrency: 1,
        poll: None,
        dashed: true,
        color: TCP_2,
    },
    Line {
        label: "msgr rdma x16",
        transport: "rdma",
        implementation: "msgrd",
        concurrency: 16,
        poll: None,
        dashed: false,
        color: RDMA,
    },
    Line {
        label: "ib_send_bw",
        transport: "rdma",
        implementation: "ib_send_bw",
        concurrency: 1,
        poll: None,
        dashed: true,
        color: RDMA,
    },
    Line {
        label: "ib_write_bw",
        transport: "rdma",
        implementation: "ib_write_bw",
        concurrency: 1,
        poll: None,
        dashed: true,
        color: RDMA_2,
    },
];

/// Axis labels for log scales, whose ticks sit on powers of ten: 100B, 10k, 1M, 0.001.
fn decimal_label(v: f64, unit: &str) -> String {
    let (x, suffix) = match v {
        v if v >= 1e6 => (v / 1e6, "M"),
        v if v >= 1e3 => (v / 1e3, "k"),
        v => (v, ""),
    };
    // Ticks are round numbers: rounding only strips float noise (0.1 + 1e-17).
    let n = format!("{}", (x * 1e6).round() / 1e6);
    format!("{n}{suffix}{unit}")
}

fn points(cells: &[Cell], l: &Line, y: impl Fn(&Cell) -> Option<f64>) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = cells
        .iter()
        .filter(|c| {
            c.ok()
                && c.spec.transport == l.transport
                && c.spec.implementation == l.implementation
                && (l.concurrency == 0 || c.spec.concurrency == l.concurrency)
                && c.spec.poll == l.poll
                && c.spec.connections == 1
                && (c.spec.role == Role::Cell) == l.implementation.starts_with("msgrd")
        })
        .filter_map(|c| Some((c.spec.size as f64, y(c).filter(|y| *y > 0.0)?)))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

fn range(all: &[(f64, f64)], pick: impl Fn(&(f64, f64)) -> f64) -> (f64, f64) {
    let lo = all.iter().map(&pick).fold(f64::INFINITY, f64::min);
    let hi = all.iter().map(&pick).fold(0.0, f64::max);
    if all.is_empty() {
        (1.0, 10.0)
    } else {
        (lo / 1.5, hi * 1.5)
    }
}

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    cells: &[Cell],
    title: &str,
    y_desc: &str,
    lines: &[Line],
    y: impl Fn(&Cell) -> Option<f64> + Copy,
) -> Result<(), Box<dyn std::error::Error>> {
    let series: Vec<(&Line, Vec<(f64, f64)>)> =
        lines.iter().map(|l| (l, points(cells, l, y))).collect();
    let all: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let (x0, x1) = range(&all, |p| p.0);
    let (y0, y1) = range(&all, |p| p.1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("message size (bytes)")
        .y_desc(y_desc)
        .x_label_formatter(&|x| decimal_label(*x, "B"))
        .y_label_formatter(&|y| decimal_label(*y, ""))
        .draw()?;
    for (l, pts) in series.into_iter().filter(|(_, p)| !p.is_empty()) {
        let style = l.color.stroke_width(2);
        let c = l.color;
        if l.dashed {
            chart
                .draw_series(DashedLineSeries::new(pts, 8, 5, style))?
                .label(l.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 8, y)], c.stroke_width(2))
                });
        } else {
            chart
                .draw_series(LineSeries::new(pts.clone(), style))?
                .label(l.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

pub fn write_svg(path: &Path, cells: &[Cell]) -> Result<(), String> {
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(600);
        panel(
            &left,
            cells,
            "Round-trip latency p50 (1 in flight)",
            "microseconds",
            LATENCY,
            |c| c.p50_us,
        )?;
        panel(
            &right,
            cells,
            "Throughput (16 in flight; streams)",
            "GB/s",
            THROUGHPUT,
            |c| c.gbytes_per_s,
        )?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| e.to_string())
}

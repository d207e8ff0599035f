//! The scaling plot (SVG, plotters without font dependencies).

use std::path::Path;

use kinko_bench::BenchError;
use plotters::prelude::*;

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Plot(e.to_string())
}

/// Withdrawals/s and p99 latency against client count, with raw `C_Sign` as a reference line.
pub(crate) fn scaling(
    path: &Path,
    rate: &[(usize, f64)],
    p99_ms: &[(usize, f64)],
    raw: f64,
    revision: &str,
) -> Result<(), BenchError> {
    let max_clients = rate.iter().map(|(c, _)| *c).max().unwrap_or(1).max(2) as f64;
    let y_max = rate.iter().map(|(_, r)| *r).fold(raw, f64::max).max(1.0) * 1.1;
    let lat_max = p99_ms.iter().map(|(_, l)| *l).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(450);
    let mut chart = ChartBuilder::on(&left)
        .caption("Ethereum withdrawals/s (end to end)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((1.0..max_clients).log_scale(), 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("concurrent clients")
        .y_desc("per second")
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            [(1.0, raw), (max_clients, raw)],
            RED.stroke_width(2),
        ))
        .map_err(err)?
        .label("raw C_Sign (same token, same sessions)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .draw_series(LineSeries::new(
            rate.iter().map(|(c, r)| (*c as f64, *r)),
            BLUE.stroke_width(2),
        ))
        .map_err(err)?
        .label("kinkod: submit + 2 approvals + sign")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(
            rate.iter()
                .map(|(c, r)| Circle::new((*c as f64, *r), 3, BLUE.filled())),
        )
        .map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;

    let mut lat = ChartBuilder::on(&right)
        .caption(
            format!("p99 withdrawal latency (kinkod {revision})"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((1.0..max_clients).log_scale(), 0.0..lat_max)
        .map_err(err)?;
    lat.configure_mesh()
        .x_desc("concurrent clients")
        .y_desc("ms")
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(err)?;
    lat.draw_series(LineSeries::new(
        p99_ms.iter().map(|(c, l)| (*c as f64, *l)),
        BLACK.stroke_width(2),
    ))
    .map_err(err)?;
    lat.draw_series(
        p99_ms
            .iter()
            .map(|(c, l)| Circle::new((*c as f64, *l), 3, BLACK.filled())),
    )
    .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

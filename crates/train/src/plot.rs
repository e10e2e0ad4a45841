//! `loss.svg`: the loss curves (train and validation, per ensemble member) and the per-round
//! metrics (intervention rate of each DAgger round), drawn with plotters' SVG backend.

use std::path::Path;

use plotters::prelude::*;

use crate::error::TrainError;
use crate::train::MemberReport;
use crate::types::RoundMetrics;

pub fn plot_training(
    path: &Path,
    members: &[MemberReport],
    rounds: &[RoundMetrics],
) -> Result<(), TrainError> {
    draw(path, members, rounds).map_err(|message| TrainError::Plot {
        path: path.to_path_buf(),
        message,
    })
}

fn draw(path: &Path, members: &[MemberReport], rounds: &[RoundMetrics]) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::new(path, (900, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (top, bottom) = root.split_vertically(440);

    let losses = members
        .iter()
        .flat_map(|m| m.curve.iter())
        .flat_map(|p| std::iter::once(p.train).chain(p.val))
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = losses.fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo.is_finite() && hi > 0.0 {
        (lo * 0.8, hi * 1.25)
    } else {
        (1e-3, 1.0)
    };
    let max_step = members
        .iter()
        .flat_map(|m| m.curve.iter().map(|p| p.step))
        .max()
        .unwrap_or(1)
        .max(1);

    let mut chart = ChartBuilder::on(&top)
        .caption("training loss (normalised MSE)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0..max_step, (lo..hi).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .draw()
        .map_err(|x| e(&x))?;
    for m in members {
        let color = Palette99::pick(m.member).to_rgba();
        let train: Vec<(usize, f64)> = m
            .curve
            .iter()
            .filter(|p| p.train.is_finite() && p.train > 0.0)
            .map(|p| (p.step, p.train))
            .collect();
        chart
            .draw_series(LineSeries::new(train, color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(format!("member {} train", m.member))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        let val: Vec<(usize, f64)> = m
            .curve
            .iter()
            .filter_map(|p| p.val.map(|v| (p.step, v)))
            .filter(|(_, v)| v.is_finite() && *v > 0.0)
            .collect();
        if !val.is_empty() {
            let vcolor = color.mix(0.45);
            chart
                .draw_series(LineSeries::new(val.clone(), vcolor.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(format!("member {} validation", m.member))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], vcolor.stroke_width(2))
                });
            chart
                .draw_series(val.into_iter().map(|p| Circle::new(p, 2, vcolor.filled())))
                .map_err(|x| e(&x))?;
        }
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|x| e(&x))?;

    let n = rounds.len().max(1);
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "per round: intervention rate (intervened / autonomous+intervened frames)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0..n, 0f64..1f64)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("round (session, oldest first)")
        .y_desc("rate")
        .draw()
        .map_err(|x| e(&x))?;
    let pts: Vec<(usize, f64)> = rounds
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.intervention_rate.map(|v| (i, v)))
        .collect();
    chart
        .draw_series(LineSeries::new(pts.clone(), RED.stroke_width(2)))
        .map_err(|x| e(&x))?;
    chart
        .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, RED.filled())))
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

//! Charts of bigbatch results, each written as SVG and PNG side by side: several series on one
//! line chart (learning-rate schedules, training curves), box plots of a metric over seeds with a
//! target line (the paper's Figures 1 and 4) and heat maps on a log scale (per-layer
//! diagnostics). Text uses the embedded DejaVu Sans, so nothing depends on the fonts of the
//! machine.
//!
//! Must not depend on any other bigbatch crate (callers pass numbers).

use anyhow::{Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const SIZE: (u32, u32) = (960, 600);

fn font() -> Result<()> {
    static REGISTER: Once = Once::new();
    let mut failed = false;
    REGISTER.call_once(|| failed = register_font("sans-serif", FontStyle::Normal, FONT).is_err());
    if failed {
        bail!("cannot load the embedded DejaVu Sans font");
    }
    Ok(())
}

/// A named polyline.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A named line with a band around it: `(x, y, low, high)` points (e.g. the expected best of k
/// trials with one standard deviation either side).
#[derive(Clone, Debug)]
pub struct Band {
    pub label: String,
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// A named set of values (e.g. final accuracy over seeds).
#[derive(Clone, Debug)]
pub struct BoxGroup {
    pub label: String,
    pub values: Vec<f64>,
}

/// `stem.svg` and `stem.png`.
fn paths(stem: &Path) -> (PathBuf, PathBuf) {
    (stem.with_extension("svg"), stem.with_extension("png"))
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

fn both(
    stem: &Path,
    draw: impl Fn(DrawingArea<SVGBackend, Shift>) -> Result<()>,
    draw_png: impl Fn(DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<Vec<PathBuf>> {
    font()?;
    let (svg, png) = paths(stem);
    if let Some(dir) = stem.parent() {
        std::fs::create_dir_all(dir)?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(root)?;
    }
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw_png(root)?;
    }
    Ok(vec![svg, png])
}

fn color(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    PALETTE[i % PALETTE.len()]
}

fn bounds(values: impl Iterator<Item = f64>) -> Result<(f64, f64)> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !(lo.is_finite() && hi.is_finite()) {
        bail!("nothing finite to plot");
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.5 * lo.abs().max(1e-3)
    };
    Ok((lo - pad, hi + pad))
}

/// The legend box of the labelled series, in the chart's upper right.
fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)
}

/// Lines are bands without width.
fn draw_lines<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    let bands: Vec<Band> = series
        .iter()
        .map(|s| Band {
            label: s.label.clone(),
            points: s.points.iter().map(|&(x, y)| (x, y, y, y)).collect(),
        })
        .collect();
    draw_bands(root, title, x_label, y_label, &bands)
}

/// Several series on one chart (e.g. the learning-rate schedules of several configs, Figure 1 of
/// the paper). Writes `stem.svg` and `stem.png`; returns their paths.
pub fn line_chart(
    stem: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<Vec<PathBuf>> {
    if series.iter().all(|s| s.points.is_empty()) {
        bail!("{}: no points to plot", stem.display());
    }
    both(
        stem,
        |root| draw_lines(root, title, x_label, y_label, series),
        |root| draw_lines(root, title, x_label, y_label, series),
    )
}

fn draw_bands<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    bands: &[Band],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let (x0, x1) = bounds(bands.iter().flat_map(|b| b.points.iter().map(|p| p.0)))?;
    let (y0, y1) = bounds(
        bands
            .iter()
            .flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2, p.3])),
    )?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (i, b) in bands.iter().enumerate() {
        let c = color(i);
        let outline: Vec<(f64, f64)> = b
            .points
            .iter()
            .map(|p| (p.0, p.3))
            .chain(b.points.iter().rev().map(|p| (p.0, p.2)))
            .collect();
        if b.points.iter().any(|p| p.2 < p.3) {
            chart
                .draw_series([Polygon::new(outline, c.mix(0.15).filled())])
                .map_err(err)?;
        }
        chart
            .draw_series(LineSeries::new(
                b.points.iter().map(|p| (p.0, p.1)),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(b.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    draw_legend(&mut chart)?;
    root.present().map_err(err)
}

/// Lines with shaded bands (e.g. tuning-budget curves: the expected best of k trials, Dodge et
/// al. 2019). Writes `stem.svg` and `stem.png`; returns their paths.
pub fn band_chart(
    stem: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    bands: &[Band],
) -> Result<Vec<PathBuf>> {
    if bands.iter().all(|b| b.points.is_empty()) {
        bail!("{}: no points to plot", stem.display());
    }
    both(
        stem,
        |root| draw_bands(root, title, x_label, y_label, bands),
        |root| draw_bands(root, title, x_label, y_label, bands),
    )
}

/// Quartiles by linear interpolation (numpy's default).
fn quartiles(values: &[f64]) -> [f64; 5] {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let h = (v.len() - 1) as f64 * p;
        let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
        v[lo] + (h - lo as f64) * (v[hi] - v[lo])
    };
    [v[0], q(0.25), q(0.5), q(0.75), v[v.len() - 1]]
}

fn draw_boxes<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    y_label: &str,
    groups: &[BoxGroup],
    target: Option<f64>,
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let (y0, y1) = bounds(
        groups
            .iter()
            .flat_map(|g| g.values.iter().copied())
            .chain(target),
    )?;
    let n = groups.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y0..y1)
        .map_err(err)?;
    let labels: Vec<String> = groups.iter().map(|g| g.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (i, g) in groups.iter().enumerate() {
        if g.values.is_empty() {
            continue;
        }
        let [min, q1, med, q3, max] = quartiles(&g.values);
        let x = i as f64;
        let c = color(i);
        let w = 0.25;
        chart
            .draw_series([Rectangle::new(
                [(x - w, q1), (x + w, q3)],
                c.mix(0.3).filled(),
            )])
            .map_err(err)?;
        chart
            .draw_series([
                PathElement::new(
                    vec![
                        (x - w, q1),
                        (x + w, q1),
                        (x + w, q3),
                        (x - w, q3),
                        (x - w, q1),
                    ],
                    c.stroke_width(2),
                ),
                PathElement::new(vec![(x - w, med), (x + w, med)], BLACK.stroke_width(3)),
                PathElement::new(vec![(x, q3), (x, max)], c.stroke_width(2)),
                PathElement::new(vec![(x, q1), (x, min)], c.stroke_width(2)),
                PathElement::new(
                    vec![(x - w / 2.0, max), (x + w / 2.0, max)],
                    c.stroke_width(2),
                ),
                PathElement::new(
                    vec![(x - w / 2.0, min), (x + w / 2.0, min)],
                    c.stroke_width(2),
                ),
            ])
            .map_err(err)?;
        chart
            .draw_series(g.values.iter().map(|&v| Circle::new((x, v), 3, c.filled())))
            .map_err(err)?;
    }
    if let Some(t) = target {
        chart
            .draw_series([PathElement::new(
                vec![(-0.5, t), (n as f64 - 0.5, t)],
                RED.stroke_width(2),
            )])
            .map_err(err)?
            .label(format!("target {t}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        draw_legend(&mut chart)?;
    }
    root.present().map_err(err)
}

/// Box plots (min, quartiles, median, max, and every value as a dot) per group, with an optional
/// horizontal target line (Figure 4 of the paper). Writes `stem.svg` and `stem.png`.
pub fn box_plot(
    stem: &Path,
    title: &str,
    y_label: &str,
    groups: &[BoxGroup],
    target: Option<f64>,
) -> Result<Vec<PathBuf>> {
    if groups.iter().all(|g| g.values.is_empty()) {
        bail!("{}: no values to plot", stem.display());
    }
    both(
        stem,
        |root| draw_boxes(root, title, y_label, groups, target),
        |root| draw_boxes(root, title, y_label, groups, target),
    )
}

/// A grid of values: one row per label (e.g. a layer), one column per x (e.g. a step); `None`
/// cells are left blank.
#[derive(Clone, Debug)]
pub struct Grid {
    pub rows: Vec<String>,
    pub columns: Vec<f64>,
    /// `values[row][column]`.
    pub values: Vec<Vec<Option<f64>>>,
}

/// Viridis-like colour ramp from dark blue (0) through green to yellow (1).
fn ramp(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + f * (y - x)).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn draw_heatmap<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    value_label: &str,
    grid: &Grid,
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let logs: Vec<f64> = grid
        .values
        .iter()
        .flatten()
        .flatten()
        .filter(|v| **v > 0.0 && v.is_finite())
        .map(|v| v.log10())
        .collect();
    let (lo, hi) = bounds(logs.iter().copied())?;
    let (plot, bar) = root.split_horizontally(SIZE.0 - 110);
    let n_rows = grid.rows.len();
    let n_cols = grid.columns.len();
    let longest = grid.rows.iter().map(String::len).max().unwrap_or(1) as u32;
    let row_font = (480 / n_rows.max(1) as u32).clamp(6, 14);
    // Cells are centred on integer coordinates, where the axis puts its ticks.
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size((longest * row_font * 6 / 10 + 12).min(340))
        .build_cartesian_2d(-0.5f64..n_cols as f64 - 0.5, -0.5f64..n_rows as f64 - 0.5)
        .map_err(err)?;
    let columns = grid.columns.clone();
    let rows = grid.rows.clone();
    let at = |v: f64, n: usize| {
        let i = v.round();
        ((v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n).then_some(i as usize)
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(x_label)
        .x_labels(n_cols.min(12))
        .x_label_formatter(&|x| {
            at(*x, n_cols)
                .map(|i| format!("{}", columns[i]))
                .unwrap_or_default()
        })
        .y_labels(n_rows)
        // Row 0 at the top.
        .y_label_formatter(&|y| {
            at(*y, n_rows)
                .map(|i| rows[n_rows - 1 - i].clone())
                .unwrap_or_default()
        })
        .y_label_style(("sans-serif", row_font))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    let cells = grid.values.iter().enumerate().flat_map(|(r, row)| {
        row.iter().enumerate().filter_map(move |(c, v)| {
            let v = (*v)?;
            let y = (n_rows - 1 - r) as f64;
            let colour = if v > 0.0 && v.is_finite() {
                ramp((v.log10() - lo) / (hi - lo))
            } else {
                RGBColor(200, 200, 200)
            };
            let x = c as f64;
            Some(Rectangle::new(
                [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                colour.filled(),
            ))
        })
    });
    chart.draw_series(cells).map_err(err)?;
    // The colour bar: log10 of the value.
    let mut scale = ChartBuilder::on(&bar)
        .margin_top(48)
        .margin_bottom(56)
        .margin_right(8)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..1.0, lo..hi)
        .map_err(err)?;
    scale
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc(format!("log10 {value_label}"))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    let steps = 64;
    scale
        .draw_series((0..steps).map(|i| {
            let a = lo + (hi - lo) * i as f64 / steps as f64;
            let b = lo + (hi - lo) * (i + 1) as f64 / steps as f64;
            Rectangle::new(
                [(0.0, a), (1.0, b)],
                ramp((i as f64 + 0.5) / steps as f64).filled(),
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)
}

/// A heat map of a grid on a log10 colour scale (e.g. each layer's update-to-weight ratio over
/// steps), with a colour bar; cells that are not positive are grey. Writes `stem.svg` and
/// `stem.png`.
pub fn heatmap(
    stem: &Path,
    title: &str,
    x_label: &str,
    value_label: &str,
    grid: &Grid,
) -> Result<Vec<PathBuf>> {
    if grid.values.len() != grid.rows.len()
        || grid.values.iter().any(|r| r.len() != grid.columns.len())
    {
        bail!(
            "{}: the grid has {} rows and {} columns, but its values do not match",
            stem.display(),
            grid.rows.len(),
            grid.columns.len()
        );
    }
    if !grid
        .values
        .iter()
        .flatten()
        .flatten()
        .any(|v| *v > 0.0 && v.is_finite())
    {
        bail!("{}: no positive values to plot", stem.display());
    }
    both(
        stem,
        |root| draw_heatmap(root, title, x_label, value_label, grid),
        |root| draw_heatmap(root, title, x_label, value_label, grid),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_written_as_svg_and_png() {
        let dir = std::env::temp_dir().join(format!("bigbatch-plots-{}", std::process::id()));
        let lines = line_chart(
            &dir.join("schedules"),
            "Learning rate",
            "step",
            "lr",
            &[
                Series {
                    label: "a".into(),
                    points: vec![(0.0, 0.0), (10.0, 1.0), (20.0, 0.5)],
                },
                Series {
                    label: "b".into(),
                    points: vec![(0.0, 0.2), (20.0, 0.1)],
                },
            ],
        )
        .unwrap();
        let boxes = box_plot(
            &dir.join("seeds"),
            "Accuracy over seeds",
            "accuracy",
            &[
                BoxGroup {
                    label: "lamb".into(),
                    values: vec![0.7, 0.75, 0.8, 0.78],
                },
                BoxGroup {
                    label: "nesterov".into(),
                    values: vec![0.76],
                },
            ],
            Some(0.759),
        )
        .unwrap();
        let bands = band_chart(
            &dir.join("budget"),
            "Tuning budget",
            "trials",
            "expected best",
            &[Band {
                label: "lamb".into(),
                points: vec![(1.0, 0.5, 0.4, 0.6), (2.0, 0.6, 0.55, 0.65)],
            }],
        )
        .unwrap();
        for p in lines.iter().chain(&boxes).chain(&bands) {
            let bytes = std::fs::read(p).unwrap();
            if p.extension().unwrap() == "png" {
                assert_eq!(&bytes[1..4], b"PNG");
            } else {
                let text = String::from_utf8(bytes).unwrap();
                assert!(text.starts_with("<svg"));
                assert!(
                    ["nesterov", "Learning rate", "Tuning budget"]
                        .iter()
                        .any(|t| text.contains(t))
                );
            }
        }
        let grid = Grid {
            rows: vec!["conv1.weight".into(), "bn1.gamma".into()],
            columns: vec![9.0, 19.0, 29.0],
            values: vec![
                vec![Some(1e-3), Some(2e-3), None],
                vec![Some(1e-1), Some(0.0), Some(5e-2)],
            ],
        };
        for p in heatmap(
            &dir.join("heat"),
            "Update ratio",
            "step",
            "update / weight",
            &grid,
        )
        .unwrap()
        {
            assert!(
                std::fs::metadata(&p).unwrap().len() > 1000,
                "{}",
                p.display()
            );
        }
        let ragged = Grid {
            values: vec![vec![Some(1.0)], vec![]],
            ..grid.clone()
        };
        assert!(heatmap(&dir.join("ragged"), "t", "x", "v", &ragged).is_err());
        assert!(ramp(0.0) == RGBColor(68, 1, 84) && ramp(1.0) == RGBColor(253, 231, 37));
        assert!(line_chart(&dir.join("empty"), "t", "x", "y", &[]).is_err());
        assert!(band_chart(&dir.join("empty"), "t", "x", "y", &[]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

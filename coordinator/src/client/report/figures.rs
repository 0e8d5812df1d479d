//! The report's figures, drawn once per backend with plotters: an SVG for the HTML page and a PNG
//! for the Markdown one. Text is set in the embedded DejaVu Sans subset (font/), so a PNG made on
//! a machine without fonts still has its labels. Three kinds of chart: lines with error bars (or
//! dots) over a categorical or numeric x axis, and a heat map.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The subset of DejaVu Sans the figures' text is set in (see font/README.md).
static FONT: &[u8] = include_bytes!("font/DejaVuSans-subset.ttf");

/// Figure size in pixels (the SVG's size too).
const WIDTH: u32 = 960;
const HEIGHT: u32 = 560;

/// Colours of series, in order (Tableau 10: tells lines apart, also in greyscale print).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A finished figure: its file name (without extension), title and caption, as SVG and PNG.
pub struct Figure {
    pub name: String,
    pub title: String,
    pub caption: String,
    pub svg: String,
    pub png: Vec<u8>,
}

/// One line (or set of dots) of a chart: points `(x, y, spread)`, the spread drawn as an error
/// bar of ± that much when set.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64, Option<f64>)>,
}

/// How the x axis reads: whole numbers (epochs), or categories at 0, 1, 2, … with these names.
pub enum XAxis {
    Integers,
    Categories(Vec<String>),
    /// Points at log10 of their value (a log scale), labelled with the values themselves.
    Log10,
}

/// A chart of series against one x axis.
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x: XAxis,
    pub series: Vec<Series>,
    /// Which series have lines through their points (the others are dots).
    pub lines: Joined,
}

/// Which series of a chart are joined by lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    All,
    None,
    /// The first series alone: a front drawn through the dots of every point.
    First,
}

/// A grid of values coloured from low to high, with each value written in its cell.
pub struct HeatMap {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_values: Vec<String>,
    pub y_values: Vec<String>,
    /// `cells[y][x]`: the value and its text, or nothing measured.
    pub cells: Vec<Vec<Option<(f64, String)>>>,
    /// The cell to outline (the best point), as (x, y).
    pub marked: Option<(usize, usize)>,
    /// What the colours measure, for the scale's legend.
    pub value_label: String,
}

/// Makes the embedded font the one plotters' "sans-serif" family draws with.
fn register_font() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| ())
            .expect("the embedded font parses");
    });
}

type DrawResult<T, DB> = Result<T, DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A chart that can draw itself on any plotters backend.
trait Chart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB>;
}

/// Draws `chart` as an SVG and as a PNG.
fn both(name: &str, title: &str, caption: String, chart: &impl Chart) -> anyhow::Result<Figure> {
    register_font();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow::anyhow!("{name}.svg: {e}"))?;
        chart
            .draw(&root)
            .map_err(|e| anyhow::anyhow!("{name}.svg: {e}"))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("{name}.svg: {e}"))?;
    }
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| anyhow::anyhow!("{name}.png: {e}"))?;
        chart
            .draw(&root)
            .map_err(|e| anyhow::anyhow!("{name}.png: {e}"))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("{name}.png: {e}"))?;
    }
    Ok(Figure {
        name: name.to_string(),
        title: title.to_string(),
        caption,
        svg,
        png: encode_png(&pixels)?,
    })
}

/// RGB pixels of a `WIDTH` × `HEIGHT` figure as a PNG file.
fn encode_png(pixels: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(pixels)?;
    writer.finish()?;
    Ok(out)
}

/// The smallest and largest of `values`, widened by 8 % (and to a unit when they are equal) so
/// nothing sits on the frame.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.08 * (hi - lo);
    (lo - pad, hi + pad)
}

/// A short number for an axis: few digits, no trailing zeros.
fn tick(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

impl LineChart {
    /// The chart as a figure named `name`.
    pub fn figure(&self, name: &str, caption: String) -> anyhow::Result<Figure> {
        both(name, &self.title, caption, self)
    }
}

/// Most category names along an x axis (more would overlap): beyond it every k-th is named.
const MAX_CATEGORY_LABELS: usize = 16;

/// Height of one row of a legend below a chart, and its columns.
const LEGEND_ROW: u32 = 22;
const LEGEND_COLUMNS: usize = 2;

impl Chart for LineChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB> {
        let (x0, x1) = match &self.x {
            XAxis::Categories(names) => (-0.5, names.len() as f64 - 0.5),
            XAxis::Integers | XAxis::Log10 => padded_range(
                self.series
                    .iter()
                    .flat_map(|s| s.points.iter().map(|p| p.0)),
            ),
        };
        let (y0, y1) = padded_range(self.series.iter().flat_map(|s| {
            s.points.iter().flat_map(|&(_, y, spread)| {
                let e = spread.unwrap_or(0.0);
                [y - e, y + e]
            })
        }));
        // The legend goes below the chart, never over the data.
        let labelled: Vec<(usize, &Series)> = self
            .series
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.label.is_empty())
            .collect();
        let legend_rows = labelled.len().div_ceil(LEGEND_COLUMNS) as u32;
        let (plot, legend) = if legend_rows > 0 {
            root.split_vertically(HEIGHT - legend_rows * LEGEND_ROW - 12)
        } else {
            root.split_vertically(HEIGHT)
        };
        let whole = |v: &f64| {
            let i = v.round();
            ((v - i).abs() < 1e-6).then_some(i)
        };
        // Many categories: every k-th is named, so names never overlap.
        let every = match &self.x {
            XAxis::Categories(names) => names.len().div_ceil(MAX_CATEGORY_LABELS).max(1),
            XAxis::Integers | XAxis::Log10 => 1,
        };
        let x_name = |v: &f64| match (&self.x, whole(v)) {
            (XAxis::Categories(names), Some(i))
                if i >= 0.0 && (i as usize).is_multiple_of(every) =>
            {
                names.get(i as usize).cloned().unwrap_or_default()
            }
            (XAxis::Integers, Some(i)) => format!("{i}"),
            (XAxis::Log10, _) => {
                let value = 10f64.powf(*v);
                // Two significant digits: 117, 330, 5600.
                let scale = 10f64.powi(value.log10().floor() as i32 - 1).max(1.0);
                format!("{}", (value / scale).round() * scale)
            }
            _ => String::new(),
        };
        let y_tick = |v: &f64| tick(*v);
        let mut chart = ChartBuilder::on(&plot)
            .caption(&self.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 14))
            // Categories sit at whole numbers: as many labels as categories gives a step of one.
            .x_labels(match &self.x {
                XAxis::Categories(names) => names.len().max(2),
                XAxis::Integers => ((x1 - x0).round() as usize + 1).clamp(2, 12),
                XAxis::Log10 => 8,
            })
            .x_label_formatter(&x_name)
            .y_label_formatter(&y_tick)
            .max_light_lines(0)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()?;
        for (i, series) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let points: Vec<(f64, f64)> = series.points.iter().map(|p| (p.0, p.1)).collect();
            if self.lines == Joined::All || (self.lines == Joined::First && i == 0) {
                chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?;
            }
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            chart.draw_series(series.points.iter().filter_map(|&(x, y, spread)| {
                spread
                    .map(|e| ErrorBar::new_vertical(x, y - e, y, y + e, color.stroke_width(2), 10))
            }))?;
        }
        let column_width = (WIDTH as i32 - 120) / LEGEND_COLUMNS as i32;
        for (n, (i, series)) in labelled.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let x = 90 + (n % LEGEND_COLUMNS) as i32 * column_width;
            let y = 4 + (n / LEGEND_COLUMNS) as i32 * LEGEND_ROW as i32 + LEGEND_ROW as i32 / 2;
            legend.draw(&PathElement::new(
                vec![(x, y), (x + 24, y)],
                color.stroke_width(3),
            ))?;
            legend.draw(&Circle::new((x + 12, y), 4, color.filled()))?;
            legend.draw(&Text::new(
                series.label.clone(),
                (x + 32, y),
                ("sans-serif", 14)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        Ok(())
    }
}

/// The colour of `t` in [0, 1] on a light-to-dark blue-green scale (readable black or white text
/// on every step).
fn shade(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(lerp(237.0, 8.0), lerp(248.0, 64.0), lerp(233.0, 129.0))
}

impl HeatMap {
    /// The heat map as a figure named `name`.
    pub fn figure(&self, name: &str, caption: String) -> anyhow::Result<Figure> {
        both(name, &self.title, caption, self)
    }
}

impl Chart for HeatMap {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<(), DB> {
        let (nx, ny) = (self.x_values.len(), self.y_values.len());
        let (lo, hi) = self
            .cells
            .iter()
            .flatten()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (v, _)| {
                (lo.min(*v), hi.max(*v))
            });
        let scale = |v: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        let (plot, legend) = root.split_horizontally(WIDTH - 130);
        let mut chart = ChartBuilder::on(&plot)
            .caption(&self.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(96)
            .build_cartesian_2d(-0.5..nx as f64 - 0.5, -0.5..ny as f64 - 0.5)?;
        let name_of = |names: &[String], v: f64| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let x_name = |v: &f64| name_of(&self.x_values, *v);
        let y_name = |v: &f64| name_of(&self.y_values, *v);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 14))
            .x_labels(nx.max(2))
            .y_labels(ny.max(2))
            .x_label_formatter(&x_name)
            .y_label_formatter(&y_name)
            .draw()?;
        for (y, row) in self.cells.iter().enumerate() {
            for (x, cell) in row.iter().enumerate() {
                let corners = [
                    (x as f64 - 0.5, y as f64 - 0.5),
                    (x as f64 + 0.5, y as f64 + 0.5),
                ];
                let (fill, text) = match cell {
                    Some((v, text)) => (shade(scale(*v)), text.clone()),
                    None => (RGBColor(245, 245, 245), "not run".to_string()),
                };
                chart.draw_series([Rectangle::new(corners, fill.filled())])?;
                chart.draw_series([Rectangle::new(corners, WHITE.stroke_width(2))])?;
                let dark = cell.as_ref().is_some_and(|(v, _)| scale(*v) > 0.55);
                let color = if dark { WHITE } else { BLACK };
                chart.draw_series([Text::new(
                    text,
                    (x as f64, y as f64),
                    ("sans-serif", 15)
                        .into_font()
                        .color(&color)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                )])?;
            }
        }
        if let Some((x, y)) = self.marked {
            chart.draw_series([Rectangle::new(
                [
                    (x as f64 - 0.47, y as f64 - 0.47),
                    (x as f64 + 0.47, y as f64 + 0.47),
                ],
                RGBColor(214, 39, 40).stroke_width(4),
            )])?;
        }
        // The colour scale: low at the bottom, high at the top.
        let steps = 40;
        let top = 70;
        let bottom = HEIGHT as i32 - 90;
        let step_height = (bottom - top) as f64 / steps as f64;
        for i in 0..steps {
            let t = (i as f64 + 0.5) / steps as f64;
            let y_hi = bottom - ((i + 1) as f64 * step_height) as i32;
            let y_lo = bottom - (i as f64 * step_height) as i32;
            legend.draw(&Rectangle::new([(20, y_hi), (44, y_lo)], shade(t).filled()))?;
        }
        let label = ("sans-serif", 14).into_font();
        if lo.is_finite() {
            legend.draw(&Text::new(format!("{hi:.2}"), (50, top - 6), label.clone()))?;
            legend.draw(&Text::new(
                format!("{lo:.2}"),
                (50, bottom - 8),
                label.clone(),
            ))?;
        }
        legend.draw(&Text::new(
            self.value_label.clone(),
            (8, bottom + 16),
            label.clone(),
        ))?;
        legend.draw(&Text::new("red box: best", (8, bottom + 36), label))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dark pixels in rows `rows` of a PNG figure.
    fn ink(png_bytes: &[u8], rows: std::ops::Range<u32>) -> usize {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        let row_bytes = info.line_size;
        rows.flat_map(|y| {
            pixels[y as usize * row_bytes..(y as usize + 1) * row_bytes]
                .chunks(3)
                .map(|p| p.iter().map(|&c| u32::from(c)).sum::<u32>())
                .collect::<Vec<_>>()
        })
        .filter(|&sum| sum < 300)
        .count()
    }

    /// The PNG's text is drawn from the embedded font (no system font is asked for): the title's
    /// band has ink where the title is, none when the title is empty. The SVG names its text.
    #[test]
    fn text_is_drawn_with_the_embedded_font() {
        let chart = |title: &str| LineChart {
            title: title.into(),
            x_label: "batch size".into(),
            y_label: "test accuracy (%)".into(),
            x: XAxis::Categories(vec!["64".into(), "128".into()]),
            series: vec![Series {
                label: "learning rate 1e-3".into(),
                points: vec![(0.0, 70.0, Some(1.0)), (1.0, 72.0, Some(0.5))],
            }],
            lines: Joined::All,
        };
        let titled = chart("Test accuracy vs batch size")
            .figure("t", String::new())
            .unwrap();
        let untitled = chart("").figure("t", String::new()).unwrap();
        assert!(ink(&titled.png, 8..36) > 300, "the title was drawn");
        assert_eq!(ink(&untitled.png, 8..36), 0);
        assert!(titled.svg.contains("Test accuracy vs batch size"));
        assert!(titled.svg.contains("learning rate 1e-3"));
    }
}

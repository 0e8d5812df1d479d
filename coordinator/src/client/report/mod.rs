//! `jetsweep report SWEEP --out DIR`: a sweep's results as files a lab can keep and share.
//! `report.html` (self-contained: figures inline as SVG), `report.md` (figures as PNG beside it),
//! `results.json` (the document `jetsweep results --format json` prints: every number in the
//! pages is one of its numbers, rounded) and `figures/` (each figure as SVG and PNG).
//!
//! Figures: test accuracy at the best epoch against each swept parameter (mean ± std over seeds),
//! learning curves per grid point, a heat map when exactly two parameters vary, and training time
//! per job. Nothing that did not finish is drawn as a number.

pub mod figures;
mod pages;
/// HTML escaping, shared with the dashboard's server-made pages.
pub(crate) use pages::esc;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jetsweep_proto::v1 as pb;

use figures::{Figure, HeatMap, Joined, LineChart, Series, XAxis};

/// Most lines in one chart: beyond this a chart is unreadable, and the caption says which were
/// kept.
const MAX_LINES: usize = 10;

/// Most cells of a heat map (each shows its number): beyond it the table and the other figures say
/// it better.
const MAX_HEAT_CELLS: usize = 100;

/// Everything a report is made of, as the coordinator serves it.
pub struct Inputs {
    pub sweep: pb::SweepView,
    pub results: pb::GetResultsResponse,
    /// Every job, in grid order.
    pub jobs: Vec<pb::JobView>,
    /// Each job's epochs, by job id.
    pub curves: HashMap<String, Vec<pb::EpochMetrics>>,
    /// Its early-stopping decisions (empty for a sweep that does not stop early).
    pub decisions: pb::ListDecisionsResponse,
    /// When the report was made, Unix milliseconds.
    pub made_unix_ms: i64,
}

/// A hyperparameter a grid can sweep: its name in the results, how an axis calls it, how a value
/// is written, and the order values sort in.
struct Param {
    key: &'static str,
    axis: &'static str,
    show: fn(&pb::TrialSpec) -> String,
    order: fn(&pb::TrialSpec) -> f64,
}

/// Trainable parameters of a model named in a result (0 for a name that does not parse).
fn model_params(name: &str) -> usize {
    crate::client::render::words::model_params(name).unwrap_or(0)
}

const PARAMS: [Param; 5] = [
    Param {
        key: "model",
        axis: "model (trainable parameters)",
        show: |s| format!("{} ({})", s.model, model_params(&s.model)),
        order: |s| model_params(&s.model) as f64,
    },
    Param {
        key: "optimizer",
        axis: "optimizer",
        show: |s| s.optimizer.clone(),
        order: |_| 0.0,
    },
    Param {
        key: "batch_size",
        axis: "batch size",
        show: |s| s.batch_size.to_string(),
        order: |s| f64::from(s.batch_size),
    },
    Param {
        key: "max_epochs",
        axis: "epochs",
        show: |s| s.max_epochs.to_string(),
        order: |s| f64::from(s.max_epochs),
    },
    Param {
        key: "learning_rate",
        axis: "learning rate",
        show: |s| format!("{:e}", s.learning_rate),
        order: |s| s.learning_rate,
    },
];

/// A grid point's spec.
fn spec(row: &pb::ResultRow) -> pb::TrialSpec {
    row.spec.clone().unwrap_or_default()
}

/// The parameters with more than one value among the rows, in [`PARAMS`] order.
fn swept(rows: &[pb::ResultRow]) -> Vec<&'static Param> {
    PARAMS
        .iter()
        .filter(|p| {
            let mut values: Vec<String> = rows.iter().map(|r| (p.show)(&spec(r))).collect();
            values.sort();
            values.dedup();
            values.len() > 1
        })
        .collect()
}

/// The distinct values of `param` among the rows, in its order.
fn values_of(param: &Param, rows: &[pb::ResultRow]) -> Vec<String> {
    let mut values: Vec<(f64, String)> = rows
        .iter()
        .map(|r| ((param.order)(&spec(r)), (param.show)(&spec(r))))
        .collect();
    values.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    values.dedup_by(|a, b| a.1 == b.1);
    values.into_iter().map(|(_, v)| v).collect()
}

/// A point named by the given parameters' values ("batch size 64, learning rate 1e-3").
fn label(params: &[&Param], s: &pb::TrialSpec) -> String {
    params
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p.axis.split(" (").next().unwrap_or(p.axis),
                (p.show)(s)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A job's grid point: every hyperparameter but the seed.
fn point_key(s: &pb::TrialSpec) -> (String, String, u32, u32, u64) {
    (
        s.model.clone(),
        s.optimizer.clone(),
        s.batch_size,
        s.max_epochs,
        s.learning_rate.to_bits(),
    )
}

/// A figure's title, saying so when the data is synthetic (a figure travels without its page).
fn titled(inputs: &Inputs, title: &str) -> String {
    match &inputs.results.dataset {
        Some(d) if d.synthetic => format!("{title} (synthetic data)"),
        _ => title.to_string(),
    }
}

/// Test accuracy at the best epoch against each swept parameter, one line per combination of the
/// others.
fn accuracy_figures(inputs: &Inputs, swept: &[&'static Param]) -> anyhow::Result<Vec<Figure>> {
    let rows = &inputs.results.rows;
    let mut out = Vec::new();
    for param in swept {
        let categories = values_of(param, rows);
        let others: Vec<&Param> = swept
            .iter()
            .copied()
            .filter(|p| p.key != param.key)
            .collect();
        let mut series: Vec<Series> = Vec::new();
        for row in rows.iter() {
            let Some(mean_best_test_acc) = row.mean_best_test_acc else {
                continue;
            };
            let s = spec(row);
            let name = label(&others, &s);
            let x = categories
                .iter()
                .position(|v| *v == (param.show)(&s))
                .expect("every value is a category") as f64;
            let point = (
                x,
                100.0 * mean_best_test_acc,
                row.std_best_test_acc.map(|s| 100.0 * s),
            );
            match series.iter_mut().find(|l| l.label == name) {
                Some(line) => line.points.push(point),
                None => series.push(Series {
                    label: name,
                    points: vec![point],
                }),
            }
        }
        let lines = series.len();
        series.truncate(MAX_LINES);
        for line in &mut series {
            line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let mut caption = format!(
            "Mean test accuracy at each seed's best epoch (lowest validation loss) against {}; error bars are ± one standard deviation over the finished seeds. Points with no finished seed are not drawn.",
            param.axis
        );
        if lines > MAX_LINES {
            caption += &format!(" The first {MAX_LINES} of {lines} lines are drawn.");
        }
        out.push(
            LineChart {
                title: titled(inputs, &format!("Test accuracy vs {}", param.axis)),
                x_label: param.axis.into(),
                y_label: "test accuracy at the best epoch (%)".into(),
                x: XAxis::Categories(categories),
                series,
                lines: Joined::All,
            }
            .figure(&format!("accuracy-vs-{}", param.key), caption)?,
        );
    }
    Ok(out)
}

/// Mean over a point's seeds of one number per epoch: `(epoch, mean)` for each epoch any seed
/// reported.
fn mean_curve(
    curves: &[&Vec<pb::EpochMetrics>],
    value: fn(&pb::EpochMetrics) -> f64,
) -> Vec<(f64, f64, Option<f64>)> {
    let mut by_epoch: std::collections::BTreeMap<u32, Vec<f64>> = Default::default();
    for curve in curves {
        for m in curve.iter() {
            by_epoch.entry(m.epoch).or_default().push(value(m));
        }
    }
    by_epoch
        .into_iter()
        .map(|(epoch, xs)| {
            (
                f64::from(epoch),
                xs.iter().sum::<f64>() / xs.len() as f64,
                None,
            )
        })
        .collect()
}

/// Learning curves per grid point (mean over its seeds): test accuracy and validation loss per
/// epoch; at most [`MAX_LINES`] points, those with the lowest validation loss.
fn curve_figures(inputs: &Inputs, swept: &[&'static Param]) -> anyhow::Result<Vec<Figure>> {
    let rows = &inputs.results.rows;
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| rows[i].mean_best_val_loss.unwrap_or(f64::INFINITY);
        key(a).total_cmp(&key(b)).then(a.cmp(&b))
    });
    order.truncate(MAX_LINES);
    order.sort();
    let mut seeds_of: HashMap<_, Vec<&Vec<pb::EpochMetrics>>> = HashMap::new();
    for job in &inputs.jobs {
        if let (Some(s), Some(curve)) = (&job.spec, inputs.curves.get(&job.job_id)) {
            seeds_of.entry(point_key(s)).or_default().push(curve);
        }
    }
    let lines = |value: fn(&pb::EpochMetrics) -> f64| -> Vec<Series> {
        order
            .iter()
            .filter_map(|&i| {
                let s = spec(&rows[i]);
                let curves = seeds_of.get(&point_key(&s))?;
                let name = if swept.is_empty() {
                    "mean over seeds".to_string()
                } else {
                    label(swept, &s)
                };
                Some(Series {
                    label: name,
                    points: mean_curve(curves, value),
                })
            })
            .collect()
    };
    let mut caption = "Per grid point, the mean over its seeds at each epoch (each epoch as the latest attempt reported it).".to_string();
    if rows.len() > MAX_LINES {
        caption += &format!(
            " The {MAX_LINES} of {} grid points with the lowest validation loss are drawn.",
            rows.len()
        );
    }
    Ok(vec![
        LineChart {
            title: titled(inputs, "Learning curves: test accuracy"),
            x_label: "epoch".into(),
            y_label: "test accuracy (%)".into(),
            x: XAxis::Integers,
            series: lines(|m| 100.0 * m.test_acc),
            lines: Joined::All,
        }
        .figure("curves-test-accuracy", caption.clone())?,
        LineChart {
            title: titled(inputs, "Learning curves: validation loss"),
            x_label: "epoch".into(),
            y_label: "validation loss (cross-entropy)".into(),
            x: XAxis::Integers,
            series: lines(|m| m.val_loss),
            lines: Joined::All,
        }
        .figure("curves-validation-loss", caption)?,
    ])
}

/// When exactly two parameters vary: mean best-epoch test accuracy over their grid.
fn heat_map(inputs: &Inputs, swept: &[&'static Param]) -> anyhow::Result<Option<Figure>> {
    let [px, py] = swept else {
        return Ok(None);
    };
    let rows = &inputs.results.rows;
    let (xs, ys) = (values_of(px, rows), values_of(py, rows));
    // Each cell carries its number as text: beyond this many cells they cannot be read.
    if xs.len() * ys.len() > MAX_HEAT_CELLS {
        return Ok(None);
    }
    let mut cells = vec![vec![None; xs.len()]; ys.len()];
    let mut marked = None;
    for (i, row) in rows.iter().enumerate() {
        let s = spec(row);
        let x = xs
            .iter()
            .position(|v| *v == (px.show)(&s))
            .expect("a value");
        let y = ys
            .iter()
            .position(|v| *v == (py.show)(&s))
            .expect("a value");
        if let Some(mean) = row.mean_best_test_acc {
            cells[y][x] = Some((
                100.0 * mean,
                crate::client::render::words::pct(row.mean_best_test_acc, row.std_best_test_acc),
            ));
        }
        if i as i32 == inputs.results.best {
            marked = Some((x, y));
        }
    }
    Ok(Some(
        HeatMap {
            title: titled(inputs, &format!("Test accuracy over {} × {}", px.axis, py.axis)),
            x_label: px.axis.into(),
            y_label: py.axis.into(),
            x_values: xs,
            y_values: ys,
            cells,
            marked,
            value_label: "test acc. (%)".into(),
        }
        .figure(
            "heatmap",
            "Mean test accuracy (%) at each seed's best epoch ± one standard deviation over seeds; the outlined cell is the best point (lowest validation loss).".into(),
        )?,
    ))
}

/// Training seconds of every finished job, one column of dots per grid point (numbered as in the
/// tables).
fn time_figure(inputs: &Inputs) -> anyhow::Result<Figure> {
    let rows = &inputs.results.rows;
    let index: HashMap<_, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (point_key(&spec(r)), i))
        .collect();
    let mut points = Vec::new();
    for job in &inputs.jobs {
        if let (Some(s), Some(summary)) = (&job.spec, &job.summary)
            && let Some(&i) = index.get(&point_key(s))
        {
            points.push((i as f64, summary.train_seconds, None));
        }
    }
    LineChart {
        title: titled(inputs, "Training time per job"),
        x_label: "grid point (# in the tables)".into(),
        y_label: "training time (s)".into(),
        x: XAxis::Categories((1..=rows.len()).map(|i| i.to_string()).collect()),
        series: vec![Series {
            label: String::new(),
            points,
        }],
        lines: Joined::None,
    }
    .figure(
        "training-time",
        "Seconds each finished job spent in training passes (evaluation not counted), one dot per seed.".into(),
    )
}

/// The points on the Pareto front of accuracy against size: with `(params, accuracy)` per point,
/// the indices of those no smaller-or-equal model matches or beats (by size, then accuracy).
pub fn pareto_front(points: &[(usize, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        points[a]
            .0
            .cmp(&points[b].0)
            .then(points[b].1.total_cmp(&points[a].1))
    });
    let mut best = f64::NEG_INFINITY;
    let mut front = Vec::new();
    for i in order {
        if points[i].1 > best {
            best = points[i].1;
            front.push(i);
        }
    }
    front
}

/// Test accuracy (best epoch, mean ± std over seeds) against trainable parameters on a log scale,
/// the Pareto front marked: for a sweep of models of more than one size (the lab's questions 4-5).
fn size_figure(inputs: &Inputs) -> anyhow::Result<Option<Figure>> {
    let rows: Vec<(usize, f64, Option<f64>)> = inputs
        .results
        .rows
        .iter()
        .filter_map(|r| {
            let params = model_params(&spec(r).model);
            r.mean_best_test_acc
                .filter(|_| params > 0)
                .map(|m| (params, 100.0 * m, r.std_best_test_acc.map(|s| 100.0 * s)))
        })
        .collect();
    let sizes: std::collections::BTreeSet<usize> = rows.iter().map(|r| r.0).collect();
    if sizes.len() < 2 {
        return Ok(None);
    }
    let front = pareto_front(&rows.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>());
    let point = |r: &(usize, f64, Option<f64>)| ((r.0 as f64).log10(), r.1, r.2);
    let mut on_front: Vec<_> = front.iter().map(|&i| point(&rows[i])).collect();
    on_front.sort_by(|a, b| a.0.total_cmp(&b.0));
    let others: Vec<_> = (0..rows.len())
        .filter(|i| !front.contains(i))
        .map(|i| point(&rows[i]))
        .collect();
    let mut series = vec![Series {
        label: "Pareto front: no smaller model is as accurate".into(),
        points: on_front,
    }];
    if !others.is_empty() {
        series.push(Series {
            label: "other points".into(),
            points: others,
        });
    }
    Ok(Some(
        LineChart {
            title: titled(inputs, "Test accuracy vs trainable parameters"),
            x_label: "trainable parameters (log scale)".into(),
            y_label: "test accuracy at the best epoch (%)".into(),
            x: XAxis::Log10,
            series,
            lines: Joined::First,
        }
        .figure(
            "accuracy-vs-parameters",
            "Each grid point's mean test accuracy at its seeds' best epoch (lowest validation loss) against its model's trainable parameters; error bars are ± one standard deviation over the finished seeds. Points on the Pareto front, joined by its line, are those no point with as few or fewer parameters matches.".into(),
        )?,
    ))
}

/// Every figure of the report, in the order the pages show them; `swept` are the parameters that
/// vary.
fn figures(inputs: &Inputs, swept: &[&'static Param]) -> anyhow::Result<Vec<Figure>> {
    let mut out = accuracy_figures(inputs, swept)?;
    out.extend(size_figure(inputs)?);
    out.extend(heat_map(inputs, swept)?);
    if inputs.results.rows.iter().any(|r| r.seeds > 0) {
        out.extend(curve_figures(inputs, swept)?);
        out.push(time_figure(inputs)?);
    }
    Ok(out)
}

/// Writes the report into `dir` (created if missing); returns the files written.
pub fn write(dir: &Path, inputs: &Inputs) -> anyhow::Result<Vec<PathBuf>> {
    let figure_dir = dir.join("figures");
    std::fs::create_dir_all(&figure_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", figure_dir.display()))?;
    let swept = swept(&inputs.results.rows);
    let figures = figures(inputs, &swept)?;
    let mut written = Vec::new();
    let mut put = |path: PathBuf, bytes: &[u8]| -> anyhow::Result<()> {
        std::fs::write(&path, bytes)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        written.push(path);
        Ok(())
    };
    for f in &figures {
        put(figure_dir.join(format!("{}.svg", f.name)), f.svg.as_bytes())?;
        put(figure_dir.join(format!("{}.png", f.name)), &f.png)?;
    }
    put(
        dir.join("results.json"),
        format!(
            "{}\n",
            crate::client::render::json::document_text(&inputs.results, true)
        )
        .as_bytes(),
    )?;
    put(
        dir.join("report.md"),
        pages::markdown(inputs, &swept, &figures).as_bytes(),
    )?;
    put(
        dir.join("report.html"),
        pages::html(inputs, &swept, &figures).as_bytes(),
    )?;
    Ok(written)
}

#[cfg(test)]
mod pareto_tests {
    use super::pareto_front;

    #[test]
    fn the_front_holds_each_point_no_smaller_model_matches() {
        // (params, accuracy): 117 at 70; 117 at 68 (same size, worse); 327 at 69 (bigger, worse);
        // 327 at 72; 5615 at 72 (bigger, only as good); 5615 at 75.
        let points = [
            (117, 70.0),
            (117, 68.0),
            (327, 69.0),
            (327, 72.0),
            (5615, 72.0),
            (5615, 75.0),
        ];
        let mut front = pareto_front(&points);
        front.sort();
        assert_eq!(front, vec![0, 3, 5]);
        assert!(pareto_front(&[]).is_empty());
    }
}

// jetsweep dashboard: the three pages' scripts. Plain JavaScript, no build step; charts by uPlot.
"use strict";
const jetsweep = (() => {
  const $ = (sel) => document.querySelector(sel);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const pct = (x) => (x == null ? "—" : (100 * x).toFixed(2));
  const when = (ms) => new Date(ms).toLocaleString();
  // A learning rate or weight decay as every jetsweep table writes it: 1e-3, 3.16e-3, 0.
  const real = (x) => (x === 0 ? "0" : x.toExponential(2).replace(/\.?0+e/, "e").replace("e+", "e"));
  const TABLE_ROWS = 500; // trial rows laid out at once
  const CURVES_FETCHED = 600; // trials whose curves a sweep page reads (the first in grid order)
  const POINTS_SHOWN = 10; // grid points whose curves are drawn
  const COLORS = ["#1f5fbf", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285", "#5c940d", "#e67700", "#364fc7", "#a61e4d"];

  async function getJson(url) {
    const r = await fetch(url, { headers: { accept: "application/json" } });
    if (r.status === 401) { location.href = "/login"; throw new Error("log in first"); }
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }

  function status(text, error) {
    const el = $("#status");
    el.textContent = text;
    el.className = error ? "s-failed" : "muted";
  }

  function progress(s) {
    const w = (n) => (s.total ? (100 * n) / s.total : 0);
    return `<span class="bar" title="${s.done} done, ${s.running} running, ${s.failed} failed of ${s.total}">` +
      `<span style="width:${w(s.done)}%;background:#2b8a3e"></span>` +
      `<span style="width:${w(s.failed)}%;background:#b42318"></span>` +
      `<span style="width:${w(s.running)}%;background:#1f5fbf"></span></span>`;
  }

  function dataLabel(d) {
    if (!d) return "";
    return `${esc(d.spec)}${d.synthetic ? " <b>(synthetic)</b>" : ""} <span class="muted">${esc(d.sha256.slice(0, 12))}</span>`;
  }

  // A duration in seconds as people read it: 42 s, 3.5 min, 2.1 h.
  const dur = (sec) => sec == null ? "—" : sec < 90 ? `${sec.toFixed(0)} s` : sec < 5400 ? `${(sec / 60).toFixed(1)} min` : `${(sec / 3600).toFixed(1)} h`;

  // ---- /: the sweeps, newest first, a page at a time ----
  async function sweepsPage() {
    const PAGE = 50;
    const from = Math.max(0, Number(new URLSearchParams(location.search).get("from")) || 0);
    const load = async () => {
      try {
        const page = await getJson(`/api/sweeps?from=${from}&limit=${PAGE}`);
        $("#sweeps tbody").innerHTML = page.sweeps.map((s) =>
          `<tr data-sweep="${esc(s.id)}"><td><a href="/sweeps/${encodeURIComponent(s.id)}">${esc(s.id)}</a></td>` +
          `<td class="s-${s.state}">${s.state}</td><td>${progress(s)}</td>` +
          `<td>${s.done}/${s.total} done${[[s.running, "running"], [s.queued, "queued"], [s.failed, "failed"], [s.cancelled, "cancelled"]]
            .filter(([n]) => n).map(([n, w]) => ` · <span class="s-${w}">${n} ${w}</span>`).join("")}</td>` +
          `<td class="num">${dur(s.compute_seconds)}</td><td class="num">${s.running ? dur(s.eta_seconds) : "—"}</td>` +
          `<td class="num" title="the finished trial with the lowest validation loss: its test accuracy at the best epoch">${pct(s.best_test_acc)}</td>` +
          `<td class="data">${dataLabel(s.dataset)}</td><td>${when(s.created_ms)}</td></tr>`).join("");
        const pages = [];
        if (from > 0) pages.push(`<a href="/?from=${Math.max(0, from - PAGE)}">← newer</a>`);
        if (page.next != null) pages.push(`<a href="/?from=${page.next}">older →</a>`);
        $("#pages").innerHTML = pages.join(" · ");
        const last = from + page.sweeps.length;
        status(`${page.total ? `sweeps ${from + 1}–${last} of ${page.total}` : "no sweeps yet"} · updated ${new Date().toLocaleTimeString()}`);
      } catch (e) { status(`could not load the sweeps: ${e.message}`, true); }
    };
    await load();
    setInterval(load, 3000);
  }

  // ---- /workers ----
  // A worker's state: its colour and what it means. Workers silent for an hour are forgotten.
  const WORKER_STATE = {
    alive: ["s-done", "heard from within the last ten heartbeats"],
    left: ["muted", "exited cleanly: finished, idle or stopped by a signal"],
    gone: ["s-failed", "silent without a goodbye: crashed, killed or cut off"],
  };
  async function workersPage() {
    const load = async () => {
      try {
        const workers = await getJson("/api/workers");
        $("#workers tbody").innerHTML = workers.map((w) =>
          `<tr><td>${esc(w.name)}</td><td>${esc(w.host)}</td><td>${esc(w.device)}</td>` +
          `<td class="num">${w.slots}</td><td class="num">${w.jobs.length}</td><td class="num">${w.jobs_last_hour}</td><td>${when(w.last_seen_ms)}</td>` +
          `<td class="${WORKER_STATE[w.state][0]}" title="${WORKER_STATE[w.state][1]}">${w.state}</td></tr>`).join("");
        status(`${workers.length} workers · updated ${new Date().toLocaleTimeString()}`);
      } catch (e) { status(`could not load the workers: ${e.message}`, true); }
    };
    await load();
    setInterval(load, 3000);
  }

  // ---- /sweeps/ID ----
  function lineChart(target, title, xLabel, yLabel, xs, series, opts = {}) {
    const el = document.createElement("div");
    el.className = "chart";
    el.innerHTML = `<h3>${esc(title)}</h3>`;
    target.appendChild(el);
    const plotted = [{ label: xLabel }].concat(series.map((s, i) => ({
      label: s.label,
      stroke: s.color || COLORS[i % COLORS.length],
      dash: s.dash,
      width: s.width || 1.5,
      points: { show: xs.length < 30 },
      spanGaps: false,
    })));
    const xAxis = { label: xLabel };
    const xScale = { time: false, distr: opts.logX ? 3 : 1 };
    if (opts.categories) {
      // Categories at 0, 1, 2, …: a tick at each, named.
      xAxis.splits = () => opts.categories.map((_, i) => i);
      xAxis.values = (u, splits) => splits.map((i) => opts.categories[i] ?? "");
      xScale.range = () => [-0.5, opts.categories.length - 0.5];
    }
    // Whole-number steps (epochs): no tick at 1.5.
    if (opts.integerX) xAxis.incrs = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];
    const yScale = opts.yRange ? { range: () => opts.yRange } : {};
    const plot = new uPlot({
      width: opts.width || 420, height: 260,
      scales: { x: xScale, y: yScale },
      axes: [xAxis, { label: yLabel, size: 60 }],
      legend: { show: series.length <= 12, live: false },
      series: plotted,
      plugins: opts.plugins || [],
    }, [xs].concat(series.map((s) => s.values)), el);
    return plot;
  }

  // A uPlot plugin drawing ± error bars: `series[k].err[i]` around `series[k].values[i]`.
  function errorBars(xs, series) {
    return {
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx;
          const px = devicePixelRatio || 1;
          ctx.save();
          series.forEach((s, k) => {
            if (!s.err || !u.series[k + 1].show) return;
            ctx.strokeStyle = s.color;
            ctx.lineWidth = 1.5 * px;
            ctx.beginPath();
            xs.forEach((x, i) => {
              const m = s.values[i], e = s.err[i];
              if (m == null || e == null) return;
              const cx = u.valToPos(x, "x", true);
              const lo = u.valToPos(m - e, "y", true), hi = u.valToPos(m + e, "y", true);
              const w = 5 * px;
              ctx.moveTo(cx, lo); ctx.lineTo(cx, hi);
              ctx.moveTo(cx - w, lo); ctx.lineTo(cx + w, lo);
              ctx.moveTo(cx - w, hi); ctx.lineTo(cx + w, hi);
            });
            ctx.stroke();
          });
          ctx.restore();
        }],
      },
    };
  }

  // ---- learning curves by grid point ----
  // A trial's grid point: its configuration without the seed.
  const pointKey = (j) => [j.model, j.optimizer, j.batch_size, j.max_epochs, j.learning_rate, j.weight_decay].join("|");
  // The parts of a configuration a sweep varies, as every table writes them.
  const CONFIG = [
    { key: "model", show: (j) => j.model },
    { key: "optimizer", show: (j) => j.optimizer },
    { key: "batch_size", show: (j) => `batch ${j.batch_size}` },
    { key: "max_epochs", show: (j) => `${j.max_epochs} epochs` },
    { key: "learning_rate", show: (j) => `lr ${real(j.learning_rate)}` },
    { key: "weight_decay", show: (j) => `wd ${real(j.weight_decay)}` },
  ];
  const pointLabel = (j, varied) => varied.map((c) => c.show(j)).join(" · ") || "every trial";
  const EPOCH_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

  // Mean and ± one standard deviation over seeds, epoch by epoch (an epoch no seed reached is a
  // gap; one seed has no spread).
  function meanBand(curves, key, scale, xs) {
    const mean = [], lo = [], hi = [];
    xs.forEach((x) => {
      const v = curves.flatMap((c) => c.filter((m) => m.epoch === x).map((m) => m[key] * scale));
      if (!v.length) { mean.push(null); lo.push(null); hi.push(null); return; }
      const m = v.reduce((a, b) => a + b, 0) / v.length;
      const sd = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1)) : 0;
      mean.push(m); lo.push(m - sd); hi.push(m + sd);
    });
    return { mean, lo, hi };
  }

  // One curve's values at epochs `xs` (a gap where it reported none).
  const valuesAt = (curve, key, scale, xs) => {
    const at = new Map(curve.map((m) => [m.epoch, m[key] * scale]));
    return xs.map((x) => at.get(x) ?? null);
  };

  // One chart of grouped curves: for each group its mean line over a shaded ± std band, and its
  // seeds' own curves (hidden unless `seedsShown`). uPlot's legend is off: the page has one legend
  // for all charts. Returns the plot and, per group, the indexes of its series.
  function groupedChart(target, title, yLabel, xs, groups) {
    const el = document.createElement("div");
    el.className = "chart";
    el.innerHTML = `<h3>${esc(title)}</h3>`;
    target.appendChild(el);
    const series = [{ label: "epoch" }], data = [xs], bands = [], index = [];
    const add = (s, values) => { series.push({ points: { show: false }, spanGaps: false, ...s }); data.push(values); return series.length - 1; };
    for (const g of groups) {
      const at = {};
      if (g.band) {
        at.hi = add({ label: `${g.label} + std`, stroke: "rgba(0,0,0,0)", width: 1 }, g.band.hi);
        at.lo = add({ label: `${g.label} − std`, stroke: "rgba(0,0,0,0)", width: 1 }, g.band.lo);
        bands.push({ series: [at.hi, at.lo], fill: `${g.color}26` });
      }
      at.seeds = (g.seeds || []).map((c) => add({ label: c.label, stroke: c.color || g.color, width: c.width || 1, dash: c.dash, show: !!g.seedsShown }, c.values));
      if (g.mean) at.mean = add({ label: g.label, stroke: g.color, width: g.width || 2, dash: g.dash, points: { show: xs.length < 30, size: 4 } }, g.mean);
      index.push(at);
    }
    const plot = new uPlot({
      width: 315, height: 240,
      scales: { x: { time: false } },
      axes: [{ label: "epoch", incrs: EPOCH_STEPS }, { label: yLabel, size: 60 }],
      legend: { show: false },
      focus: { alpha: 0.25 },
      cursor: { focus: { prox: 12 } },
      series, bands,
    }, data, el);
    return { plot, index };
  }

  // The four charts of a set of groups.
  const CHARTS = [
    ["test accuracy", "accuracy (%)", "test_acc", 100],
    ["validation accuracy", "accuracy (%)", "val_acc", 100],
    ["validation loss", "cross-entropy", "val_loss", 1],
    ["training loss", "cross-entropy", "train_loss", 1],
  ];

  // The sweep's learning curves, one colour per grid point: the mean over its seeds with a band of
  // ± one standard deviation; hovering (or clicking) a legend entry shows that point's seeds. With
  // more points than fit, the ones with the lowest mean validation loss so far.
  function curvesCharts(curves, jobs) {
    const target = $("#curves"), legend = $("#curves-legend"), note = $("#curves-note");
    target.innerHTML = ""; legend.innerHTML = ""; note.textContent = "";
    const ids = Object.keys(curves);
    let epochs = 0;
    for (const id of ids) epochs += curves[id].length;
    target.dataset.jobs = ids.length;
    target.dataset.points = epochs;
    if (!ids.length) { target.innerHTML = `<p class="muted">no epoch reported yet</p>`; return; }
    const varied = CONFIG.filter((c) => new Set(jobs.map(c.show)).size > 1);
    // Points in grid order, each with the trials that reported.
    const byPoint = new Map();
    for (const j of jobs) {
      if (!curves[j.id]) continue;
      const k = pointKey(j);
      if (!byPoint.has(k)) byPoint.set(k, { label: pointLabel(j, varied), trials: [] });
      byPoint.get(k).trials.push(j);
    }
    let points = [...byPoint.values()];
    const all = points.length;
    const maxEpoch = Math.max(1, ...points.flatMap((p) => p.trials.map((j) => j.max_epochs)));
    const xs = Array.from({ length: maxEpoch }, (_, i) => i + 1);
    if (all > POINTS_SHOWN) {
      const lowest = (p) => Math.min(...meanBand(p.trials.map((j) => curves[j.id]), "val_loss", 1, xs).mean.filter((v) => v != null));
      points = points.map((p) => [lowest(p), p]).sort((a, b) => a[0] - b[0]).slice(0, POINTS_SHOWN).map((e) => e[1]);
      note.textContent = `the ${POINTS_SHOWN} of ${all} grid points with the lowest mean validation loss so far (every point: the results table below)`;
    }
    target.dataset.groups = points.length;
    const pinned = new Set();
    const charts = CHARTS.map(([title, yLabel, key, scale]) => groupedChart(target, title, yLabel, xs,
      points.map((p, g) => {
        const band = meanBand(p.trials.map((j) => curves[j.id]), key, scale, xs);
        const running = p.trials.some((j) => j.state === "running");
        return {
          label: p.label, color: COLORS[g % COLORS.length], dash: running ? [6, 3] : undefined,
          band: p.trials.length > 1 ? band : null,
          mean: band.mean,
          seeds: p.trials.map((j) => ({ label: `seed ${j.seed}`, values: valuesAt(curves[j.id], key, scale, xs) })),
        };
      })));
    const show = (g, on) => charts.forEach(({ plot, index }) => {
      index[g].seeds.forEach((i) => plot.setSeries(i, { show: on || pinned.has(g) }));
      plot.setSeries(on ? index[g].mean : null, { focus: true });
    });
    legend.innerHTML = points.map((p, g) => {
      const seeds = p.trials.length;
      return `<span class="legend-item" data-group="${g}" title="hover: this point's seeds; click: keep them shown">` +
        `<i style="background:${COLORS[g % COLORS.length]}"></i>${esc(p.label)} <span class="muted">(${seeds} seed${seeds === 1 ? "" : "s"})</span></span>`;
    }).join("");
    legend.querySelectorAll(".legend-item").forEach((el) => {
      const g = Number(el.dataset.group);
      el.addEventListener("mouseenter", () => show(g, true));
      el.addEventListener("mouseleave", () => show(g, false));
      el.addEventListener("click", () => { if (pinned.has(g)) pinned.delete(g); else pinned.add(g); el.classList.toggle("pinned", pinned.has(g)); show(g, true); });
    });
  }

  // The hyperparameters a grid can sweep: how to name a value, and the order values sort in.
  const PARAMS = [
    { key: "model", axis: "model (parameters)", show: (r) => (r.parameters == null ? r.model : `${r.model} (${r.parameters})`), order: (r) => r.parameters ?? 0 },
    { key: "optimizer", axis: "optimizer", show: (r) => r.optimizer, order: (r) => r.optimizer },
    { key: "batch_size", axis: "batch size", show: (r) => String(r.batch_size), order: (r) => r.batch_size },
    { key: "max_epochs", axis: "epochs", show: (r) => String(r.max_epochs), order: (r) => r.max_epochs },
    { key: "learning_rate", axis: "learning rate", show: (r) => real(r.learning_rate), order: (r) => r.learning_rate },
  ];
  const sweptParams = (rows) => PARAMS.filter((p) => new Set(rows.map(p.show)).size > 1);
  const valuesOf = (p, rows) => {
    const seen = new Map();
    for (const r of rows) seen.set(p.show(r), p.order(r));
    return [...seen.entries()].sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)).map((e) => e[0]);
  };
  // mean ± std over seeds; one seed has no spread (± –).
  const pm = (mean, std, f) => (mean == null ? "—" : `${f(mean)} ± ${std == null ? "–" : f(std)}`);
  const pct2 = (x) => (100 * x).toFixed(2);

  // The grid points: seeds by state, the numbers over finished seeds, the best (chosen on validation) and its ties.
  function resultsTable(results) {
    const rows = results.rows;
    const note = (r) => [r.failed && `${r.failed} failed`, r.cancelled && `${r.cancelled} cancelled`, r.pending && `${r.pending} to go`].filter(Boolean).join(", ");
    const mark = (r) => (r.best ? (r.tie ? "best (tied)" : "best") : r.tie ? "tie" : "");
    // Like the trials, a window of the points: the first TABLE_ROWS in grid order.
    $("#points-note").textContent = rows.length > TABLE_ROWS
      ? `the first ${TABLE_ROWS} of ${rows.length} grid points (every point: jetsweep results ID, or the report)`
      : "";
    $("#points tbody").innerHTML = rows.slice(0, TABLE_ROWS).map((r, i) =>
      `<tr class="${r.best ? "best" : ""}" data-point="${i}"><td class="num">${i + 1}</td><td>${esc(r.model)}</td><td class="num">${r.parameters ?? "—"}</td><td class="num">${r.batch_size}</td>` +
      `<td class="num">${r.max_epochs}</td><td class="num">${real(r.learning_rate)}</td>` +
      `<td class="num">${r.seeds}/${r.seeds + r.failed + r.cancelled + r.pending}</td><td class="${r.failed ? "s-failed" : "muted"}">${note(r)}</td>` +
      `<td class="num">${pm(r.mean_test_acc, r.std_test_acc, pct2)}</td><td class="num">${pm(r.mean_best_test_acc, r.std_best_test_acc, pct2)}</td>` +
      `<td class="num">${pm(r.mean_best_val_loss, r.std_best_val_loss, (x) => x.toFixed(4))}</td>` +
      `<td class="num">${pm(r.mean_train_seconds, r.std_train_seconds, (x) => (x > 0 && x < 1 ? x.toPrecision(2) : x.toFixed(2)))}</td><td><b>${mark(r)}</b></td></tr>`).join("");
    $("#hints").innerHTML = results.hints.map((h) => `<p class="hint">hint: ${esc(h)}</p>`).join("");
  }

  // Early stopping rung by rung, and the trial-epochs trained against a full run.
  function stoppingTable(st) {
    if (!st.rule || st.rule === "none") return;
    $("#stopping-section").hidden = false;
    const rule = st.rule === "median" ? `the median rule on the seed mean of ${st.metric}`
      : `${st.mode} successive halving on the seed mean of ${st.metric}, eta ${st.eta}`;
    const share = st.full_epochs ? Math.round((100 * st.trial_epochs) / st.full_epochs) : 0;
    $("#stopping-rule").textContent = `${rule} · trial-epochs trained: ${st.trial_epochs} of the ${st.full_epochs} a full run takes (${share} %)`;
    const cut = (r) => r.cutoff_low == null ? "-" : r.cutoff_high - r.cutoff_low < 5e-5
      ? r.cutoff_low.toFixed(4) : `${r.cutoff_low.toFixed(4)} – ${r.cutoff_high.toFixed(4)}`;
    $("#stopping tbody").innerHTML = st.rungs.map((r) =>
      `<tr><td class="num">${r.rung}</td><td class="num">${r.judged}</td><td class="num">${r.went_on}</td>` +
      `<td class="num">${r.stopped}</td><td class="num">${r.paused}</td><td class="num">${cut(r)}</td></tr>`).join("");
  }

  // Best-epoch test accuracy against each swept parameter: one line per combination of the others,
  // ± one standard deviation over seeds as error bars; a point no seed finished is not drawn.
  function paramCharts(results) {
    const target = $("#params");
    target.innerHTML = "";
    const rows = results.rows;
    resultsTable(results);
    const finished = rows.filter((r) => r.mean_best_test_acc != null);
    if (!finished.length) { target.innerHTML = `<p class="muted">no trial finished yet</p>`; return; }
    const swept = sweptParams(rows);
    for (const p of swept) {
      const names = valuesOf(p, rows);
      const others = swept.filter((o) => o !== p);
      const lines = new Map();
      for (const r of finished) {
        const label = others.map((o) => `${o.axis} ${o.show(r)}`).join(", ") || "mean over seeds";
        const line = lines.get(label) || { label, values: names.map(() => null), err: names.map(() => null) };
        const i = names.indexOf(p.show(r));
        line.values[i] = 100 * r.mean_best_test_acc;
        line.err[i] = 100 * r.std_best_test_acc;
        lines.set(label, line);
      }
      const series = [...lines.values()].slice(0, 10).map((l, i) => ({ ...l, color: COLORS[i % COLORS.length], width: 2 }));
      const all = series.flatMap((l) => l.values.flatMap((m, i) => (m == null ? [] : [m - l.err[i], m + l.err[i]])));
      const lo = Math.min(...all), hi = Math.max(...all), pad = Math.max(0.5, 0.08 * (hi - lo));
      const xs = names.map((_, i) => i);
      lineChart(target, `best-epoch test accuracy vs ${p.axis} (± std over seeds)`, p.axis, "test accuracy (%)", xs, series,
        { categories: names, yRange: [lo - pad, hi + pad], plugins: [errorBars(xs, series)] });
    }
    // A heat map of more cells than fit a screen says nothing: the table and charts do.
    if (swept.length === 2 && valuesOf(swept[0], rows).length * valuesOf(swept[1], rows).length <= 1600) heatMap(target, rows, swept);
    if (swept.length >= 3) parallelCoordinates(target, rows, swept);
    if (new Set(finished.map((r) => r.parameters)).size > 1) sizeChart(target, finished);
    if (!swept.length) target.insertAdjacentHTML("beforeend", `<p class="muted">one grid point: nothing to compare</p>`);
  }

  // A colour from light (0) to dark (1), as the report's heat map.
  const shade = (t) => `rgb(${Math.round(237 - 229 * t)},${Math.round(248 - 184 * t)},${Math.round(233 - 104 * t)})`;

  // Two swept parameters: best-epoch test accuracy over their grid; the best point outlined.
  function heatMap(target, rows, [px, py]) {
    const xs = valuesOf(px, rows), ys = valuesOf(py, rows);
    const vals = rows.filter((r) => r.mean_best_test_acc != null).map((r) => r.mean_best_test_acc);
    const lo = Math.min(...vals), hi = Math.max(...vals);
    const cell = (r) => {
      if (!r || r.mean_best_test_acc == null) return `<td class="muted">${r ? "not finished" : "—"}</td>`;
      const t = hi > lo ? (r.mean_best_test_acc - lo) / (hi - lo) : 0.5;
      return `<td class="num${r.best ? " best-cell" : ""}" style="background:${shade(t)};color:${t > 0.55 ? "#fff" : "#000"}">` +
        `${pm(r.mean_best_test_acc, r.std_best_test_acc, pct2)}</td>`;
    };
    const at = new Map(rows.map((r) => [`${px.show(r)}|${py.show(r)}`, r]));
    const el = document.createElement("div");
    el.className = "chart";
    el.id = "heatmap";
    el.innerHTML = `<h3>best-epoch test accuracy (%) over ${esc(px.axis)} × ${esc(py.axis)}</h3>` +
      `<table class="heat"><thead><tr><th>${esc(py.axis)} \\ ${esc(px.axis)}</th>${xs.map((x) => `<th class="num">${esc(x)}</th>`).join("")}</tr></thead><tbody>` +
      ys.map((y) => `<tr><th>${esc(y)}</th>${xs.map((x) => cell(at.get(`${x}|${y}`))).join("")}</tr>`).join("") +
      `</tbody></table><p class="muted">outlined: the best point (lowest validation loss)</p>`;
    target.appendChild(el);
  }

  // The grid points no point with as few or fewer parameters matches in accuracy (the report's
  // Pareto front): by parameters, then best accuracy first.
  function paretoFront(rows) {
    const sorted = rows.slice().sort((a, b) => a.parameters - b.parameters || b.mean_best_test_acc - a.mean_best_test_acc);
    const front = [];
    for (const r of sorted) if (!front.length || r.mean_best_test_acc > front[front.length - 1].mean_best_test_acc) front.push(r);
    return front;
  }

  // Accuracy against size: each finished grid point's best-epoch test accuracy (± std over seeds)
  // against its model's trainable parameters on a log scale, the Pareto front joined.
  function sizeChart(target, rows) {
    const W = 620, H = 320, left = 60, right = W - 20, top = 20, bottom = H - 45;
    const front = paretoFront(rows);
    const lx = rows.map((r) => Math.log10(r.parameters));
    const x0 = Math.floor(Math.min(...lx) * 2) / 2, x1 = Math.ceil(Math.max(...lx) * 2) / 2 || x0 + 1;
    const ys = rows.flatMap((r) => [100 * (r.mean_best_test_acc - (r.std_best_test_acc || 0)), 100 * (r.mean_best_test_acc + (r.std_best_test_acc || 0))]);
    const pad = Math.max(0.5, 0.08 * (Math.max(...ys) - Math.min(...ys)));
    const y0 = Math.min(...ys) - pad, y1 = Math.max(...ys) + pad;
    const X = (n) => left + ((right - left) * (Math.log10(n) - x0)) / (x1 - x0 || 1);
    const Y = (v) => bottom - ((bottom - top) * (v - y0)) / (y1 - y0);
    let svg = `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-size="12" font-family="sans-serif">`;
    svg += `<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#444"/><line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#444"/>`;
    for (let e = Math.ceil(x0); e <= x1; e++) {
      for (const m of [1, 2, 5]) {
        const n = m * 10 ** e, lg = Math.log10(n);
        if (lg < x0 || lg > x1) continue;
        svg += `<line x1="${X(n)}" y1="${bottom}" x2="${X(n)}" y2="${bottom + 5}" stroke="#444"/><text x="${X(n)}" y="${bottom + 18}" text-anchor="middle">${n >= 1000 ? `${n / 1000}k` : n}</text>`;
      }
    }
    for (let k = 0; k <= 4; k++) {
      const v = y0 + ((y1 - y0) * k) / 4;
      svg += `<text x="${left - 6}" y="${Y(v) + 4}" text-anchor="end">${v.toFixed(1)}</text><line x1="${left}" y1="${Y(v)}" x2="${right}" y2="${Y(v)}" stroke="#eee"/>`;
    }
    svg += `<text x="${(left + right) / 2}" y="${H - 8}" text-anchor="middle">trainable parameters (log scale)</text>`;
    svg += `<text x="14" y="${(top + bottom) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(top + bottom) / 2})">test accuracy (%)</text>`;
    svg += `<polyline class="front" points="${front.map((r) => `${X(r.parameters)},${Y(100 * r.mean_best_test_acc)}`).join(" ")}" fill="none" stroke="#d62728" stroke-width="1.5" stroke-dasharray="4 3"/>`;
    for (const r of rows) {
      const x = X(r.parameters), y = Y(100 * r.mean_best_test_acc), s = 100 * (r.std_best_test_acc || 0);
      const on = front.includes(r);
      if (s) svg += `<line x1="${x}" y1="${Y(100 * r.mean_best_test_acc - s)}" x2="${x}" y2="${Y(100 * r.mean_best_test_acc + s)}" stroke="#888"/>`;
      svg += `<circle class="${on ? "on-front" : "off-front"}" cx="${x}" cy="${y}" r="${on ? 5 : 4}" fill="${on ? "#d62728" : "#1f5fbf"}"><title>${esc(r.model)} (${r.parameters} parameters), lr ${real(r.learning_rate)}, batch ${r.batch_size}: ${esc(pm(r.mean_best_test_acc, r.std_best_test_acc, pct2))} %</title></circle>`;
    }
    svg += "</svg>";
    const el = document.createElement("div");
    el.className = "chart";
    el.id = "size-chart";
    el.innerHTML = `<h3>best-epoch test accuracy vs trainable parameters (red: the Pareto front)</h3>${svg}`;
    target.appendChild(el);
  }

  // Three or more swept parameters: one vertical axis each and one for accuracy; a line per grid point.
  function parallelCoordinates(target, rows, swept) {
    const done = rows.filter((r) => r.mean_best_test_acc != null);
    const W = 940, H = 320, top = 30, bottom = H - 40, left = 60, right = W - 60;
    const axes = swept.map((p) => ({ name: p.axis, names: valuesOf(p, rows), pos: (r) => valuesOf(p, rows).indexOf(p.show(r)) }));
    const accs = done.map((r) => 100 * r.mean_best_test_acc);
    const lo = Math.min(...accs), hi = Math.max(...accs);
    const xAt = (k) => left + ((right - left) * k) / axes.length;
    const yCat = (a, i) => (a.names.length === 1 ? (top + bottom) / 2 : bottom - ((bottom - top) * i) / (a.names.length - 1));
    const yAcc = (v) => (hi > lo ? bottom - ((bottom - top) * (v - lo)) / (hi - lo) : (top + bottom) / 2);
    let svg = `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-size="12" font-family="sans-serif">`;
    for (const r of done.slice().sort((a, b) => a.mean_best_test_acc - b.mean_best_test_acc)) {
      const t = hi > lo ? (100 * r.mean_best_test_acc - lo) / (hi - lo) : 0.5;
      const pts = axes.map((a, k) => `${xAt(k)},${yCat(a, a.pos(r))}`).concat(`${xAt(axes.length)},${yAcc(100 * r.mean_best_test_acc)}`);
      svg += `<polyline points="${pts.join(" ")}" fill="none" stroke="${r.best ? "#d62728" : shade(0.15 + 0.85 * t)}" stroke-width="${r.best ? 3 : 1.5}"><title>${esc(pm(r.mean_best_test_acc, r.std_best_test_acc, pct2))} %</title></polyline>`;
    }
    axes.forEach((a, k) => {
      svg += `<line x1="${xAt(k)}" y1="${top}" x2="${xAt(k)}" y2="${bottom}" stroke="#444"/><text x="${xAt(k)}" y="${H - 14}" text-anchor="middle">${esc(a.name)}</text>`;
      a.names.forEach((n, i) => { svg += `<text x="${xAt(k) - 6}" y="${yCat(a, i) + 4}" text-anchor="end">${esc(n)}</text>`; });
    });
    const xa = xAt(axes.length);
    svg += `<line x1="${xa}" y1="${top}" x2="${xa}" y2="${bottom}" stroke="#444"/><text x="${xa}" y="${H - 14}" text-anchor="middle">test acc. (%)</text>`;
    svg += `<text x="${xa + 6}" y="${top + 4}">${hi.toFixed(2)}</text><text x="${xa + 6}" y="${bottom + 4}">${lo.toFixed(2)}</text></svg>`;
    const el = document.createElement("div");
    el.className = "chart";
    el.id = "parallel";
    el.innerHTML = `<h3>parallel coordinates: each line a grid point, by best-epoch test accuracy (red: best by validation loss)</h3>${svg}`;
    target.appendChild(el);
  }

  function jobsTable(sweepId, jobs, sort, filter) {
    const f = filter.trim().toLowerCase();
    const shown = jobs.filter((j) => !f || [j.state, j.model, j.worker, j.error, j.batch_size, j.learning_rate, j.seed].join(" ").toLowerCase().includes(f));
    const key = (j) => (sort.k === "val_acc" ? j.latest?.val_acc : j[sort.k]);
    shown.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x == null && y == null) return 0;
      if (x == null) return 1;
      if (y == null) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * sort.dir;
    });
    // The table shows a window of the sorted, filtered trials: a browser lays out 500 rows in a
    // blink and 10,000 in seconds.
    $("#jobs-note").textContent = shown.length > TABLE_ROWS
      ? `showing ${TABLE_ROWS} of ${shown.length} trials: sort or filter to see others`
      : `${shown.length} trials`;
    $("#jobs").dataset.rows = shown.length;
    $("#jobs tbody").innerHTML = shown.slice(0, TABLE_ROWS).map((j) =>
      `<tr data-job="${esc(j.id)}" data-state="${j.state}"><td class="s-${j.state}">${j.state}</td><td>${esc(j.model)}</td>` +
      `<td class="num">${j.batch_size}</td><td class="num">${real(j.learning_rate)}</td><td class="num">${j.max_epochs}</td>` +
      `<td class="num">${j.seed}</td><td class="num">${j.epochs_done}/${j.max_epochs}</td>` +
      `<td class="num">${pct(j.latest?.val_acc)}</td><td class="num">${pct(j.test_acc ?? j.latest?.test_acc)}</td>` +
      `<td class="num">${pct(j.best_test_acc)}</td><td class="num">${j.attempts}</td><td>${esc(j.worker)}</td>` +
      `<td title="${esc(j.error)}">${esc((j.error || "").slice(0, 60))}</td>` +
      `<td><a href="/sweeps/${encodeURIComponent(sweepId)}/trials/${encodeURIComponent(j.id)}" title="${esc(j.id)}">${esc(j.id.slice(0, 8))}</a></td></tr>`).join("");
  }

  async function sweepPage(id) {
    $("#title").textContent = `Sweep ${id}`;
    $("#dl-csv").href = `/api/sweeps/${encodeURIComponent(id)}/results.csv`;
    $("#dl-json").href = `/api/sweeps/${encodeURIComponent(id)}/results`;
    document.title = `jetsweep · ${id}`;
    let jobs = [];
    const sort = { k: "state", dir: 1 };
    let filter = "";
    document.querySelectorAll("#jobs th").forEach((th) => th.addEventListener("click", () => {
      sort.dir = sort.k === th.dataset.k ? -sort.dir : 1;
      sort.k = th.dataset.k;
      jobsTable(id, jobs, sort, filter);
    }));
    $("#filter").addEventListener("input", (e) => { filter = e.target.value; jobsTable(id, jobs, sort, filter); });
    $("#cancel").addEventListener("click", async () => {
      if (!confirm(`Cancel sweep ${id}? Queued trials will not run; running ones stop at their next report.`)) return;
      const r = await fetch(`/api/sweeps/${encodeURIComponent(id)}/cancel`, { method: "POST", headers: { "x-jetsweep": "1" } });
      status(r.ok ? "cancel requested" : `cancel failed: ${(await r.json()).error}`, !r.ok);
      load();
    });
    let lastDone = -1;
    let curves = {};
    const showSweep = (s) => {
      const summary = $("#summary");
      summary.dataset.total = s.total;
      summary.dataset.done = s.done;
      summary.dataset.running = s.running;
      summary.dataset.failed = s.failed;
      summary.innerHTML = `<span class="s-${s.state}">${s.state}</span> ${progress(s)} ` +
        `${s.done} done · ${s.running} running · ${s.queued} queued · ${s.paused ? `${s.paused} paused · ` : ""}${s.failed} failed · ${s.cancelled} cancelled of ${s.total} ` +
        `· data ${dataLabel(s.dataset)}`;
      $("#cancel").disabled = s.state === "done" || s.state === "cancelled" || s.cancel_requested;
    };
    const byId = () => Object.fromEntries(jobs.map((j) => [j.id, j]));
    const resultsUrl = `/api/sweeps/${encodeURIComponent(id)}/results`;
    const showResults = async (s, fetched) => {
      // Results change as jobs finish; early stopping also as they pause or stop.
      const ended = `${s.done}/${s.cancelled}/${s.paused}`;
      if (ended === lastDone) return;
      lastDone = ended;
      paramCharts(await (fetched || getJson(resultsUrl)));
      stoppingTable(await getJson(`/api/sweeps/${encodeURIComponent(id)}/stopping`));
    };
    // Everything once; then the changes as the coordinator pushes them (server-sent events).
    const load = async () => {
      try {
        // The calls go out together: the page waits for the slowest, not for their sum.
        const sweepCall = getJson(`/api/sweeps/${encodeURIComponent(id)}`);
        const curvesCall = getJson(`/api/sweeps/${encodeURIComponent(id)}/curves?limit=${CURVES_FETCHED}`);
        const resultsCall = getJson(resultsUrl);
        resultsCall.catch(() => {}); // awaited below; an early failure must not go unhandled
        const jobsCall = (async () => {
          let all = [], from = 0;
          for (;;) {
            const page = await getJson(`/api/sweeps/${encodeURIComponent(id)}/jobs?from=${from}`);
            all = all.concat(page.jobs);
            if (page.next == null) return all;
            from = page.next;
          }
        })();
        const s = await sweepCall;
        showSweep(s);
        jobs = await jobsCall;
        jobsTable(id, jobs, sort, filter);
        curves = (await curvesCall).jobs;
        curvesCharts(curves, jobs);
        lastDone = -1;
        await showResults(s, resultsCall);
        status(`updated ${new Date().toLocaleTimeString()}`);
        return s;
      } catch (e) {
        status(`could not load the sweep: ${e.message}`, true);
        return null;
      }
    };
    const apply = async (change) => {
      showSweep(change.sweep);
      const index = byId();
      for (const j of change.jobs) {
        if (index[j.id]) Object.assign(index[j.id], j); else jobs.push(j);
      }
      for (const [job, m] of change.epochs) {
        if (!curves[job] && Object.keys(curves).length >= CURVES_FETCHED) continue;
        const curve = curves[job] || (curves[job] = []);
        const at = curve.findIndex((c) => c.epoch >= m.epoch);
        if (at < 0) curve.push(m); else if (curve[at].epoch === m.epoch) curve[at] = m; else curve.splice(at, 0, m);
      }
      jobsTable(id, jobs, sort, filter);
      curvesCharts(curves, jobs);
      await showResults(change.sweep);
      status(`live · updated ${new Date().toLocaleTimeString()}`);
    };
    const first = await load();
    // `?live=0`: a still snapshot (for printing, or a tool that waits for the page to settle).
    if (new URLSearchParams(location.search).get("live") === "0") return;
    // A sweep that has ended changes no more: no live stream is held open for it.
    if (first && ["done", "failed", "cancelled"].includes(first.state)) {
      status(`ended · loaded ${new Date().toLocaleTimeString()}`);
      return;
    }
    const events = new EventSource(`/api/sweeps/${encodeURIComponent(id)}/events`);
    events.onmessage = (e) => {
      const change = JSON.parse(e.data);
      apply(change);
      if (["done", "failed", "cancelled"].includes(change.sweep.state)) events.close();
    };
    // The browser reconnects by itself; what changed meanwhile is read again in full.
    let opened = false;
    events.onerror = () => status("connection lost; reconnecting…", true);
    events.onopen = () => { if (opened) load(); opened = true; };
  }

  // ---- /sweeps/ID/trials/JOB ----
  // An attempt's bar on the timeline: its colour by outcome.
  const OUTCOME_COLOR = { done: "#2b8a3e", failed: "#b42318", expired: "#b42318", paused: "#6b7280", cancelled: "#8a5a00", released: "#8a5a00" };

  // The attempts on one time axis: a bar each from start to end (to now while it runs).
  function timeline(attempts, now) {
    if (!attempts.length) return `<p class="muted">not leased yet</p>`;
    const W = 940, row = 26, left = 150, right = W - 20, H = 30 + row * attempts.length;
    const t0 = Math.min(...attempts.map((a) => a.started_ms));
    const t1 = Math.max(t0 + 1, ...attempts.map((a) => a.ended_ms ?? now));
    const X = (t) => left + ((right - left) * (t - t0)) / (t1 - t0);
    let svg = `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-size="12" font-family="sans-serif">`;
    attempts.forEach((a, i) => {
      const y = 8 + i * row, end = a.ended_ms ?? now;
      const color = a.outcome ? OUTCOME_COLOR[a.outcome] || "#6b7280" : "#1f5fbf";
      const span = a.epochs.length ? `epochs ${a.epochs[0].epoch}–${a.epochs[a.epochs.length - 1].epoch}` : "no epoch";
      svg += `<text x="${left - 8}" y="${y + 14}" text-anchor="end">#${a.attempt} ${esc(a.worker)}</text>` +
        `<rect class="attempt" x="${X(a.started_ms)}" y="${y}" width="${Math.max(2, X(end) - X(a.started_ms))}" height="18" fill="${color}"${a.outcome ? "" : ` fill-opacity="0.6"`}>` +
        `<title>attempt ${a.attempt} on ${esc(a.worker)}: ${esc(a.outcome || "running")}, ${span}, ${((end - a.started_ms) / 1000).toFixed(1)} s</title></rect>` +
        // The label after the bar, or inside its end when the bar reaches the right edge.
        (X(end) + 160 < W ? `<text x="${X(end) + 6}" y="${y + 14}">` : `<text x="${X(end) - 6}" y="${y + 14}" text-anchor="end" fill="#fff">`) +
        `${esc(a.outcome || "running")} · ${span}</text>`;
    });
    const y = H - 6;
    svg += `<text x="${left}" y="${y}">${esc(new Date(t0).toLocaleTimeString())}</text><text x="${right}" y="${y}" text-anchor="end">${esc(new Date(t1).toLocaleTimeString())} (${((t1 - t0) / 1000).toFixed(1)} s)</text></svg>`;
    return svg;
  }

  async function trialPage(sweepId, jobId) {
    const sweepHref = `/sweeps/${encodeURIComponent(sweepId)}`;
    document.title = `jetsweep · ${jobId.slice(0, 8)}`;
    const load = async () => {
      let t;
      try {
        t = await getJson(`/api/sweeps/${encodeURIComponent(sweepId)}/trials/${encodeURIComponent(jobId)}`);
      } catch (e) { status(`could not load the trial: ${e.message}`, true); return null; }
      const j = t.job;
      $("#title").innerHTML = `Trial <span title="${esc(j.id)}">${esc(j.id.slice(0, 12))}</span> of sweep <a href="${sweepHref}">${esc(sweepId)}</a>`;
      const facts = [
        ["state", `<span class="s-${j.state}">${j.state}</span>${j.error ? ` · ${esc(j.error)}` : ""}`],
        ["model", esc(j.model)], ["optimizer", esc(j.optimizer)], ["batch size", j.batch_size], ["epochs", `${j.epochs_done} of ${j.max_epochs} done`],
        ["learning rate", real(j.learning_rate)], ["weight decay", real(j.weight_decay)], ["seed", j.seed],
        ["best epoch", j.best_epoch == null ? "—" : `${j.best_epoch}: test accuracy ${pct(j.best_test_acc)} %`],
        ["last epoch's test accuracy", j.test_acc == null ? "—" : `${pct(j.test_acc)} %`],
        ["attempts", `${j.attempts}${j.worker ? ` · latest on ${esc(j.worker)}` : ""}`],
        ["job id", `<code>${esc(j.id)}</code> (the model: <code>jetsweep model ${esc(sweepId)} --job ${esc(j.id)} --out F.onnx</code>)`],
      ];
      $("#config tbody").innerHTML = facts.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join("");

      // Curves: this trial bold; its point's mean ± std over every seed as a grey band; the other seeds thin.
      const own = t.point.find((p) => p.id === j.id);
      const curve = own ? own.curve : [];
      const others = t.point.filter((p) => p.id !== j.id);
      const xs = Array.from({ length: j.max_epochs }, (_, i) => i + 1);
      const target = $("#curves");
      target.innerHTML = "";
      target.dataset.points = curve.length;
      if (!curve.length && !others.some((p) => p.curve.length)) target.innerHTML = `<p class="muted">no epoch reported yet</p>`;
      else for (const [title, yLabel, key, scale] of CHARTS) {
        const band = t.point.length > 1 ? meanBand(t.point.map((p) => p.curve), key, scale, xs) : null;
        groupedChart(target, title, yLabel, xs, [
          { label: "point", color: "#6b7280", band, mean: band && band.mean, width: 1.5, dash: [4, 3],
            seeds: others.map((p) => ({ label: `seed ${p.seed}`, values: valuesAt(p.curve, key, scale, xs), color: "#adb5bd" })), seedsShown: true },
          { label: `seed ${j.seed}`, color: "#1f5fbf", mean: valuesAt(curve, key, scale, xs), width: 2.5 },
        ]);
      }
      $("#trial-legend").innerHTML = `<span class="legend-item"><i style="background:#1f5fbf"></i>this trial (seed ${j.seed})</span>` +
        (t.point.length > 1 ? `<span class="legend-item"><i style="background:#6b7280"></i>its grid point: mean ± std over ${t.point.length} seeds (dashed, band)</span>` +
          `<span class="legend-item"><i style="background:#adb5bd"></i>the point's other seeds</span>` : "");

      const now = Date.now();
      $("#timeline").innerHTML = timeline(t.attempts, now);
      $("#attempts tbody").innerHTML = t.attempts.map((a) => {
        const end = a.ended_ms ?? now;
        const span = a.epochs.length ? `${a.epochs[0].epoch}–${a.epochs[a.epochs.length - 1].epoch}` : "—";
        return `<tr data-attempt="${a.attempt}"><td class="num">${a.attempt}</td><td>${esc(a.worker)}</td><td>${when(a.started_ms)}</td>` +
          `<td>${a.ended_ms == null ? "running" : when(a.ended_ms)}</td><td class="num">${((end - a.started_ms) / 1000).toFixed(1)} s</td>` +
          `<td class="s-${a.outcome === "done" ? "done" : a.outcome ? "failed" : "running"}">${esc(a.outcome || "running")}</td>` +
          `<td class="num">${a.pack_size ?? "—"}</td><td class="num">${span}</td><td title="${esc(a.error)}">${esc((a.error || "").slice(0, 80))}</td></tr>`;
      }).join("");

      // Each epoch as its latest attempt reported it.
      const latest = new Map();
      for (const a of t.attempts) for (const m of a.epochs) latest.set(m.epoch, [a.attempt, m]);
      const rows = [...latest.values()].sort((a, b) => a[1].epoch - b[1].epoch);
      const best = rows.length ? rows.reduce((b, r) => (r[1].val_loss < b[1].val_loss ? r : b))[1].epoch : null;
      const f4 = (x) => x.toFixed(4);
      $("#epochs tbody").innerHTML = rows.map(([attempt, m]) =>
        `<tr data-epoch="${m.epoch}" class="${m.epoch === best ? "best" : ""}"><td class="num">${m.epoch}</td><td class="num">${attempt}</td><td class="num">${real(m.lr)}</td>` +
        `<td class="num">${f4(m.train_loss)}</td><td class="num">${pct(m.train_acc)}</td><td class="num">${f4(m.val_loss)}</td><td class="num">${pct(m.val_acc)}</td>` +
        `<td class="num">${f4(m.test_loss)}</td><td class="num">${pct(m.test_acc)}</td><td class="num">${m.seconds < 0.1 ? m.seconds.toPrecision(2) : m.seconds.toFixed(2)}</td><td class="num">${Math.round(m.samples_per_second)}</td></tr>`).join("");
      status(`updated ${new Date().toLocaleTimeString()}`);
      return j;
    };
    const first = await load();
    // While it may still change, read it again every 3 s; `?live=0` for a still snapshot.
    if (!first || new URLSearchParams(location.search).get("live") === "0") return;
    const timer = setInterval(async () => {
      const j = await load();
      if (j && !["queued", "running", "paused"].includes(j.state)) clearInterval(timer);
    }, 3000);
    if (!["queued", "running", "paused"].includes(first.state)) clearInterval(timer);
  }

  return { sweepsPage, workersPage, sweepPage, trialPage };
})();

// jetsweep dashboard: the three pages' scripts. Plain JavaScript, no build step; charts by uPlot.
"use strict";
const jetsweep = (() => {
  const $ = (sel) => document.querySelector(sel);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const pct = (x) => (x == null ? "—" : (100 * x).toFixed(2));
  const when = (ms) => new Date(ms).toLocaleString();
  const TABLE_ROWS = 500; // trial rows laid out at once
  const CURVES_SHOWN = 60; // trials whose curves are drawn (the first in grid order)
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

  // ---- /: every sweep, newest first ----
  async function sweepsPage() {
    const load = async () => {
      try {
        const sweeps = await getJson("/api/sweeps");
        $("#sweeps tbody").innerHTML = sweeps.map((s) =>
          `<tr data-sweep="${esc(s.id)}"><td><a href="/sweeps/${encodeURIComponent(s.id)}">${esc(s.id)}</a></td>` +
          `<td class="s-${s.state}">${s.state}</td><td>${progress(s)}</td>` +
          `<td class="num">${s.total}</td><td class="num">${s.done}</td><td class="num">${s.running}</td>` +
          `<td class="num">${s.queued}</td><td class="num">${s.failed}</td><td class="num">${s.cancelled}</td>` +
          `<td>${dataLabel(s.dataset)}</td><td>${when(s.created_ms)}</td></tr>`).join("");
        status(`${sweeps.length} sweeps · updated ${new Date().toLocaleTimeString()}`);
      } catch (e) { status(`could not load the sweeps: ${e.message}`, true); }
    };
    await load();
    setInterval(load, 3000);
  }

  // ---- /workers ----
  async function workersPage() {
    const load = async () => {
      try {
        const workers = await getJson("/api/workers");
        $("#workers tbody").innerHTML = workers.map((w) =>
          `<tr><td>${esc(w.name)}</td><td>${esc(w.host)}</td><td>${esc(w.device)}</td>` +
          `<td class="num">${w.slots}</td><td class="num">${w.jobs.length}</td><td>${when(w.last_seen_ms)}</td>` +
          `<td class="${w.gone ? "s-failed" : "s-done"}">${w.gone ? "gone" : "alive"}</td></tr>`).join("");
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
    const plot = new uPlot({
      width: opts.width || 460, height: 260,
      scales: { x: { time: false, distr: opts.logX ? 3 : 1 } },
      axes: [{ label: xLabel }, { label: yLabel, size: 60 }],
      legend: { show: series.length <= 12 },
      series: plotted,
    }, [xs].concat(series.map((s) => s.values)), el);
    return plot;
  }

  function curvesCharts(curves, jobsById) {
    const target = $("#curves");
    target.innerHTML = "";
    const ids = Object.keys(curves);
    const maxEpoch = Math.max(1, ...ids.map((id) => curves[id].length ? curves[id][curves[id].length - 1].epoch : 0));
    const xs = Array.from({ length: maxEpoch }, (_, i) => i + 1);
    const shown = ids.slice(0, CURVES_SHOWN);
    const seriesOf = (key, scale) => shown.map((id, i) => {
      const j = jobsById[id] || {};
      const values = xs.map(() => null); // an epoch not reported is a gap, never a zero
      for (const m of curves[id]) values[m.epoch - 1] = m[key] * scale;
      return {
        label: `${j.state || "?"} bs${j.batch_size} lr${j.learning_rate} s${j.seed}`,
        values,
        dash: j.state === "running" ? [6, 3] : undefined,
        color: j.state === "failed" ? "#b42318" : j.state === "cancelled" ? "#8a5a00" : COLORS[i % COLORS.length],
      };
    });
    let points = 0;
    for (const id of ids) points += curves[id].length;
    target.dataset.jobs = ids.length;
    target.dataset.points = points;
    if (!ids.length) { target.innerHTML = `<p class="muted">no epoch reported yet</p>`; return; }
    lineChart(target, "test accuracy", "epoch", "accuracy (%)", xs, seriesOf("test_acc", 100));
    lineChart(target, "validation accuracy", "epoch", "accuracy (%)", xs, seriesOf("val_acc", 100));
    lineChart(target, "validation loss", "epoch", "cross-entropy", xs, seriesOf("val_loss", 1));
    lineChart(target, "training loss", "epoch", "cross-entropy", xs, seriesOf("train_loss", 1));
    const total = Number($("#summary").dataset.total || ids.length);
    if (total > shown.length) target.insertAdjacentHTML("beforeend", `<p class="muted">the first ${shown.length} of ${total} trials plotted</p>`);
  }

  function paramCharts(results) {
    const target = $("#params");
    target.innerHTML = "";
    const rows = results.rows;
    if (!rows.length) { target.innerHTML = `<p class="muted">no trial finished yet</p>`; return; }
    const keys = ["batch_size", "learning_rate", "max_epochs"].filter((k) => new Set(rows.map((r) => r[k])).size > 1);
    for (const k of keys) {
      // Average over the other parameters' values, per value of this one.
      const groups = new Map();
      for (const r of rows) {
        const g = groups.get(r[k]) || [];
        g.push(r);
        groups.set(r[k], g);
      }
      const xs = [...groups.keys()].sort((a, b) => a - b);
      const mean = xs.map((x) => 100 * avg(groups.get(x).map((r) => r.mean_best_test_acc)));
      const std = xs.map((x) => 100 * avg(groups.get(x).map((r) => r.std_best_test_acc)));
      lineChart(target, `best-epoch test accuracy vs ${k}`, k, "accuracy (%)", xs, [
        { label: "mean over seeds", values: mean, width: 2 },
        { label: "mean + std", values: mean.map((m, i) => m + std[i]), dash: [4, 4], color: "#868e96" },
        { label: "mean − std", values: mean.map((m, i) => m - std[i]), dash: [4, 4], color: "#868e96" },
      ], { logX: k === "learning_rate" });
    }
    if (!keys.length) target.innerHTML = `<p class="muted">one grid point: nothing to compare</p>`;
  }

  const avg = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

  function jobsTable(jobs, sort, filter) {
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
      `<td class="num">${j.batch_size}</td><td class="num">${j.learning_rate}</td><td class="num">${j.max_epochs}</td>` +
      `<td class="num">${j.seed}</td><td class="num">${j.epochs_done}/${j.max_epochs}</td>` +
      `<td class="num">${pct(j.latest?.val_acc)}</td><td class="num">${pct(j.test_acc ?? j.latest?.test_acc)}</td>` +
      `<td class="num">${pct(j.best_test_acc)}</td><td class="num">${j.attempts}</td><td>${esc(j.worker)}</td>` +
      `<td title="${esc(j.error)}">${esc((j.error || "").slice(0, 60))}</td></tr>`).join("");
  }

  async function sweepPage(id) {
    $("#title").textContent = `Sweep ${id}`;
    document.title = `jetsweep · ${id}`;
    let jobs = [];
    const sort = { k: "state", dir: 1 };
    let filter = "";
    document.querySelectorAll("#jobs th").forEach((th) => th.addEventListener("click", () => {
      sort.dir = sort.k === th.dataset.k ? -sort.dir : 1;
      sort.k = th.dataset.k;
      jobsTable(jobs, sort, filter);
    }));
    $("#filter").addEventListener("input", (e) => { filter = e.target.value; jobsTable(jobs, sort, filter); });
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
        `${s.done} done · ${s.running} running · ${s.queued} queued · ${s.failed} failed · ${s.cancelled} cancelled of ${s.total} ` +
        `· data ${dataLabel(s.dataset)}`;
      $("#cancel").disabled = s.state === "done" || s.state === "cancelled" || s.cancel_requested;
    };
    const byId = () => Object.fromEntries(jobs.map((j) => [j.id, j]));
    const showResults = async (s) => {
      if (s.done === lastDone) return;
      lastDone = s.done;
      paramCharts(await getJson(`/api/sweeps/${encodeURIComponent(id)}/results`));
    };
    // Everything once; then the changes as the coordinator pushes them (server-sent events).
    const load = async () => {
      try {
        const s = await getJson(`/api/sweeps/${encodeURIComponent(id)}`);
        showSweep(s);
        let all = [], from = 0;
        for (;;) {
          const page = await getJson(`/api/sweeps/${encodeURIComponent(id)}/jobs?from=${from}`);
          all = all.concat(page.jobs);
          if (page.next == null) break;
          from = page.next;
        }
        jobs = all;
        jobsTable(jobs, sort, filter);
        curves = (await getJson(`/api/sweeps/${encodeURIComponent(id)}/curves?limit=${CURVES_SHOWN}`)).jobs;
        curvesCharts(curves, byId());
        await showResults(s);
        status(`updated ${new Date().toLocaleTimeString()}`);
      } catch (e) {
        status(`could not load the sweep: ${e.message}`, true);
      }
    };
    const apply = async (change) => {
      showSweep(change.sweep);
      const index = byId();
      for (const j of change.jobs) {
        if (index[j.id]) Object.assign(index[j.id], j); else jobs.push(j);
      }
      for (const [job, m] of change.epochs) {
        if (!curves[job] && Object.keys(curves).length >= CURVES_SHOWN) continue;
        const curve = curves[job] || (curves[job] = []);
        const at = curve.findIndex((c) => c.epoch >= m.epoch);
        if (at < 0) curve.push(m); else if (curve[at].epoch === m.epoch) curve[at] = m; else curve.splice(at, 0, m);
      }
      jobsTable(jobs, sort, filter);
      curvesCharts(curves, byId());
      await showResults(change.sweep);
      status(`live · updated ${new Date().toLocaleTimeString()}`);
    };
    await load();
    // `?live=0`: a still snapshot (for printing, or a tool that waits for the page to settle).
    if (new URLSearchParams(location.search).get("live") === "0") return;
    const events = new EventSource(`/api/sweeps/${encodeURIComponent(id)}/events`);
    events.onmessage = (e) => apply(JSON.parse(e.data));
    // The browser reconnects by itself; what changed meanwhile is read again in full.
    let opened = false;
    events.onerror = () => status("connection lost; reconnecting…", true);
    events.onopen = () => { if (opened) load(); opened = true; };
  }

  return { sweepsPage, workersPage, sweepPage };
})();

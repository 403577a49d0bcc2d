// The run page's curves: loss, accuracy and mask ratio of each model, drawn
// with uPlot from the rows of the run's metrics.csv. The page starts them
// from a JSON block (#curves-data); while the job runs, the job's event
// stream brings the new rows (`metrics` events, which htmx's SSE extension
// announces as htmx:sseMessage on #metrics-events) and the charts grow.
(function () {
  "use strict";

  // What each chart draws: [column, label, colour].
  const CHARTS = [
    { title: "loss", series: [["sup_loss", "supervised loss", "#2f5fd0"], ["unsup_loss", "unsupervised loss", "#c0392b"]] },
    { title: "val accuracy", percent: true, series: [["val_top1", "val top-1", "#1f8a4c"], ["val_top5", "val top-5", "#a86a00"]] },
    { title: "mask ratio (unlabeled above the threshold)", percent: true, series: [["mask_ratio", "mask ratio", "#7a3fb8"]] },
  ];

  let columns = [];
  const models = []; // { name, rows, charts: [{ spec, plot }] }

  function column(name) {
    return columns.indexOf(name);
  }

  // uPlot's columnar data for one chart: the steps where any of its series
  // has a value, each series null elsewhere.
  function chartData(rows, spec) {
    const step = column("step");
    const cols = spec.series.map(([name]) => column(name));
    const kept = rows.filter((r) => cols.some((c) => r[c] !== null));
    return [kept.map((r) => r[step])].concat(cols.map((c) => kept.map((r) => r[c])));
  }

  function width(el) {
    return Math.max(260, el.clientWidth - 8);
  }

  function makeChart(group, model, spec) {
    const el = document.createElement("div");
    el.className = "chart";
    el.dataset.chart = model.name + "/" + spec.title;
    group.appendChild(el);
    const value = spec.percent
      ? (u, v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%")
      : (u, v) => (v === null || v === undefined ? "–" : v.toFixed(4));
    const opts = {
      title: model.name + " model: " + spec.title,
      width: width(el),
      height: 220,
      scales: spec.percent ? { x: { time: false }, y: { range: [0, 1] } } : { x: { time: false } },
      axes: [{ label: "step" }, { values: (u, ticks) => ticks.map((t) => (spec.percent ? Math.round(100 * t) + "%" : t)) }],
      series: [{ label: "step" }].concat(
        spec.series.map(([, label, stroke]) => ({ label, stroke, width: 1.5, value, spanGaps: true, points: { size: 4 } })),
      ),
    };
    return new uPlot(opts, chartData(model.rows, spec), el);
  }

  // A model's charts, once it has rows (the small model of a joint run
  // starts after the large one).
  function draw(box, model) {
    if (model.charts.length || model.rows.length === 0) return;
    box.querySelector(".no-curves")?.remove();
    const group = document.createElement("div");
    group.className = "chart-group";
    group.dataset.model = model.name;
    box.appendChild(group);
    model.charts = CHARTS.map((spec) => ({ spec, plot: makeChart(group, model, spec) }));
  }

  function grow(box, message) {
    const m = models[message.model];
    if (!m || message.from !== m.rows.length) return; // a repeat, or a gap: keep what is drawn
    m.rows.push(...message.rows);
    for (const c of m.charts) c.plot.setData(chartData(m.rows, c.spec));
    draw(box, m);
    box.dataset.rows = models.map((x) => x.rows.length).join(",");
  }

  function start() {
    const box = document.getElementById("curves");
    const data = document.getElementById("curves-data");
    if (!box || !data || typeof uPlot === "undefined") return;
    const parsed = JSON.parse(data.textContent);
    columns = parsed.columns;
    for (const m of parsed.models) models.push({ name: m.model, rows: m.rows, charts: [] });
    for (const m of models) draw(box, m);
    box.dataset.rows = models.map((x) => x.rows.length).join(",");
    document.body.addEventListener("htmx:sseMessage", (e) => {
      if (e.target.id === "metrics-events") grow(box, JSON.parse(e.detail.data));
    });
    window.addEventListener("resize", () => {
      for (const m of models) for (const c of m.charts) c.plot.setSize({ width: width(c.plot.root.parentNode), height: 220 });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

// Plotly charts of the study page. Each chart keeps what it drew and updates in place:
// Plotly.extendTraces when trials were only appended, Plotly.react otherwise. Large point clouds
// use WebGL traces (scattergl) when the browser has WebGL.
/* global Plotly */
import { fmtValue, hasWebGL } from "./api.js";
import { NOTE_MARGIN, axisOf, clipNotes, edgeOf, relayoutOf, robustView, sameView } from "./ranges.js";

export const COLORS = {
  complete: "#2563eb",
  pruned: "#f59e0b",
  failed: "#dc2626",
  running: "#10b981",
  waiting: "#9ca3af",
  paused: "#8b5cf6",
  best: "#f97316",
  muted: "#cbd5e1",
};

const FONT = { family: "Inter, system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#374151" };
const AXIS = { gridcolor: "#eef0f4", zeroline: false, linecolor: "#e5e7eb", automargin: true };
const CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

const MARGIN = { l: 60, r: 18, t: 10, b: 46 };

// The margins of a plot with these annotations (a note on clipping needs a row of its own).
function marginFor(annotations) {
  return annotations.some((a) => a.name === "clip-note") ? { ...MARGIN, b: NOTE_MARGIN } : { ...MARGIN };
}

function layout(extra = {}) {
  return {
    margin: { ...MARGIN },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: FONT,
    hovermode: "closest",
    showlegend: true,
    legend: { orientation: "h", x: 0, y: 1.12 },
    ...extra,
    xaxis: { ...AXIS, ...(extra.xaxis || {}) },
    yaxis: { ...AXIS, ...(extra.yaxis || {}) },
  };
}

function emptyNote(text) {
  return [{ text, xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, font: { color: "#9ca3af", size: 13 } }];
}

// Parameter names can be long (a nested "model.encoder.attention_dropout"): axis labels are cut to
// this many characters; the hover and the table show the full name.
const LABEL_CHARS = 26;

export function shortLabel(name) {
  return name.length <= LABEL_CHARS ? name : `${name.slice(0, LABEL_CHARS - 1)}…`;
}

const scatter = () => (hasWebGL() ? "scattergl" : "scatter");

function better(direction, a, b) {
  if (a === null || a === undefined) return b;
  return direction === "maximize" ? Math.max(a, b) : Math.min(a, b);
}

// ---- optimization history: one point per complete trial, and the best value so far ----

// Trial values outside the y-range (see ranges.js) are drawn as triangles at its edge.
function outsideTrace(xs, ys, view) {
  const x = [];
  const customdata = [];
  for (let i = 0; i < xs.length; i++) {
    if (view.outside(ys[i])) {
      x.push(xs[i]);
      customdata.push(ys[i]);
    }
  }
  const edge = x.length ? edgeOf(view) : null;
  return {
    x, y: x.map(() => edge), customdata,
    marker: { color: COLORS.failed, size: 9, symbol: view.side === "below" ? "triangle-down" : "triangle-up", opacity: 0.75 },
    showlegend: x.length > 0,
  };
}

export class HistoryChart {
  constructor(element, onPick) {
    this.el = element;
    this.onPick = onPick; // called with a trial number when a point is clicked
    this.onView = null; // called with the y-axis view after each draw (for the page's controls)
    this.drawn = null; // {key, n, lastNumber, best, direction, xs, ys, view}
    this.scale = { log: null, all: false }; // log: null = decided from the values (ranges.js)
  }

  // points: [{number, value, infeasible}] of complete trials in number order (finite values
  // only). Infeasible trials (a constraint value above 0) are drawn apart and never best.
  update(points, { direction, label, key }) {
    const d = this.drawn;
    const n = points.length;
    if (d && d.key === key && n === d.n && (n === 0 || points[n - 1].number === d.lastNumber)) return;
    const appended = d && d.key === key && d.n > 0 && n > d.n && points[d.n - 1].number === d.lastNumber;
    if (appended && !points.slice(d.n).some((p) => p.infeasible)) {
      this.append(points.slice(d.n), direction);
      return;
    }
    const xs = [];
    const ys = [];
    const bests = [];
    let best = null;
    const apart = { x: [], y: [] };
    for (const p of points) {
      if (p.infeasible) {
        apart.x.push(p.number);
        apart.y.push(p.value);
        continue;
      }
      best = better(direction, best, p.value);
      xs.push(p.number);
      ys.push(p.value);
      bests.push(best);
    }
    const view = robustView(ys, { direction, ...this.scale });
    const traces = [
      {
        type: scatter(), mode: "markers", name: label, x: xs.slice(), y: ys.slice(),
        marker: n > 2000
          ? { color: COLORS.complete, size: 4, opacity: 0.45 }
          : { color: COLORS.complete, size: 7, opacity: 0.8, line: { color: "#fff", width: 0.5 } },
        hovertemplate: "Trial #%{x}<br>%{y}<extra></extra>",
      },
      {
        type: scatter(), mode: "lines", name: "Best so far", x: xs.slice(), y: bests,
        line: { color: COLORS.best, width: 2.5, shape: "hv" },
        hovertemplate: "Best after #%{x}: %{y}<extra></extra>",
      },
      {
        type: scatter(), mode: "markers", name: "Outside the range", ...outsideTrace(xs, ys, view),
        hovertemplate: "Trial #%{x}<br>%{customdata} (outside the range)<extra></extra>",
      },
      {
        type: scatter(), mode: "markers", name: "Infeasible", x: apart.x, y: apart.y,
        marker: { color: COLORS.muted, size: 8, symbol: "x" }, showlegend: apart.x.length > 0,
        hovertemplate: "Trial #%{x} (infeasible)<br>%{y}<extra></extra>",
      },
    ];
    const last = n ? points[n - 1].number : 0;
    const annotations = n ? clipNotes(view, view.count, "trial") : emptyNote("No complete trials yet");
    Plotly.react(this.el, traces, layout({
      xaxis: { title: { text: "Trial" }, dtick: last < 10 ? 1 : undefined },
      yaxis: { title: { text: label }, ...axisOf(view) },
      annotations,
      margin: marginFor(annotations),
    }), CONFIG);
    if (!this.drawn && this.onPick) this.el.on("plotly_click", (event) => this.onPick(event.points?.[0]?.x));
    this.drawn = { key, n, lastNumber: n ? points[n - 1].number : null, best, direction, xs, ys, view };
    this.onView?.(view);
  }

  append(added, direction) {
    const xs = [];
    const ys = [];
    const bests = [];
    let best = this.drawn.best;
    for (const p of added) {
      best = better(direction, best, p.value);
      xs.push(p.number);
      ys.push(p.value);
      bests.push(best);
    }
    Plotly.extendTraces(this.el, { x: [xs, xs.slice()], y: [ys, bests] }, [0, 1]);
    if (this.drawn.lastNumber < 10 && xs[xs.length - 1] >= 10) Plotly.relayout(this.el, { "xaxis.dtick": null });
    const d = this.drawn;
    this.drawn = {
      ...d, n: d.n + added.length, lastNumber: xs[xs.length - 1], best, xs: d.xs.concat(xs), ys: d.ys.concat(ys),
    };
    this.refreshView();
  }

  // Redraws the y-axis, the triangles and the note when the range has changed (or `force`).
  refreshView(force = false) {
    const d = this.drawn;
    const view = robustView(d.ys, { direction: d.direction, ...this.scale });
    if (!force && sameView(view, d.view)) return;
    const outside = outsideTrace(d.xs, d.ys, view);
    const annotations = clipNotes(view, view.count, "trial");
    Plotly.update(
      this.el,
      { x: [outside.x], y: [outside.y], customdata: [outside.customdata], marker: [outside.marker], showlegend: [outside.showlegend] },
      { ...relayoutOf(view), annotations, margin: marginFor(annotations) },
      [2],
    );
    d.view = view;
    this.onView?.(view);
  }

  // log: true, false or null (decide from the values); all: show every value.
  setScale(change) {
    this.scale = { ...this.scale, ...change };
    if (this.drawn?.n) this.refreshView(true);
    else this.onView?.({ log: !!this.scale.log });
  }
}

// ---- Pareto front (several objectives): every complete trial, the front highlighted ----

export function paretoMask(points, directions) {
  // points: arrays of values; returns booleans. Lexicographic order: only earlier points can
  // dominate, and anything that dominates is itself dominated by (or is) a front member.
  const signs = directions.map((d) => (d === "maximize" ? -1 : 1));
  const order = points.map((_, i) => i).sort((a, b) => {
    for (let k = 0; k < signs.length; k++) {
      const diff = signs[k] * (points[a][k] - points[b][k]);
      if (diff) return diff;
    }
    return 0;
  });
  const mask = new Array(points.length).fill(false);
  const front = [];
  for (const i of order) {
    const p = points[i];
    const dominated = front.some((j) => {
      const q = points[j];
      let strictly = false;
      for (let k = 0; k < signs.length; k++) {
        const diff = signs[k] * (q[k] - p[k]);
        if (diff > 0) return false;
        if (diff < 0) strictly = true;
      }
      return strictly;
    });
    if (!dominated) {
      front.push(i);
      mask[i] = true;
    }
  }
  return mask;
}

export class ParetoChart {
  constructor(element) {
    this.el = element;
  }

  update(trials, { directions, names, ix, iy }) {
    const points = trials.map((t) => t.values);
    const mask = paretoMask(points, directions);
    const group = (onFront) => {
      const chosen = trials.filter((_, i) => mask[i] === onFront);
      return {
        x: chosen.map((t) => t.values[ix]),
        y: chosen.map((t) => t.values[iy]),
        customdata: chosen.map((t) => t.number),
      };
    };
    const front = group(true);
    const rest = group(false);
    Plotly.react(this.el, [
      {
        type: scatter(), mode: "markers", name: "Dominated", ...rest,
        marker: { color: COLORS.muted, size: 6 },
        hovertemplate: "Trial #%{customdata}<br>%{x}, %{y}<extra></extra>",
      },
      {
        type: scatter(), mode: "markers", name: `Pareto front (${front.x.length})`, ...front,
        marker: { color: COLORS.best, size: 8, line: { color: "#fff", width: 1 } },
        hovertemplate: "Trial #%{customdata}<br>%{x}, %{y}<extra></extra>",
      },
    ], layout({
      xaxis: { title: { text: names[ix] } },
      yaxis: { title: { text: names[iy] } },
      annotations: trials.length ? [] : emptyNote("No complete trials yet"),
    }), CONFIG);
    return front.x.length;
  }
}

// ---- parallel coordinates of the parameters, coloured by the objective ----

function dimension(name, spec, trials) {
  const raw = trials.map((t) => t.params[name]);
  if (spec.type === "categorical") {
    const keys = spec.choices.map((c) => JSON.stringify(c));
    return {
      label: shortLabel(name),
      values: raw.map((v) => keys.indexOf(JSON.stringify(v))),
      tickvals: keys.map((_, i) => i),
      ticktext: spec.choices.map(String),
      range: [0, Math.max(keys.length - 1, 1)],
    };
  }
  if (spec.log) {
    const lo = Math.log10(spec.low);
    const hi = Math.log10(spec.high);
    const ticks = [];
    for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) ticks.push(e);
    return {
      label: `${shortLabel(name)} (log)`,
      values: raw.map((v) => Math.log10(v)),
      range: [lo, hi],
      tickvals: ticks,
      ticktext: ticks.map((e) => `1e${e}`),
    };
  }
  return { label: shortLabel(name), values: raw, range: [spec.low, spec.high] };
}

export class ParallelChart {
  constructor(element) {
    this.el = element;
    this.drawnKey = null;
  }

  update(trials, { searchSpace, label, objective, direction }) {
    // One axis per parameter every trial holds: a conditional one (with `when`) is missing
    // from some trials, and a parallel-coordinates line needs a value on every axis.
    const names = Object.keys(searchSpace).filter((n) => !searchSpace[n].when);
    const usable = trials.filter((t) => t.values && t.values[objective] !== null && names.every((n) => n in t.params));
    const key = `${objective}:${usable.length}:${usable.length ? usable[usable.length - 1].id : ""}`;
    if (key === this.drawnKey) return;
    this.drawnKey = key;
    if (!hasWebGL()) {
      this.el.replaceChildren(Object.assign(document.createElement("div"), { className: "empty", textContent: "Parallel coordinates need WebGL." }));
      return;
    }
    if (!usable.length || !names.length) {
      Plotly.react(this.el, [], layout({ xaxis: { visible: false }, yaxis: { visible: false }, annotations: emptyNote("No complete trials yet") }), CONFIG);
      return;
    }
    const values = usable.map((t) => t.values[objective]);
    const dims = names.map((n) => dimension(n, searchSpace[n], usable));
    dims.push({ label: shortLabel(label), values });
    // The colours span the values without their outliers (which take the end colour), so that a
    // few diverged trials do not paint all others alike; the axis itself shows every value.
    const { range } = robustView(values, { direction, log: false });
    // Each axis's label is centred on it: the outer ones need room beside the plot.
    const room = (text) => Math.round(3.8 * text.length);
    Plotly.react(this.el, [{
      type: "parcoords",
      dimensions: dims,
      line: {
        color: values,
        colorscale: "Viridis",
        reversescale: direction === "minimize", // the best trials are the brightest
        showscale: false, // the last axis is the objective itself
        ...(range ? { cmin: range[0], cmax: range[1] } : {}),
      },
      labelfont: { size: 12 },
      tickfont: { size: 11 },
    }], {
      ...layout(),
      margin: { l: Math.max(70, room(dims[0].label)), r: Math.max(60, room(dims[dims.length - 1].label)), t: 40, b: 24 },
    }, CONFIG);
  }
}

// ---- importance ----

export class ImportanceChart {
  constructor(element) {
    this.el = element;
  }

  update(importance, names) {
    const objectives = importance?.objectives || [];
    if (!objectives.length) {
      const text = !importance ? "Loading…"
        : importance.status === "pending" ? "Computing importances…" : "Needs at least two complete trials";
      Plotly.react(this.el, [], layout({ xaxis: { visible: false }, yaxis: { visible: false }, annotations: emptyNote(text), showlegend: false }), CONFIG);
      return;
    }
    const order = Object.keys(objectives[0].importances).reverse(); // largest on top
    const palette = [COLORS.complete, COLORS.best, "#8b5cf6", "#14b8a6", "#ec4899"];
    let largest = 0;
    const traces = objectives.map((o, i) => {
      const x = order.map((p) => o.importances[p] ?? 0);
      largest = Math.max(largest, ...x);
      return {
        type: "bar",
        orientation: "h",
        name: names[o.objective] ?? `objective ${o.objective}`,
        y: order,
        x,
        customdata: order,
        marker: { color: palette[i % palette.length] },
        hovertemplate: "%{customdata}: %{x:.3f}<extra></extra>",
        text: x.map(fmtValue),
        textposition: "outside",
        cliponaxis: false,
      };
    });
    Plotly.react(this.el, traces, layout({
      barmode: "group",
      showlegend: objectives.length > 1,
      margin: { l: 20, r: 18, t: 10, b: 40 }, // the left margin grows to the labels (automargin)
      // Room right of the longest bar for its value, which is written outside it.
      xaxis: { title: { text: "Importance" }, range: [0, (largest || 1) * 1.18] },
      yaxis: { automargin: true, tickmode: "array", tickvals: order, ticktext: order.map(shortLabel) },
    }), CONFIG);
  }
}

// ---- intermediate values: one line per trial, pruned trials in their own colour ----

// Drawn in this order: complete curves over failed and pruned ones, running ones on top. Each
// line's colour is translucent, more so the more lines there are, so that dense bundles show.
const CURVE_GROUPS = [
  ["failed", "Failed", [220, 38, 38], { width: 1, dash: "dash" }, 0.5],
  ["pruned", "Pruned", [245, 158, 11], { width: 1, dash: "dot" }, 0.8],
  ["complete", "Complete", [37, 99, 235], { width: 1 }, 0.5],
  ["running", "Running", [16, 185, 129], { width: 2 }, 1],
];

function curveColor(rgb, alpha, lines) {
  const a = Math.max(0.04, Math.min(alpha, 40 / Math.max(lines, 1)));
  return `rgba(${rgb[0]},${rgb[1]},${rgb[2]},${a.toFixed(3)})`;
}

export class CurvesChart {
  constructor(element) {
    this.el = element;
    this.onView = null; // called with the y-axis view after each draw (for the page's controls)
    this.scale = { log: null, all: false }; // as HistoryChart's
    this.last = null; // the arguments of the last update, to redraw on a change of scale
  }

  setScale(change) {
    this.scale = { ...this.scale, ...change };
    if (this.last) this.update(...this.last);
    else this.onView?.({ log: !!this.scale.log });
  }

  // curves: Map number → {steps, values}; stateOf(number) → trial state; highlight: number|null;
  // direction: the objective's ("minimize" or "maximize").
  update(curves, stateOf, highlight, label, direction) {
    this.last = [curves, stateOf, highlight, label, direction];
    const groups = new Map(CURVE_GROUPS.map(([state]) => [state, { x: [], y: [], customdata: [], lines: 0 }]));
    const numbers = [...curves.keys()].sort((a, b) => a - b);
    const values = [];
    for (const number of numbers) {
      const group = groups.get(stateOf(number));
      if (!group) continue;
      const curve = curves.get(number);
      for (let i = 0; i < curve.steps.length; i++) {
        group.x.push(curve.steps[i]);
        group.y.push(curve.values[i]);
        group.customdata.push(number);
        if (curve.values[i] !== null) values.push(curve.values[i]);
      }
      group.x.push(null);
      group.y.push(null);
      group.customdata.push(number);
      group.lines += 1;
    }
    const view = robustView(values, { direction, ...this.scale });
    const leaves = (n) => groups.has(stateOf(n)) && curves.get(n).values.some((v) => v !== null && view.outside(v));
    const clipped = view.count ? numbers.filter(leaves).length : 0;
    const traces = CURVE_GROUPS.map(([state, name, rgb, line, alpha]) => {
      const { x, y, customdata, lines } = groups.get(state);
      return {
        type: scatter(), mode: state === "running" ? "lines+markers" : "lines", marker: { size: 4 },
        name: `${name} (${lines})`, x, y, customdata,
        line: { ...line, color: curveColor(rgb, alpha, lines) }, connectgaps: false,
        legendgroup: state, showlegend: false,
        hovertemplate: "Trial #%{customdata}<br>step %{x}: %{y}<extra></extra>",
      };
    });
    // Legend entries in full colour (the lines themselves may be nearly transparent).
    for (const [state, name, rgb, line] of CURVE_GROUPS) {
      traces.push({
        type: scatter(), mode: "lines", name: `${name} (${groups.get(state).lines})`, x: [null], y: [null],
        line: { ...line, color: `rgb(${rgb.join(",")})`, width: 2 }, legendgroup: state, meta: "legend",
        hoverinfo: "skip",
      });
    }
    if (highlight !== null && curves.has(highlight)) {
      const c = curves.get(highlight);
      traces.push({
        type: scatter(), mode: "lines+markers", name: `Trial #${highlight}`, x: c.steps, y: c.values,
        line: { color: "#111827", width: 3 }, marker: { size: 5 },
        hovertemplate: `Trial #${highlight}<br>step %{x}: %{y}<extra></extra>`,
      });
    }
    let maxStep = 0;
    for (const curve of curves.values()) maxStep = Math.max(maxStep, curve.steps[curve.steps.length - 1] ?? 0);
    const annotations = numbers.length ? clipNotes(view, clipped, "curve") : emptyNote("No intermediate values reported yet");
    Plotly.react(this.el, traces, layout({
      xaxis: { title: { text: "Step" }, dtick: maxStep < 10 ? 1 : undefined },
      yaxis: { title: { text: label }, ...axisOf(view) },
      annotations,
      margin: marginFor(annotations),
    }), CONFIG);
    this.onView?.(view);
  }
}

// The lineage of a population-based-training study: which trial started from whose checkpoint,
// at which step, with which mutable parameters. Drawn as the schedule of the first mutable
// parameter over the steps (one segment per trial, a dotted link from a parent to each child),
// and as a tree below it.
/* global Plotly */
import { el, fmtParam, fmtValue } from "./api.js";

const PALETTE = ["#2563eb", "#f97316", "#10b981", "#8b5cf6", "#dc2626", "#0891b2", "#ca8a04", "#db2777"];
const FONT = { family: "Inter, system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#374151" };
const AXIS = { gridcolor: "#eef0f4", zeroline: false, linecolor: "#e5e7eb", automargin: true };

// trials: TrialOut list (number order); byId: Map id → trial.
function family(trials) {
  const byId = new Map(trials.map((t) => [t.id, t]));
  const children = new Map();
  const roots = [];
  for (const t of trials) {
    const parent = t.parent_trial_id === null ? null : byId.get(t.parent_trial_id);
    if (parent) {
      if (!children.has(parent.id)) children.set(parent.id, []);
      children.get(parent.id).push(t);
    } else {
      roots.push(t);
    }
  }
  // Each trial's colour: its root's, so a lineage keeps one colour across its children.
  const rootOf = new Map();
  const walk = (t, root) => {
    rootOf.set(t.id, root);
    for (const c of children.get(t.id) || []) walk(c, root);
  };
  roots.forEach((r, i) => walk(r, i));
  return { byId, children, roots, rootOf };
}

export class LineageChart {
  constructor(plot, tree) {
    this.plot = plot;
    this.tree = tree;
  }

  // trials in number order; curves: Map number → {steps, values}; mutable: parameter names;
  // space: the study's search space (for the log axis); onSelect(trial id).
  update(trials, curves, mutable, space, onSelect) {
    const { byId, children, roots, rootOf } = family(trials);
    const name = mutable.find((m) => space[m] && space[m].type !== "categorical") || mutable[0];
    const start = (t) => t.started_from_step ?? 0;
    // A trial's last step: from its learning curve, else at least the step before its
    // children started (curves load a little after the trials).
    const end = (t) => {
      const curve = curves.get(t.number);
      const kids = (children.get(t.id) || []).map((c) => start(c) - 1);
      const last = curve && curve.steps.length ? curve.steps[curve.steps.length - 1] : start(t);
      return Math.max(last, ...kids);
    };
    const links = { x: [], y: [] };
    for (const t of trials) {
      const parent = t.parent_trial_id === null ? null : byId.get(t.parent_trial_id);
      if (parent && t.params[name] !== undefined && parent.params[name] !== undefined) {
        links.x.push(start(t) - 1, start(t), null);
        links.y.push(parent.params[name], t.params[name], null);
      }
    }
    const byRoot = new Map();
    for (const t of trials) {
      if (t.params[name] === undefined) continue;
      const r = rootOf.get(t.id);
      if (!byRoot.has(r)) byRoot.set(r, { x: [], y: [], text: [], ids: [] });
      const g = byRoot.get(r);
      const label = `#${t.number} · ${t.state}${t.value === null ? "" : ` · ${fmtValue(t.value)}`}`;
      g.x.push(start(t), end(t), null);
      g.y.push(t.params[name], t.params[name], null);
      g.text.push(label, label, null);
      g.ids.push(t.id, t.id, null);
    }
    const traces = [...byRoot.entries()].map(([r, g]) => ({
      type: "scatter",
      mode: "lines+markers",
      name: `lineage of #${roots[r].number}`,
      x: g.x,
      y: g.y,
      text: g.text,
      customdata: g.ids,
      hovertemplate: `%{text}<br>step %{x}<br>${name} = %{y}<extra></extra>`,
      line: { color: PALETTE[r % PALETTE.length], width: 3 },
      marker: { size: 5 },
    }));
    traces.push({
      type: "scatter",
      mode: "lines",
      name: "started from",
      x: links.x,
      y: links.y,
      hoverinfo: "skip",
      line: { color: "#6b7280", width: 1, dash: "dot" },
    });
    const log = !!space[name]?.log;
    Plotly.react(
      this.plot,
      traces,
      {
        margin: { l: 60, r: 18, t: 10, b: 46 },
        paper_bgcolor: "rgba(0,0,0,0)",
        plot_bgcolor: "rgba(0,0,0,0)",
        font: FONT,
        hovermode: "closest",
        showlegend: traces.length <= 9,
        legend: { orientation: "h", x: 0, y: 1.12 },
        xaxis: { ...AXIS, title: { text: "step" } },
        yaxis: { ...AXIS, title: { text: name }, type: log ? "log" : "linear" },
      },
      { responsive: true, displaylogo: false },
    );
    if (!this.plot.dataset.bound) {
      this.plot.dataset.bound = "1";
      this.plot.on?.("plotly_click", (event) => {
        const id = event.points?.[0]?.customdata;
        if (id) this.onSelect?.(id);
      });
    }
    this.onSelect = onSelect;
    this.tree.replaceChildren(el("ul", {}, roots.map((r) => this.node(r, children, mutable))));
  }

  node(t, children, mutable) {
    const params = mutable.filter((m) => t.params[m] !== undefined).map((m) => `${m} = ${fmtParam(t.params[m])}`);
    const from = t.parent_trial_id === null ? "" : ` · from step ${t.started_from_step}`;
    const line = el("span", { class: `lineage-node state-${t.state}`, "data-number": t.number, onclick: () => this.onSelect?.(t.id) }, [
      el("b", {}, `#${t.number}`),
      ` ${t.state}${t.value === null ? "" : ` · ${fmtValue(t.value)}`}${from} · ${params.join(", ")}`,
    ]);
    const kids = children.get(t.id) || [];
    return el("li", {}, [line, kids.length ? el("ul", {}, kids.map((c) => this.node(c, children, mutable))) : null]);
  }
}

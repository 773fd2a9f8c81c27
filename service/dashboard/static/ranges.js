// Y ranges that show the interesting part of a plot. A few diverged trials (a loss of 2.0 among
// losses of 0.1–0.3, one learning curve at 50 among curves near 0.5) would otherwise set the axis
// for everything and flatten the rest against it.
//
// Values beyond Tukey's "far out" fence on the worse side (above for a minimised objective,
// below for a maximised one) are left outside the range; the better side is never cut, so the
// best trial is always in view. Positive values are judged on a log scale (a loss of 1e-4 is as
// ordinary as one of 0.1), and the axis is logarithmic by default when the values it shows are
// all positive and span more than two decades. With `all`, nothing is left out.
import { fmtValue } from "./api.js";

const FAR_OUT = 3; // interquartile ranges beyond the quartiles
const MIN_POINTS = 5; // fewer values than this are too few to call any of them an outlier
const LOG_SPAN = 100; // two decades
const PAD = 0.06; // the margin above and below the values shown, as a share of their span

// Smallest and largest of a list (a loop: spreading 100 000 values into Math.min would overflow).
function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

function quantile(sorted, q) {
  const at = (sorted.length - 1) * q;
  const i = Math.floor(at);
  return i + 1 < sorted.length ? sorted[i] + (at - i) * (sorted[i + 1] - sorted[i]) : sorted[i];
}

// Which values are outliers on the worse side: a predicate, or null when none can be told.
function outlierTest(values, direction) {
  const positive = values.every((v) => v > 0);
  const judge = positive ? Math.log10 : (v) => v;
  const sorted = values.map(judge).sort((a, b) => a - b);
  const q1 = quantile(sorted, 0.25);
  const q3 = quantile(sorted, 0.75);
  const spread = q3 - q1 || quantile(sorted, 0.9) - quantile(sorted, 0.1);
  if (!(spread > 0)) return null;
  if (direction === "maximize") {
    const fence = q1 - FAR_OUT * spread;
    return (v) => judge(v) < fence;
  }
  const fence = q3 + FAR_OUT * spread;
  return (v) => judge(v) > fence;
}

// The y-axis for `values` (finite numbers). `log` is the user's choice (null: decide), `all`
// turns clipping off. Returns {log, range, count, side, extreme, outside}: `range` is in axis
// units (log10 on a log axis), null for Plotly's autorange; `count` values lie outside it, on
// `side` ("above" or "below"), the farthest being `extreme`; `outside(v)` tells them.
export function robustView(values, { direction, log = null, all = false }) {
  const finite = values.filter(Number.isFinite);
  const none = { range: null, count: 0, side: null, extreme: null, outside: () => false };
  const test = all || finite.length < MIN_POINTS ? null : outlierTest(finite, direction);
  const kept = test ? finite.filter((v) => !test(v)) : finite;
  const [keptLo, keptHi] = extent(kept);
  const isLog = log ?? (kept.length > 0 && keptLo > 0 && keptHi / keptLo > LOG_SPAN);
  const count = finite.length - kept.length;
  if (!count) return { ...none, log: isLog };
  const side = direction === "maximize" ? "below" : "above";
  const out = finite.filter(test);
  const extreme = extent(out)[side === "above" ? 1 : 0];
  const shown = isLog ? kept.filter((v) => v > 0).map(Math.log10) : kept;
  if (!shown.length) return { ...none, log: isLog };
  const [lo, hi] = extent(shown);
  const pad = (hi - lo) * PAD || Math.abs(hi) * PAD || 1;
  return { log: isLog, range: [lo - pad, hi + pad], count, side, extreme, outside: test };
}

// Plotly's y-axis attributes for a view (with Plotly.react's layout).
export function axisOf(view) {
  const type = view.log ? "log" : "linear";
  return view.range ? { type, range: view.range, autorange: false } : { type, autorange: true };
}

// The same as a Plotly.relayout update.
export function relayoutOf(view) {
  const axis = axisOf(view);
  return { "yaxis.type": axis.type, "yaxis.autorange": axis.autorange, ...(view.range ? { "yaxis.range": view.range } : {}) };
}

// Where to draw markers for the values outside the range: just inside its edge, in data units.
export function edgeOf(view) {
  const [lo, hi] = view.range;
  const pad = (hi - lo) * (PAD / (1 + 2 * PAD));
  const at = view.side === "above" ? hi - pad / 2 : lo + pad / 2;
  return view.log ? 10 ** at : at;
}

// The note on a plot that says what was left out ("2 trials above the range …"), or none. It
// has a row of its own under the x-axis title (NOTE_MARGIN is the bottom margin that makes room
// for it), where it hides no point: the outliers' markers are at the edges of the plot area.
export const NOTE_MARGIN = 76;

export function clipNotes(view, count, noun) {
  if (!view.range || !count) return [];
  const what = `${count} ${noun}${count === 1 ? "" : "s"}`;
  const reach = view.side === "above" ? "up to" : "down to";
  return [{
    text: `${what} ${view.side} the range (${reach} ${fmtValue(view.extreme)}): <b>Show all</b>`,
    name: "clip-note",
    xref: "paper", yref: "paper", x: 1, y: 0, xanchor: "right", yanchor: "top", yshift: -50,
    showarrow: false, align: "right", bgcolor: "#fff7ed", bordercolor: "#fed7aa", borderwidth: 1,
    borderpad: 3, font: { size: 11, color: "#9a3412" },
  }];
}

// Two views draw the same axis and note.
export function sameView(a, b) {
  return !!a && !!b && a.log === b.log && a.count === b.count && a.extreme === b.extreme
    && (a.range === b.range || (!!a.range && !!b.range && a.range[0] === b.range[0] && a.range[1] === b.range[1]));
}

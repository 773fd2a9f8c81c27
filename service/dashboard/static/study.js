// The study page. Trials are fetched once through the change feed (/changes) and then kept up to
// date incrementally: every event on the study's SSE stream triggers one more /changes poll with
// the last cursor, so the page never refetches the whole study.
import {
  API, api, el, fmtAgo, fmtDuration, fmtParam, fmtTime, fmtValue, followEvents, setLive,
} from "./api.js";
import { CurvesChart, HistoryChart, ImportanceChart, ParallelChart, ParetoChart } from "./charts.js";
import { LineageChart } from "./lineage.js";
import { VirtualTable } from "./table.js";

const studyId = Number(location.pathname.split("/").filter(Boolean).pop());
const PAGE = 1000;
const PARCOORDS_MAX = 1000; // more lines than this are unreadable (and slow): the best are shown
const CURVE_POINTS = 64; // learning curves are down-sampled by the server (extremes kept)
const $ = (id) => document.getElementById(id);

const state = {
  study: null,
  trials: new Map(), // id → trial (TrialOut)
  cursor: null, // the change feed's cursor
  curves: new Map(), // trial number → {steps, values}
  importance: null,
  objective: 0,
  selected: null, // trial id
  paretoSize: null,
  version: 0,
  ordered: null, // trials in number order (cached per version)
  loaded: false, // the first full load through the change feed is done
};

const charts = {
  history: new HistoryChart($("history-plot"), (number) => {
    const trial = byNumber(number);
    if (trial) select(trial.id);
  }),
  pareto: new ParetoChart($("pareto-plot")),
  parallel: new ParallelChart($("parcoords-plot")),
  importance: new ImportanceChart($("importance-plot")),
  curves: new CurvesChart($("curves-plot")),
  lineage: new LineageChart($("lineage-plot"), $("lineage-tree")),
};
const table = new VirtualTable($("trials-scroll"), {
  onSelect: (trial) => select(trial.id),
  onView: (shown, total) => { $("trial-count").textContent = `${shown} of ${total} trials`; },
});

// ---- derived data ----

function ordered() {
  if (state.ordered?.version !== state.version) {
    const list = [...state.trials.values()].sort((a, b) => a.number - b.number);
    state.ordered = { version: state.version, list };
  }
  return state.ordered.list;
}

const multi = () => state.study.directions.length > 1;

function objectiveNames() {
  const { directions, metric_names: names } = state.study;
  if (names) return names;
  return directions.length === 1 ? ["Objective value"] : directions.map((_, i) => `Objective ${i}`);
}

function byNumber(number) {
  return ordered().find((t) => t.number === number);
}

// ---- rendering, batched: each part is redrawn at most once per flush (some less often) ----

// How long each part took to draw (for diagnosis: window.hpoDashboard.timings).
const timings = {};
window.hpoDashboard = { state, timings };
const pending = new Set();
const lastRun = {};
const MIN_GAP_MS = { parallel: 10000, curves: 1500, pareto: 1000, lineage: 1500 };
const LOADING_GAP_MS = 1000; // while the first pages arrive, redraw once a second at most
// Heavy charts wait for the first full load, and are only drawn while on screen.
const HEAVY = { parallel: "parcoords-plot", curves: "curves-plot", pareto: "pareto-plot" };
const onScreen = new Set();
const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const part = Object.keys(HEAVY).find((k) => HEAVY[k] === entry.target.id);
    if (entry.isIntersecting) {
      onScreen.add(part);
      if (pending.has(part)) invalidate(part);
    } else {
      onScreen.delete(part);
    }
  }
}, { rootMargin: "800px 0px" }); // near the viewport counts: drawn before scrolled to
for (const id of Object.values(HEAVY)) observer.observe($(id));
let flushTimer = null;

function invalidate(...parts) {
  for (const part of parts) pending.add(part);
  if (flushTimer === null) flushTimer = setTimeout(flush, 60);
}

function flush() {
  flushTimer = null;
  const now = performance.now();
  let waiting = false;
  for (const part of [...pending]) {
    if (HEAVY[part] && (!state.loaded || !onScreen.has(part))) continue; // drawn later
    const gap = state.loaded ? MIN_GAP_MS[part] || 0 : LOADING_GAP_MS;
    if (now - (lastRun[part] || -1e9) < gap) {
      waiting = true;
      continue;
    }
    pending.delete(part);
    lastRun[part] = now;
    try {
      const t0 = performance.now();
      RENDER[part]();
      const spent = performance.now() - t0;
      const stats = (timings[part] ||= { calls: 0, ms: 0, max: 0 });
      stats.calls += 1;
      stats.ms += spent;
      stats.max = Math.max(stats.max, spent);
    } catch (error) {
      console.error(`rendering ${part} failed`, error);
    }
  }
  if (waiting) flushTimer = setTimeout(flush, 250);
}

const RENDER = {
  header: renderHeader,
  history: renderHistory,
  pareto: renderPareto,
  parallel: renderParallel,
  importance: renderImportance,
  curves: renderCurves,
  lineage: renderLineage,
  table: () => table.setRows(ordered()),
  detail: renderDetail,
};

function renderHeader() {
  const study = state.study;
  const trials = ordered();
  const counts = { waiting: 0, running: 0, complete: 0, pruned: 0, failed: 0, paused: 0 };
  const workers = new Set();
  let latest = study.updated_at;
  for (const t of trials) {
    counts[t.state] += 1;
    if (t.state === "running" && t.worker_id) workers.add(t.worker_id);
    for (const time of [t.datetime_start, t.datetime_complete]) if (time && time > latest) latest = time;
  }
  const finished = counts.complete + counts.pruned + counts.failed;
  document.title = `${study.name} · HPO dashboard`;
  $("crumb").textContent = study.name;
  $("study-name").textContent = study.name;
  const names = objectiveNames();
  const meta = [
    el("span", { class: `badge ${study.state}` }, study.state),
    el("span", {}, study.directions.map((d, i) => `${d === "maximize" ? "↑" : "↓"} ${names[i]}`).join(" · ")),
    el("span", {}, `sampler ${study.sampler.name}`),
    study.scheduler ? el("span", {}, `scheduler ${study.scheduler.name}`) : el("span", {}, `pruner ${study.pruner.name}`),
    study.task ? el("span", {}, `task ${study.task.name}`) : null,
    el("span", { class: "faint" }, `created ${fmtTime(study.created_at)}`),
  ];
  $("study-meta").replaceChildren(...meta.filter(Boolean));
  // Why the study is not moving: paused by the server (state_reason), or a warning of the API.
  const notices = [study.state_reason, ...(study.warnings || [])].filter(Boolean);
  $("study-notices").replaceChildren(...notices.map((text) => el("div", { class: "notice", role: "status" }, text)));
  let best;
  if (multi()) {
    best = stat("Pareto front", String(state.paretoSize ?? "—"), "non-dominated trials");
  } else {
    const top = bestTrial(trials);
    best = stat("Best", top ? fmtValue(top.values[0]) : "—", top ? `trial #${top.number}` : "no complete trial");
  }
  $("stats").replaceChildren(
    stat("Trials", `${finished}${study.max_trials ? " / " + study.max_trials : ""}`, `${counts.running} running · ${counts.waiting} waiting${counts.paused ? ` · ${counts.paused} paused` : ""}`),
    best,
    stat("Pruned", String(counts.pruned), `${counts.failed} failed`),
    stat("Workers", String(workers.size), [...workers].slice(0, 2).join(", ") || "idle"),
    stat("Last activity", fmtAgo(latest), fmtTime(latest)),
    ...(study.max_gpu_hours || study.gpu_hours_used ? [gpuStat(study)] : []),
  );
}

// GPU-hours used (attempts on GPU devices, running ones up to now) against max_gpu_hours.
function gpuStat(study) {
  const used = fmtHours(study.gpu_hours_used || 0);
  const budget = study.max_gpu_hours ? ` / ${fmtHours(study.max_gpu_hours)}` : "";
  const sub = study.max_gpu_hours ? `${Math.min(100, Math.round((100 * (study.gpu_hours_used || 0)) / study.max_gpu_hours))}% of the budget` : "no GPU-hour budget";
  return stat("GPU-hours", `${used}${budget}`, sub);
}

function fmtHours(hours) {
  return hours >= 10 ? hours.toFixed(1) : hours.toPrecision(2);
}

function stat(label, value, sub) {
  return el("div", { class: "stat" }, [el("div", { class: "label" }, label), el("div", { class: "value" }, value), el("div", { class: "sub" }, sub)]);
}

// A trial's state; a complete trial with a constraint value above 0 says "infeasible" apart.
function stateBadge(t) {
  if (t.state === "complete" && t.feasible === false) {
    return el("span", { class: "badge s-infeasible", title: `constraints: ${JSON.stringify(t.constraints)}` }, "infeasible");
  }
  return el("span", { class: `badge s-${t.state}` }, t.state);
}

function bestTrial(trials) {
  const maximize = state.study.directions[0] === "maximize";
  let best = null;
  for (const t of trials) {
    if (t.state !== "complete" || t.feasible === false || t.values?.[0] === null || t.values?.[0] === undefined) continue;
    if (!best || (maximize ? t.values[0] > best.values[0] : t.values[0] < best.values[0])) best = t;
  }
  return best;
}

function completeWithValues() {
  return ordered().filter((t) => t.state === "complete" && t.values && t.values.every((v) => v !== null));
}

function renderHistory() {
  const k = state.objective;
  const points = [];
  for (const t of ordered()) {
    if (t.state === "complete" && t.values && t.values[k] !== null) {
      points.push({ number: t.number, value: t.values[k], infeasible: t.feasible === false });
    }
  }
  charts.history.update(points, { direction: state.study.directions[k], label: objectiveNames()[k], key: k });
}

function renderPareto() {
  if (!multi()) return;
  const trials = completeWithValues().filter((t) => t.feasible !== false); // infeasible: never on the front
  const ix = Number($("pareto-x").value);
  const iy = Number($("pareto-y").value);
  const size = charts.pareto.update(trials, { directions: state.study.directions, names: objectiveNames(), ix, iy });
  if (size !== state.paretoSize) {
    state.paretoSize = size;
    invalidate("header");
  }
}

function renderParallel() {
  const k = state.objective;
  let trials = completeWithValues();
  const total = trials.length;
  if (total > PARCOORDS_MAX) {
    const sign = state.study.directions[k] === "maximize" ? -1 : 1;
    trials = [...trials].sort((a, b) => sign * (a.values[k] - b.values[k])).slice(0, PARCOORDS_MAX);
    trials.sort((a, b) => a.number - b.number);
  }
  $("parcoords-hint").textContent = total > PARCOORDS_MAX
    ? `the best ${PARCOORDS_MAX} of ${total} complete trials; drag along an axis to filter`
    : "complete trials; drag along an axis to filter";
  charts.parallel.update(trials, {
    searchSpace: state.study.search_space,
    label: objectiveNames()[k],
    objective: k,
    direction: state.study.directions[k],
  });
}

function renderImportance() {
  const imp = state.importance;
  charts.importance.update(imp, objectiveNames());
  const hint = !imp ? "" : imp.objectives.length
    ? `PED-ANOVA · ${imp.n_trials} complete trials${imp.status === "stale" ? " · updating…" : ""}`
    : imp.status === "pending" ? "computing…" : "";
  $("importance-hint").textContent = hint;
}

function renderCurves() {
  if (multi()) return;
  const states = new Map(ordered().map((t) => [t.number, t.state]));
  const selected = state.selected === null ? null : state.trials.get(state.selected)?.number ?? null;
  charts.curves.update(state.curves, (n) => states.get(n), selected, objectiveNames()[0], state.study.directions[0]);
}

function renderLineage() {
  const scheduler = state.study.scheduler;
  $("lineage-card").hidden = !scheduler;
  if (!scheduler) return;
  const mutable = scheduler.options.mutable || [];
  charts.lineage.update(ordered(), state.curves, mutable, state.study.search_space, (id) => select(id));
}

function renderDetail() {
  const box = $("detail");
  const trial = state.selected === null ? null : state.trials.get(state.selected);
  box.classList.toggle("open", !!trial);
  if (!trial) return;
  const names = objectiveNames();
  const rows = [
    ["Trial", `#${trial.number} (id ${trial.id})`],
    ["State", stateBadge(trial)],
    ["Values", trial.values ? trial.values.map((v, i) => `${names[i]} = ${fmtValue(v)}`).join(", ") : "—"],
    ...Object.entries(trial.params).map(([name, value]) => [name, fmtParam(value)]),
    ["Attempt", String(trial.attempt)],
    ["Worker", trial.worker_id || "—"],
    ["Started", fmtTime(trial.datetime_start)],
    ["Finished", fmtTime(trial.datetime_complete)],
    ["Duration", fmtDuration(trial.duration_s)],
    trial.fail_reason ? ["Fail reason", trial.fail_reason] : null,
    trial.parent_trial_id !== null ? ["Started from", lineageOf(trial)] : null,
    trial.constraints ? ["Constraints", Object.entries(trial.constraints).map(([k, v]) => `${k} = ${fmtValue(v)}`).join(", ")] : null,
    Object.keys(trial.user_attrs).length ? ["User attrs", JSON.stringify(trial.user_attrs)] : null,
  ].filter(Boolean);
  box.replaceChildren(
    el("h2", {}, [`Trial #${trial.number}`, el("span", { class: "tools" }, el("span", { class: "button", onclick: () => select(null) }, "Close"))]),
    el("dl", {}, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
  );
}

function lineageOf(trial) {
  const parent = state.trials.get(trial.parent_trial_id);
  const replaced = state.trials.get(trial.replaced_trial_id);
  const who = parent ? `#${parent.number}` : `trial id ${trial.parent_trial_id}`;
  const instead = replaced ? `, in place of #${replaced.number}` : "";
  return `${who}'s checkpoint, at step ${trial.started_from_step}${instead}`;
}

function select(id) {
  state.selected = state.selected === id ? null : id;
  table.select(state.selected);
  invalidate("detail", "curves");
}

// ---- the table ----

function setupTable() {
  const names = objectiveNames();
  const params = Object.keys(state.study.search_space);
  const columns = [
    { key: "number", label: "#", value: (t) => t.number, cell: (t) => String(t.number), num: true },
    { key: "state", label: "State", value: (t) => t.state, cell: stateBadge },
    ...names.map((name, k) => ({
      key: `value:${k}`, label: name, num: true,
      value: (t) => t.values?.[k] ?? null, cell: (t) => fmtValue(t.values?.[k]),
    })),
    ...params.map((name) => ({
      key: `param:${name}`, label: name, num: true,
      value: (t) => t.params[name] ?? null, cell: (t) => (name in t.params ? fmtParam(t.params[name]) : "—"),
    })),
    { key: "duration", label: "Duration", num: true, value: (t) => t.duration_s, cell: (t) => fmtDuration(t.duration_s) },
    { key: "start", label: "Started", value: (t) => t.datetime_start, cell: (t) => fmtTime(t.datetime_start) },
    { key: "worker", label: "Worker", value: (t) => t.worker_id, cell: (t) => t.worker_id || "—" },
  ];
  table.setColumns(columns);
  const text = new WeakMap();
  const haystack = (t) => {
    if (!text.has(t)) text.set(t, `#${t.number} ${t.state} ${t.worker_id || ""} ${Object.values(t.params).join(" ")}`.toLowerCase());
    return text.get(t);
  };
  const apply = () => {
    const states = new Set([...document.querySelectorAll(".table-tools .chip.on")].map((c) => c.dataset.state));
    const needle = $("trial-filter").value.trim().toLowerCase();
    table.setFilter((t) => states.has(t.state) && (!needle || haystack(t).includes(needle)));
  };
  for (const chip of document.querySelectorAll(".table-tools .chip")) {
    chip.addEventListener("click", () => { chip.classList.toggle("on"); apply(); });
  }
  $("trial-filter").addEventListener("input", apply);
  apply();
}

// ---- data: the change feed, curves, importance ----

let syncing = null;
let syncAgain = false;

// Fetch everything changed since the cursor (repeats while the server says there is more).
function sync() {
  if (syncing) {
    syncAgain = true;
    return syncing;
  }
  syncing = (async () => {
    do {
      syncAgain = false;
      let more = true;
      while (more) {
        const page = await api(`/studies/${studyId}/changes`, { since: state.cursor, limit: PAGE });
        merge(page.items);
        state.cursor = page.cursor;
        more = page.more;
      }
    } while (syncAgain);
  })().finally(() => { syncing = null; });
  return syncing;
}

function merge(items) {
  if (!items.length) return;
  let completed = false;
  for (const trial of items) {
    const before = state.trials.get(trial.id);
    if (trial.state === "complete" && before?.state !== "complete") completed = true;
    state.trials.set(trial.id, trial);
  }
  state.version += 1;
  invalidate("header", "history", "pareto", "parallel", "table", "curves", "lineage", "detail");
  if (completed) refreshImportance();
}

let syncTimer = null;
function scheduleSync(delay = 80) {
  if (syncTimer === null) {
    syncTimer = setTimeout(() => {
      syncTimer = null;
      sync().catch(showError);
    }, delay);
  }
}

async function loadCurves(numbers) {
  if (multi()) return;
  const chunks = numbers ? chunk(numbers, 500).map((c) => c.join(",")) : [undefined];
  for (const trials of chunks) {
    let cursor = null;
    do {
      const page = await api(`/studies/${studyId}/intermediate`, { trials, cursor, max_points: CURVE_POINTS, limit: PAGE });
      for (const c of page.items) state.curves.set(c.number, { steps: c.steps, values: c.values });
      cursor = page.next_cursor;
    } while (cursor);
  }
  invalidate("curves", "lineage");
}

const reported = new Set();
let curvesTimer = null;
function queueCurve(number) {
  reported.add(number);
  if (curvesTimer === null) {
    curvesTimer = setTimeout(() => {
      curvesTimer = null;
      const numbers = [...reported];
      reported.clear();
      loadCurves(numbers).catch(showError);
    }, 300);
  }
}

let importanceTimer = null;
let importanceAt = -Infinity;
function refreshImportance(delay = 0) {
  if (importanceTimer !== null) return;
  const wait = Math.max(delay, 4000 - (performance.now() - importanceAt));
  importanceTimer = setTimeout(async () => {
    importanceTimer = null;
    importanceAt = performance.now();
    try {
      state.importance = await api(`/studies/${studyId}/importance`);
      invalidate("importance");
      if (state.importance.status !== "fresh") refreshImportance(1500);
    } catch (error) {
      showError(error);
    }
  }, Math.max(0, wait));
}

async function reloadStudy() {
  state.study = await api(`/studies/${studyId}`);
  invalidate("header");
}

// ---- live updates ----

function startLive() {
  let live = false;
  followEvents(`/studies/${studyId}/events`, {
    onEvent(event) {
      if (event.type.startsWith("trial_")) {
        if (event.type === "trial_reported") queueCurve(event.data.number);
        scheduleSync();
      } else if (event.type === "study_updated") {
        reloadStudy().catch(showError);
      }
    },
    onState(s) {
      live = s === "live";
      setLive(s);
      if (live) scheduleSync(); // catch up with whatever happened while disconnected
    },
  });
  // A slow safety net: poll now and then, and often while the stream is down.
  setInterval(() => { if (!live) scheduleSync(); }, 3000);
  setInterval(() => scheduleSync(), 30000);
}

// ---- page ----

function showError(error) {
  console.error(error);
  $("error").replaceChildren(el("div", { class: "notice" }, error.message || String(error)));
}

function chunk(list, size) {
  const out = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

// A chart's "Log scale" and "Show all" switches. The log switch shows what the chart chose until
// it is clicked (ranges.js decides from the values); from then on it is the user's choice.
function scaleSwitches(chart, logId, allId) {
  const show = (chip, on) => {
    chip.classList.toggle("on", on);
    chip.setAttribute("aria-checked", String(on));
  };
  const log = $(logId);
  const all = $(allId);
  chart.onView = (view) => {
    show(log, view.log);
    show(all, chart.scale.all);
  };
  log.addEventListener("click", () => chart.setScale({ log: !log.classList.contains("on") }));
  all.addEventListener("click", () => chart.setScale({ all: !chart.scale.all }));
}

function setupControls() {
  const names = objectiveNames();
  if (multi()) {
    const objective = $("objective");
    objective.hidden = false;
    objective.replaceChildren(...names.map((n, i) => el("option", { value: i }, n)));
    objective.addEventListener("change", () => {
      state.objective = Number(objective.value);
      invalidate("history", "parallel");
    });
    $("pareto-card").hidden = false;
    for (const [id, initial] of [["pareto-x", 0], ["pareto-y", 1]]) {
      const select = $(id);
      select.replaceChildren(...names.map((n, i) => el("option", { value: i, selected: i === initial }, n)));
      select.addEventListener("change", () => invalidate("pareto"));
    }
    $("curves-card").hidden = true;
  }
  scaleSwitches(charts.history, "history-log", "history-all");
  scaleSwitches(charts.curves, "curves-log", "curves-all");
  for (const [id, format] of [["export-csv", "csv"], ["export-jsonl", "jsonl"]]) {
    const link = $(id);
    link.href = `${API}/studies/${studyId}/trials.${format}`;
  }
}

async function main() {
  if (!Number.isInteger(studyId)) {
    showError(new Error("No study id in the address."));
    return;
  }
  try {
    state.study = await api(`/studies/${studyId}`);
  } catch (error) {
    $("study-name").textContent = "Study not found";
    showError(error);
    setLive("retry");
    return;
  }
  setupControls();
  setupTable();
  invalidate("header", "history", "importance");
  startLive();
  await sync(); // pages of 1000 trials are drawn as they arrive
  state.loaded = true;
  invalidate(...Object.keys(HEAVY));
  refreshImportance();
  await loadCurves();
}

main().catch(showError);

// The studies overview: GET /studies/summary, refreshed every few seconds.
import { api, el, fmtAgo, fmtValue, setLive } from "./api.js";

const REFRESH_MS = 3000;
let studies = [];

async function loadAll() {
  const all = [];
  let cursor = null;
  do {
    const page = await api("/studies/summary", { limit: 1000, cursor });
    all.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return all;
}

function progress(study) {
  const c = study.trial_counts;
  const paused = c.paused || 0;
  const total = Math.max(study.max_trials || 0, c.complete + c.pruned + c.failed + c.running + c.waiting + paused, 1);
  const bar = el("div", { class: "progress", title: `${c.complete} complete, ${c.pruned} pruned, ${c.failed} failed, ${c.running} running, ${paused} paused, ${c.waiting} waiting` });
  for (const [state, color] of [["complete", "--complete"], ["pruned", "--pruned"], ["failed", "--failed"], ["running", "--running"], ["paused", "--paused"], ["waiting", "--waiting"]]) {
    if (c[state]) bar.append(el("span", { style: `width:${(100 * c[state]) / total}%;background:var(${color})` }));
  }
  return bar;
}

function best(study) {
  if (study.directions.length > 1) {
    return study.pareto_front_size === null ? "—" : `${study.pareto_front_size} on the Pareto front`;
  }
  if (study.best_value === null) return el("span", { class: "faint" }, "—");
  return el("span", {}, [el("span", { class: "mono" }, fmtValue(study.best_value)), el("span", { class: "faint" }, `  #${study.best_trial_number}`)]);
}

function row(study) {
  const c = study.trial_counts;
  const defaults = study.directions.length === 1 ? ["objective"] : study.directions.map((_, i) => `objective ${i}`);
  const objective = (study.metric_names || defaults)
    .map((name, i) => `${study.directions[i] === "maximize" ? "↑" : "↓"} ${name}`)
    .join(", ");
  const workers = study.running_workers;
  return el("tr", { class: "row" }, [
    el("td", {}, el("a", { href: `/dashboard/studies/${study.id}` }, study.name)),
    el("td", {}, el("span", { class: `badge ${study.state}` }, study.state)),
    el("td", { class: "muted" }, objective),
    el(
      "td",
      { class: "num", title: study.max_gpu_hours || study.gpu_hours_used ? "GPU-hours used / budget" : "" },
      `${c.complete + c.pruned + c.failed}${study.max_trials ? " / " + study.max_trials : ""}${gpuHours(study)}`,
    ),
    el("td", {}, progress(study)),
    el("td", {}, best(study)),
    el("td", { title: workers.join("\n") }, workers.length ? `${workers.length} running` : el("span", { class: "faint" }, "idle")),
    el("td", { class: "muted", title: study.last_activity_at }, fmtAgo(study.last_activity_at)),
  ]);
}

function render() {
  const text = document.getElementById("filter").value.trim().toLowerCase();
  const state = document.getElementById("state-filter").value;
  const shown = studies.filter((s) => (!text || s.name.toLowerCase().includes(text)) && (!state || s.state === state));
  const body = document.querySelector("#studies tbody");
  body.replaceChildren(...shown.map(row));
  if (!shown.length) {
    body.append(el("tr", {}, el("td", { colspan: 8, class: "faint", style: "height:80px;text-align:center" }, studies.length ? "No study matches." : "No studies yet. Create one with POST /api/v1/studies.")));
  }
  document.getElementById("study-count").textContent = `${studies.length} in all`;
}

async function refresh() {
  try {
    studies = await loadAll();
    document.getElementById("error").replaceChildren();
    setLive("live");
    render();
  } catch (error) {
    setLive("retry");
    document.getElementById("error").replaceChildren(el("div", { class: "notice" }, `Could not load studies: ${error.message}`));
  }
}

document.getElementById("filter").addEventListener("input", render);
document.getElementById("state-filter").addEventListener("change", render);
refresh();
setInterval(refresh, REFRESH_MS);

// " · 1.5 / 4 GPU-h" for a study that used GPU time or has a GPU-hour budget, else "".
function gpuHours(study) {
  if (!study.max_gpu_hours && !study.gpu_hours_used) return "";
  const used = (study.gpu_hours_used || 0).toFixed(2);
  return ` · ${used}${study.max_gpu_hours ? " / " + study.max_gpu_hours : ""} GPU-h`;
}

// The API client of the dashboard: JSON requests, the bearer token, and a Server-Sent Events
// reader built on fetch (so that it can send the token, which EventSource cannot).

export const API = "/api/v1";
const TOKEN_KEY = "hpo.dashboard.token";

function authHeaders() {
  const token = localStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

let tokenPrompt = null;

// Ask once for an API token of the team (a read token is enough) when the server answers 401.
function askToken() {
  if (tokenPrompt) return tokenPrompt;
  tokenPrompt = new Promise((resolve) => {
    const modal = el("div", { class: "modal" });
    const input = el("input", { type: "password", placeholder: "API token", autocomplete: "off" });
    const form = el("form", {}, [
      el("strong", {}, "This server needs an API token"),
      el("div", { class: "muted" }, "It is kept in this browser's local storage."),
      input,
      el("button", { class: "button", type: "submit" }, "Continue"),
    ]);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      localStorage.setItem(TOKEN_KEY, input.value.trim());
      modal.remove();
      tokenPrompt = null;
      resolve();
    });
    modal.append(form);
    document.body.append(modal);
    input.focus();
  });
  return tokenPrompt;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
  }
}

// GET (or other method) a JSON resource under /api/v1.
export async function api(path, params = {}, init = {}) {
  const url = new URL(API + path, location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) url.searchParams.set(key, value);
  }
  for (;;) {
    const response = await fetch(url, { ...init, headers: { ...authHeaders(), ...(init.headers || {}) } });
    if (response.status === 401) {
      await askToken();
      continue;
    }
    const body = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }
}

// Follow a study's event stream; reconnects with Last-Event-ID, so no event is lost or repeated.
// onEvent({type, id, data}); onState("live" | "retry").
export function followEvents(path, { onEvent, onState }) {
  let lastId = null;
  let stopped = false;
  let controller = null;

  function dispatch(block) {
    let type = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
      else if (field === "id") lastId = value;
    }
    if (data.length) onEvent({ type, id: lastId, data: JSON.parse(data.join("\n")) });
  }

  async function run() {
    let delay = 500;
    while (!stopped) {
      controller = new AbortController();
      try {
        const headers = { ...authHeaders(), Accept: "text/event-stream" };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const response = await fetch(API + path, { headers, signal: controller.signal, cache: "no-store" });
        if (response.status === 401) {
          await askToken();
          continue;
        }
        if (!response.ok) throw new ApiError(response.status, null);
        onState("live");
        delay = 500;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            dispatch(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (error) {
        if (stopped) return;
      }
      onState("retry");
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
  }

  run();
  return () => {
    stopped = true;
    controller?.abort();
  };
}

// ---- small helpers ----

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of [].concat(children)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function fmtValue(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e5 || abs < 1e-3) return value.toExponential(3);
  return Number(value.toPrecision(5)).toString();
}

export function fmtParam(value) {
  return typeof value === "number" ? fmtValue(value) : String(value);
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

export function fmtAgo(iso) {
  if (!iso) return "—";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

export function fmtTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

export function setLive(state) {
  const badge = document.getElementById("live");
  if (!badge) return;
  badge.classList.toggle("on", state === "live");
  badge.classList.toggle("retry", state === "retry");
  badge.querySelector(".text").textContent =
    state === "live" ? "Live" : state === "retry" ? "Reconnecting…" : "Polling";
}

let webgl = null;

// Whether this browser can draw WebGL (scattergl, parcoords); SVG traces are used otherwise.
export function hasWebGL() {
  if (webgl === null) {
    try {
      const canvas = document.createElement("canvas");
      webgl = !!(canvas.getContext("webgl") || canvas.getContext("experimental-webgl"));
    } catch (error) {
      webgl = false;
    }
  }
  return webgl;
}

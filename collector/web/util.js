// Small helpers shared by the pages: element builder, formatting, API access.

/** Builds an element: h("a", {href, class}, child, …); children are nodes, strings or arrays. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** GET a JSON API path. */
export async function api(path) {
  const r = await fetch(path, { headers: { accept: "application/json" } });
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try {
      msg = (await r.json()).error || msg;
    } catch (_) {
      /* not JSON */
    }
    throw new Error(msg);
  }
  return r.json();
}

/** A duration in ms as "850 ms", "12.3 s", "4 min 2 s", "2 h 5 min". */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

const dateFmt = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
});

/** A time (ms or RFC 3339) in the viewer's locale. */
export function fmtTime(t) {
  if (t === null || t === undefined) return "–";
  const d = typeof t === "number" ? new Date(t) : new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : dateFmt.format(d);
}

/** "5 s ago", "3 min ago"… */
export function ago(ms) {
  const d = Date.now() - ms;
  if (d < 5000) return "just now";
  return `${fmtDuration(d).replace(/\.\d+ s/, " s")} ago`;
}

/** Pretty JSON in a <pre>. */
export function jsonBlock(v, cls = "") {
  return h("pre", { class: `json ${cls}` }, JSON.stringify(v, null, 2));
}

/** A one-line summary of an object: `a: 2, b: 3` (values shortened). */
export function inline(v, max = 140) {
  if (v === null || v === undefined) return "";
  let s;
  if (typeof v === "object" && !Array.isArray(v)) {
    s = Object.entries(v)
      .map(([k, x]) => `${k}: ${typeof x === "string" ? JSON.stringify(x) : JSON.stringify(x)}`)
      .join(", ");
  } else s = typeof v === "string" ? v : JSON.stringify(v);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** A small label. */
export function chip(text, cls = "") {
  return h("span", { class: `chip ${cls}` }, text);
}

/** The short form of a session id. */
export function shortId(id) {
  if (!id) return "–";
  const s = id.startsWith("stateless:") ? id.slice(10) : id;
  return s.length > 12 ? `${s.slice(0, 8)}…` : s;
}

/** Shows or hides the "live" badge of the top bar. */
export function setLive(on) {
  const el = document.getElementById("live");
  if (el) el.hidden = !on;
}

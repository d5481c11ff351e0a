// The sessions page: filters kept in the URL, the table, CSV/JSON export, live refresh.
import { h, api, fmtDuration, fmtTime, chip, shortId, setLive, ago } from "./util.js";

const FILTERS = [
  ["q", "Search", "text", "arguments, results, names…"],
  ["from", "From", "datetime-local"],
  ["to", "To", "datetime-local"],
  ["user", "User", "text"],
  ["role", "Role", "text"],
  ["server", "Server", "text"],
  ["client", "Client", "text"],
  ["tool", "Tool", "text"],
  ["attack", "Attack", "text"],
];
const PAGE = 50;
const POLL_MS = 3000;

/** The API query of the page's URL query (times as Unix ms). */
function apiQuery(params, paging) {
  const q = new URLSearchParams();
  for (const [k, v] of params) {
    if (!v) continue;
    if (k === "from" || k === "to") {
      const t = new Date(v).getTime();
      if (!Number.isNaN(t)) q.set(k, String(t));
    } else if (k === "offset" || k === "limit") {
      if (paging) q.set(k, v);
    } else q.set(k, v);
  }
  if (paging && !q.has("limit")) q.set("limit", String(PAGE));
  return q;
}

export async function renderSessions(app) {
  const params = new URLSearchParams(location.search);
  const form = h("form", { class: "filters", id: "filters" });
  for (const [name, label, type, placeholder] of FILTERS) {
    form.append(
      h("label", { class: `field field-${name}` }, h("span", {}, label),
        h("input", { name, type, value: params.get(name) || "", placeholder: placeholder || "" })),
    );
  }
  const status = h("select", { name: "status" },
    ["", "active", "ended"].map((s) => h("option", { value: s, selected: params.get("status") === s }, s || "any")));
  form.append(h("label", { class: "field field-status" }, h("span", {}, "Status"), status));
  form.append(h("div", { class: "field-actions" },
    h("button", { type: "submit", class: "btn primary" }, "Apply"),
    h("a", { href: "/", class: "btn" }, "Clear")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) next.set(k, v);
    location.search = next.toString();
  });

  const q = apiQuery(params, false).toString();
  const exports = h("div", { class: "exports" },
    h("a", { class: "btn", id: "export-csv", href: `/api/sessions.csv${q ? `?${q}` : ""}`, download: "sessions.csv" }, "⬇ CSV"),
    h("a", { class: "btn", id: "export-json", href: `/api/sessions.json${q ? `?${q}` : ""}`, download: "sessions.json" }, "⬇ JSON"));
  const stats = h("div", { class: "stats", id: "stats" });
  const table = h("div", { class: "table-wrap" });
  const pager = h("div", { class: "pager" });
  const updated = h("span", { class: "muted small", id: "updated" });
  app.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Sessions"), h("div", { class: "head-right" }, updated, exports)),
    form, stats, table, pager);

  let last = "";
  let lastAt = Date.now();
  const load = async () => {
    const page = await api(`/api/sessions?${apiQuery(params, true)}`);
    const text = JSON.stringify(page);
    lastAt = Date.now();
    if (text === last) return page;
    last = text;
    renderStats(stats, page);
    table.replaceChildren(renderTable(page.sessions));
    renderPager(pager, page, params);
    return page;
  };
  const first = await load();
  const tick = () => { updated.textContent = `updated ${ago(lastAt)}`; };
  tick();
  setInterval(tick, 1000);
  let active = first.sessions.some((s) => s.status === "active");
  setLive(active);
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const p = await load();
      active = p.sessions.some((s) => s.status === "active");
      setLive(active);
    } catch (_) {
      /* keep the last view */
    }
  }, POLL_MS);
}

function renderStats(el, page) {
  const rows = page.sessions;
  const sum = (k) => rows.reduce((a, r) => a + (r[k] || 0), 0);
  const active = rows.filter((r) => r.status === "active").length;
  const attacked = rows.filter((r) => r.attacks.length).length;
  const card = (label, value, cls = "") =>
    h("div", { class: `stat ${cls}` }, h("div", { class: "stat-value" }, String(value)), h("div", { class: "stat-label" }, label));
  el.replaceChildren(
    card("sessions", page.total),
    card("active", active, active ? "ok" : ""),
    card("calls", sum("calls")),
    card("errors", sum("errors"), sum("errors") ? "warn" : ""),
    card("with attacks", attacked, attacked ? "bad" : ""));
}

function renderTable(rows) {
  if (!rows.length) return h("div", { class: "empty" }, "No sessions match these filters.");
  const head = ["Session", "Server", "Client", "User", "Role", "Started", "Duration", "Calls", "Errors", "Status", "Tools", "Attacks"];
  return h("table", { class: "sessions", id: "sessions-table" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { class: numeric(c) ? "num" : "" }, c)))),
    h("tbody", {}, rows.map(renderRow)));
}

const numeric = (c) => c === "Calls" || c === "Errors" || c === "Duration";

function renderRow(r) {
  const href = `/session/${encodeURIComponent(r.key)}`;
  const tr = h("tr", { "data-key": r.key, class: r.attacks.length ? "attacked" : "" },
    h("td", {}, h("a", { href, class: "mono sid", title: r.session_id }, shortId(r.session_id))),
    h("td", {}, h("div", { class: "strong" }, r.server_name || "unknown server"),
      h("div", { class: "muted small mono" }, r.server)),
    h("td", {}, r.client_name ? [h("div", {}, r.client_name), r.client_version ? h("div", { class: "muted small" }, r.client_version) : null] : h("span", { class: "muted" }, "–")),
    h("td", { class: "user" }, r.user || h("span", { class: "muted" }, "–")),
    h("td", {}, r.role ? r.role.split(",").map((x) => chip(x.trim(), "role")) : h("span", { class: "muted" }, "–")),
    h("td", { class: "nowrap", title: r.started }, fmtTime(r.started_ms)),
    h("td", { class: "num nowrap" }, fmtDuration(r.duration_ms)),
    h("td", { class: "num calls" }, String(r.calls)),
    h("td", { class: `num errors ${r.errors ? "has-errors" : ""}` }, String(r.errors)),
    h("td", {}, chip(r.status, r.status === "active" ? "active" : "ended")),
    h("td", { class: "tools" }, r.tools.length ? r.tools.map((t) => chip(t, "tool")) : h("span", { class: "muted" }, "–")),
    h("td", {}, r.attacks.length ? r.attacks.map((a) => chip(a.replaceAll("_", " "), "attack")) : h("span", { class: "muted" }, "–")));
  tr.addEventListener("click", (ev) => {
    if (ev.target.closest("a")) return;
    location.href = href;
  });
  return tr;
}

function renderPager(el, page, params) {
  el.replaceChildren();
  if (page.total <= page.limit) return;
  const go = (offset) => {
    const p = new URLSearchParams(params);
    if (offset > 0) p.set("offset", String(offset));
    else p.delete("offset");
    return `?${p}`;
  };
  const end = Math.min(page.offset + page.sessions.length, page.total);
  el.append(
    page.offset > 0 ? h("a", { class: "btn", href: go(Math.max(0, page.offset - page.limit)) }, "← Newer") : null,
    h("span", { class: "muted" }, `${page.offset + 1}–${end} of ${page.total}`),
    end < page.total ? h("a", { class: "btn", href: go(page.offset + page.limit) }, "Older →") : null);
}

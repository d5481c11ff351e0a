// The servers page: each server's catalogue, when it was seen, the sessions that used it, and
// its tool drift with the old and the new definition side by side.
import { h, api, fmtTime, chip, shortId, inline } from "./util.js";

export async function renderServers(app) {
  const [inv, drift] = await Promise.all([api("/api/servers"), api("/api/drift")]);
  // `?server=TEXT` keeps the servers whose endpoint or name contains TEXT (a shareable view).
  const only = (new URLSearchParams(location.search).get("server") || "").toLowerCase();
  const servers = (inv.servers || []).filter((s) =>
    !only || s.server.toLowerCase().includes(only) || (s.server_name || "").toLowerCase().includes(only));
  const diffs = drift.drift || [];
  app.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Servers"),
      h("span", { class: "muted" }, only ? `${servers.length} matching “${only}” · ` : `${servers.length} seen`,
        only ? h("a", { href: "/servers" }, "show all") : null)),
    ...(servers.length ? servers.map((s) => renderServer(s, diffs.filter((d) => d.server === s.server)))
      : [h("div", { class: "empty" }, "No servers seen yet.")]));
}

function renderServer(s, diffs) {
  const n = (v) => (Array.isArray(v) ? v.length : 0);
  return h("section", { class: "card server", "data-server": s.server },
    h("div", { class: "head-title" },
      h("h2", {}, s.server_name || "unknown server", s.server_version ? h("span", { class: "muted" }, ` ${s.server_version}`) : null),
      h("span", { class: "mono muted" }, s.server),
      diffs.length ? chip(`${diffs.length} drift`, "attack") : null),
    h("div", { class: "facts" },
      fact("First seen", fmtTime(s.first_seen)),
      fact("Last seen", fmtTime(s.last_seen)),
      fact("Tools", n(s.tools)), fact("Resources", n(s.resources)),
      fact("Templates", n(s.resource_templates)), fact("Prompts", n(s.prompts)),
      fact("Sessions", s.sessions.length)),
    h("div", { class: "grid2" },
      h("div", {},
        listTable("Tools", s.tools, ["Tool", "Description", "Parameters"], (t) => [
          h("span", { class: "mono strong" }, t.name), t.description || t.title || "", params(t.inputSchema)]),
        listTable("Resources", s.resources, ["URI", "Name", "Type"], (r) => [h("span", { class: "mono" }, r.uri), r.name || "", r.mimeType || ""]),
        listTable("Templates", s.resource_templates, ["URI template", "Name"], (r) => [h("span", { class: "mono" }, r.uriTemplate), r.name || ""]),
        listTable("Prompts", s.prompts, ["Prompt", "Description", "Arguments"], (p) => [
          h("span", { class: "mono strong" }, p.name), p.description || "", (p.arguments || []).map((a) => chip(a.name + (a.required ? "*" : ""), "param"))])),
      h("div", {},
        h("h3", {}, "Sessions"),
        s.sessions.length ? h("ul", { class: "session-list" }, s.sessions.slice(0, 20).map((x) =>
          h("li", {}, h("a", { class: "mono", href: `/session/${encodeURIComponent(x.key)}` }, shortId(x.session_id)),
            h("span", { class: "muted small" }, fmtTime(x.started)), chip(x.status, x.status === "active" ? "active" : "ended"),
            x.tools.map((t) => chip(t, "tool"))))) : h("p", { class: "muted" }, "none"),
        s.sessions.length > 20 ? h("p", { class: "muted small" }, `and ${s.sessions.length - 20} more`) : null)),
    diffs.length ? h("div", { class: "drifts" }, h("h3", {}, "Tool drift"), diffs.map(renderDrift)) : null);
}

function fact(k, v) {
  return h("div", { class: "fact" }, h("div", { class: "k" }, k), h("div", { class: "v" }, String(v)));
}

function params(schema) {
  const props = schema && schema.properties ? Object.entries(schema.properties) : [];
  const req = new Set((schema && schema.required) || []);
  return props.map(([k, v]) => chip(`${k}${req.has(k) ? "*" : ""}: ${v.type || "any"}`, "param"));
}

function listTable(title, list, head, cells) {
  if (!Array.isArray(list)) return null;
  return h("div", { class: "list-block" },
    h("h3", {}, title, h("span", { class: "muted small" }, ` ${list.length}`)),
    list.length ? h("table", { class: "plain" },
      h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
      h("tbody", {}, list.map((x) => h("tr", {}, cells(x).map((c) => h("td", {}, c)))))) : h("p", { class: "muted" }, "none"));
}

/** Old and new definitions side by side, one row per field, changed fields highlighted. */
function renderDrift(d) {
  const old = d.old || {};
  const neu = d.new || {};
  const keys = [...new Set([...Object.keys(old), ...Object.keys(neu)])];
  const show = (v) => (v === undefined ? h("span", { class: "muted" }, "(absent)") : h("pre", { class: "json" }, typeof v === "string" ? v : JSON.stringify(v, null, 2)));
  return h("div", { class: "drift" },
    h("div", { class: "line" }, chip("drift", "attack"), h("span", { class: "mono strong" }, d.tool),
      h("span", { class: "muted" }, `changed ${(d.fields || []).join(", ")} · ${fmtTime(d.time)} · seen on ${d.hostname}`),
      d.session_key ? h("a", { href: `/session/${encodeURIComponent(d.session_key)}` }, "session") : null),
    (d.old || d.new) ? h("table", { class: "diff" },
      h("thead", {}, h("tr", {}, h("th", {}, "Field"), h("th", {}, "Before"), h("th", {}, "After"))),
      h("tbody", {}, keys.map((k) => {
        const changed = JSON.stringify(old[k]) !== JSON.stringify(neu[k]);
        if (!changed) {
          // Unchanged fields stay one line, across both sides.
          return h("tr", { class: "same" }, h("td", { class: "mono" }, k),
            h("td", { colspan: 2 }, h("code", { class: "muted" }, inline(neu[k], 160)), h("span", { class: "muted small unchanged" }, "unchanged")));
        }
        return h("tr", { class: "changed" },
          h("td", { class: "mono" }, k), h("td", { class: "old" }, show(old[k])), h("td", { class: "new" }, show(neu[k])));
      }))) : h("p", { class: "muted" }, `definitions not stored (hashes ${inline(d.fields)})`));
}

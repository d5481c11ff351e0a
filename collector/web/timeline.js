// A session's timeline: every event in order, calls paired with their answers (multi-round
// calls grouped), latency bars scaled to the slowest call, verdicts with the offending request,
// and who saw each event when several agents or processes did.
import { h, api, fmtDuration, fmtTime, chip, jsonBlock, inline, shortId } from "./util.js";

const observerOf = (e) => `${e.hostname} · ${e.comm}[${e.pid}] · ${e.side}`;
const opposite = (d) => (d === "client_to_server" ? "server_to_client" : "client_to_server");
const idText = (id) => JSON.stringify(id ?? null);

export async function renderTimeline(app, key) {
  const data = await api(`/api/sessions/${encodeURIComponent(key)}`);
  const s = data.session;
  const events = data.events || [];
  const observers = [...new Set(events.map(observerOf))];
  const many = observers.length > 1;
  const items = buildItems(events);
  const t0 = s ? s.started_ms * 1e6 : events.length ? events[0].ts_unix_ns : 0;
  const maxLatency = Math.max(1, ...items.filter((i) => i.latencyNs).map((i) => i.latencyNs));

  app.replaceChildren(
    h("nav", { class: "crumbs" }, h("a", { href: "/" }, "Sessions"), " / ", h("span", { class: "mono" }, s ? shortId(s.session_id) : key)),
    s ? header(s, observers) : h("div", { class: "empty" }, "No session summary yet."),
    h("h2", {}, "Timeline ", h("span", { class: "muted small" }, `${items.length} events`)),
    h("div", { class: "timeline", id: "timeline" },
      items.map((i) => renderItem(i, t0, maxLatency, many))));
}

function header(s, observers) {
  const kv = (k, v) => h("div", { class: "kv" }, h("div", { class: "k" }, k), h("div", { class: "v" }, v));
  return h("section", { class: "card session-head" },
    h("div", { class: "head-title" },
      h("h1", {}, s.server_name || "unknown server", s.server_version ? h("span", { class: "muted" }, ` ${s.server_version}`) : null),
      chip(s.status, s.status === "active" ? "active" : "ended"),
      s.attacks.map((a) => chip(a.replaceAll("_", " "), "attack"))),
    h("div", { class: "kvs" },
      kv("Session", h("span", { class: "mono" }, s.session_id)),
      kv("Server", h("span", { class: "mono" }, s.server)),
      kv("Client", `${s.client_name || "–"} ${s.client_version || ""}`),
      kv("User", s.user || "–"),
      kv("Role", s.role || "–"),
      kv("Protocol", s.protocol_version || "–"),
      kv("Started", fmtTime(s.started_ms)),
      kv("Duration", fmtDuration(s.duration_ms)),
      kv("Calls / errors", `${s.calls} / ${s.errors}`),
      kv("Ended", s.ended ? `${fmtTime(s.ended)}${s.end_reason ? ` (${s.end_reason.replaceAll("_", " ")})` : ""}` : "still active"),
      kv("Seen by", h("div", {}, observers.map((o) => h("div", { class: "mono small" }, o))))));
}

/** Groups the raw events into display items (calls, notifications, verdicts, …). */
function buildItems(events) {
  const items = [];
  const byKey = new Map();
  const seen = new Map(); // occurrence counters per observer and signature
  const add = (k, make, e) => {
    let it = byKey.get(k);
    if (!it) {
      it = make();
      it.ts = e.ts_unix_ns;
      it.observers = new Set();
      items.push(it);
      byKey.set(k, it);
    }
    it.observers.add(observerOf(e));
    return it;
  };
  const occurrence = (e, sig) => {
    const k = `${observerOf(e)}|${sig}`;
    const n = (seen.get(k) || 0) + 1;
    seen.set(k, n);
    return `${sig}#${n}`;
  };
  for (const e of events) {
    const r = e.record;
    switch (e.rtype) {
      case "message": {
        if (r.kind === "request") {
          const group = r.call_id !== undefined && r.call_id !== null ? r.call_id : r.id;
          const k = `call|${r.direction}|${idText(group)}`;
          const it = add(k, () => ({ type: "call", method: r.method, name: r.name, rounds: new Map() }), e);
          const round = roundOf(it, r.round || 1);
          round.request ??= r;
          if (!it.name && r.name) it.name = r.name;
        } else if (r.kind === "response" || r.kind === "error") {
          const group = r.call_id !== undefined && r.call_id !== null ? r.call_id : r.id;
          const k = `call|${opposite(r.direction)}|${idText(group)}`;
          const it = add(k, () => ({ type: "call", method: r.method, name: r.name, rounds: new Map() }), e);
          const round = roundOf(it, r.round || 1);
          // Prefer the client's view of latency (it includes the network).
          if (!round.answer || e.side === "client") round.answer = r;
          if (r.latency_ns && (!it.latencyBy || e.side === "client")) it.latencyBy = e.side;
        } else {
          const sig = `note|${r.direction}|${r.method}|${JSON.stringify(r.params ?? null)}|${idText(r.related_id)}`;
          add(occurrence(e, sig), () => ({ type: "notification", record: r }), e);
        }
        break;
      }
      case "verdict": {
        const sig = `verdict|${r.method}|${idText(r.id)}|${r.rule_id}|${r.action}`;
        add(occurrence(e, sig), () => ({ type: "verdict", record: r }), e);
        break;
      }
      case "session_start":
      case "session_end": {
        add(`${e.rtype}`, () => ({ type: e.rtype, record: r }), e);
        break;
      }
      case "session_update":
        break;
      default: {
        const sig = `${e.rtype}|${JSON.stringify(r.tool ?? r.changed ?? r.id ?? null)}`;
        add(occurrence(e, sig), () => ({ type: e.rtype, record: r }), e);
      }
    }
  }
  for (const it of items) {
    if (it.type !== "call") continue;
    it.latencyNs = [...it.rounds.values()].reduce((a, r) => a + (r.answer?.latency_ns || 0), 0);
  }
  items.sort((a, b) => a.ts - b.ts);
  return items;
}

function roundOf(it, n) {
  if (!it.rounds.has(n)) it.rounds.set(n, {});
  return it.rounds.get(n);
}

function when(ts, t0) {
  const d = (ts - t0) / 1e6;
  return h("div", { class: "when mono", title: new Date(ts / 1e6).toISOString() }, `+${fmtDuration(Math.max(0, d))}`);
}

function seenBy(it, many) {
  if (!many) return null;
  return h("div", { class: "seen" }, [...it.observers].map((o) => chip(o, "observer")));
}

function renderItem(it, t0, maxLatency, many) {
  switch (it.type) {
    case "call":
      return renderCall(it, t0, maxLatency, many);
    case "notification":
      return renderNotification(it, t0, many);
    case "verdict":
      return renderVerdict(it, t0, many);
    case "session_start":
      return row(it, t0, many, "start", "Session started",
        `${it.record.client_name || "client"} → ${it.record.server_name || it.record.server}`);
    case "session_end":
      return row(it, t0, many, "end", "Session ended",
        it.record.end_reason ? `reason: ${it.record.end_reason.replaceAll("_", " ")}` : "");
    case "catalog": {
      const r = it.record;
      const n = (k) => (Array.isArray(r[k]) ? r[k].length : 0);
      return row(it, t0, many, "catalog", "Catalogue",
        `${n("tools")} tools, ${n("resources")} resources, ${n("resource_templates")} templates, ${n("prompts")} prompts (changed: ${r.changed})`,
        h("details", {}, h("summary", {}, "definitions"), jsonBlock(r.tools ?? r)));
    }
    case "tool_drift":
      return row(it, t0, many, "drift", `Tool drift: ${it.record.tool}`,
        `changed ${(it.record.fields || []).join(", ")}`, h("a", { href: "/servers" }, "see the diff on the servers page"));
    case "call_cancelled":
      return row(it, t0, many, "cancel", `Cancelled: ${it.record.method || ""}`,
        `id ${idText(it.record.id)}${it.record.reason ? ` · ${it.record.reason.replaceAll("_", " ")}` : ""}`);
    default:
      return row(it, t0, many, "other", it.type, "", jsonBlock(it.record));
  }
}

function row(it, t0, many, cls, title, sub, ...extra) {
  return h("div", { class: `ev ev-${cls}` },
    when(it.ts, t0),
    h("div", { class: "dot" }),
    h("div", { class: "body" },
      h("div", { class: "line" }, h("span", { class: "title" }, title), sub ? h("span", { class: "muted" }, sub) : null),
      extra, seenBy(it, many)));
}

function callStatus(it) {
  const rounds = [...it.rounds.values()];
  const last = rounds[rounds.length - 1]?.answer;
  if (!last) return ["pending", "pending"];
  if (last.cancelled) return ["cancelled", "warn"];
  if (last.kind === "error") return [`error ${last.error_code ?? ""}`.trim(), "bad"];
  if (last.tool_error) return ["tool error", "bad"];
  if (last.result_type === "input_required") return ["input required", "warn"];
  return ["ok", "ok"];
}

function renderCall(it, t0, maxLatency, many) {
  const [status, cls] = callStatus(it);
  const pct = it.latencyNs ? Math.max(0.8, (100 * it.latencyNs) / maxLatency) : 0;
  const rounds = [...it.rounds.entries()];
  const first = rounds[0]?.[1];
  const args = first?.request?.params?.arguments;
  const method = it.method || first?.request?.method || "?";
  const isHandshake = method === "initialize" || method === "server/discover";
  return h("div", { class: `ev ev-call ${cls === "bad" ? "ev-failed" : ""} ${isHandshake ? "ev-handshake" : ""}` },
    when(it.ts, t0),
    h("div", { class: "dot" }),
    h("div", { class: "body" },
      h("div", { class: "line" },
        h("span", { class: "method mono" }, method),
        it.name ? h("span", { class: "name mono" }, it.name) : null,
        chip(status, `st-${cls}`),
        rounds.length > 1 ? chip(`${rounds.length} rounds`, "rounds") : null,
        h("span", { class: "id muted small mono" }, `id ${idText(first?.request?.id ?? first?.answer?.id)}`)),
      h("div", { class: "latency", title: it.latencyNs ? `${fmtDuration(it.latencyNs / 1e6)}` : "no answer" },
        h("div", { class: "bar-track" }, h("div", { class: `bar bar-${cls}`, style: { width: `${pct}%` } })),
        h("span", { class: "lat mono" }, it.latencyNs ? fmtDuration(it.latencyNs / 1e6) : "–")),
      args !== undefined ? h("div", { class: "args" }, h("span", { class: "k" }, "arguments"), h("code", {}, inline(args))) : null,
      rounds.map(([n, r]) => renderRound(n, r, rounds.length > 1)),
      seenBy(it, many)));
}

function renderRound(n, r, multi) {
  const a = r.answer;
  const parts = [];
  if (multi) parts.push(h("div", { class: "round-label" }, `round ${n}`));
  if (a?.kind === "error") {
    parts.push(h("div", { class: "err" }, h("span", { class: "k" }, "error"),
      h("span", {}, `${a.error_code ?? ""} ${a.error_name ? `(${a.error_name}) ` : ""}${a.error_message || ""}`)));
  } else if (a?.tool_error) {
    parts.push(h("div", { class: "err" }, h("span", { class: "k" }, "tool error"), h("span", {}, a.error_message || inline(a.result))));
  } else if (a?.result !== undefined) {
    const text = resultText(a.result);
    parts.push(h("div", { class: "res" }, h("span", { class: "k" }, a.result_type === "input_required" ? "input required" : "result"), h("code", {}, text)));
  }
  const details = [];
  if (r.request?.params !== undefined) details.push(h("div", {}, h("div", { class: "k" }, "request params"), jsonBlock(r.request.params)));
  if (a?.result !== undefined) details.push(h("div", {}, h("div", { class: "k" }, "result"), jsonBlock(a.result)));
  if (a?.error_data !== undefined) details.push(h("div", {}, h("div", { class: "k" }, "error data"), jsonBlock(a.error_data)));
  if (details.length) parts.push(h("details", { class: "raw" }, h("summary", {}, "full content"), h("div", { class: "raw-grid" }, details)));
  return h("div", { class: "round" }, parts);
}

function resultText(result) {
  if (result && Array.isArray(result.content)) {
    const texts = result.content.filter((c) => c.type === "text").map((c) => c.text);
    if (texts.length) return inline(texts.join(" "));
  }
  if (result && Array.isArray(result.tools)) return `${result.tools.length} tools: ${result.tools.map((t) => t.name).join(", ")}`;
  if (result && result.serverInfo) return `${result.serverInfo.name} ${result.serverInfo.version || ""} · protocol ${result.protocolVersion || "?"}`;
  return inline(result);
}

function renderNotification(it, t0, many) {
  const r = it.record;
  const arrow = r.direction === "client_to_server" ? "client → server" : "server → client";
  let sub = "";
  if (r.method === "notifications/message") sub = `${r.params?.level || ""}: ${inline(r.params?.data)}`;
  else if (r.method === "notifications/progress") sub = `${r.params?.progress ?? "?"}/${r.params?.total ?? "?"} ${r.params?.message || ""}`;
  else if (r.method === "notifications/cancelled") sub = `request ${idText(r.params?.requestId)}${r.params?.reason ? `: ${r.params.reason}` : ""}`;
  else if (r.params) sub = inline(r.params);
  return h("div", { class: `ev ev-note ${r.method === "notifications/cancelled" ? "ev-cancel" : ""}` },
    when(it.ts, t0),
    h("div", { class: "dot" }),
    h("div", { class: "body" },
      h("div", { class: "line" }, h("span", { class: "method mono" }, r.method), h("span", { class: "muted small" }, arrow),
        r.related_id !== undefined && r.related_id !== null ? h("span", { class: "muted small mono" }, `for id ${idText(r.related_id)}`) : null),
      sub ? h("div", { class: "note-text" }, sub) : null,
      seenBy(it, many)));
}

function renderVerdict(it, t0, many) {
  const r = it.record;
  return h("div", { class: `ev ev-verdict act-${r.action}` },
    when(it.ts, t0),
    h("div", { class: "dot" }),
    h("div", { class: "body" },
      h("div", { class: "line" },
        chip(String(r.action).toUpperCase(), `act act-${r.action}`),
        h("span", { class: "method mono" }, r.method), r.name ? h("span", { class: "name mono" }, r.name) : null,
        h("span", { class: "muted" }, `rule ${r.rule_id || "(default)"}`),
        r.enforcement ? h("span", { class: "muted small" }, `enforcement: ${String(r.enforcement).replaceAll("_", " ")}`) : null),
      (r.reasons || []).map((x) => h("div", { class: "reason" }, chip(String(x.kind).replaceAll("_", " "), "attack"), h("span", {}, x.detail))),
      r.request !== undefined && r.request !== null ? h("div", { class: "offending" }, h("div", { class: "k" }, "offending request"), jsonBlock(r.request)) : null,
      seenBy(it, many)));
}

// Scripted MCP client for mcpwarden's enforcement tests, on the official TypeScript SDK
// (`@modelcontextprotocol/sdk` 1.32.2; node's OpenSSL is linked into the `node` executable).
// Same script and output as tests/peers/python/policy_client.py:
//
//     node policy_client.mjs URL SCRIPT_JSON      (HTTPS: NODE_EXTRA_CA_CERTS)
//
// SCRIPT_JSON: a list of sessions, each a list of {"op":"call","tool","args"} | {"op":"list"} |
// {"op":"sleep","ms"}. A session whose connection is reset ends there ("connection_error",
// then "skipped"). Prints {"pid", "sessions": [[{op, tool, outcome, text, ms}, ...], ...]}.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, scriptJson] = process.argv.slice(2);
if (!url || !scriptJson) {
  console.error("usage: node policy_client.mjs URL SCRIPT_JSON");
  process.exit(2);
}
const script = JSON.parse(scriptJson);
const text = (content) => (content ?? []).filter((c) => c.type === "text").map((c) => c.text);
const CALL_TIMEOUT_MS = 20000;

async function runSession(ops) {
  const results = [];
  const client = new Client({ name: "mcpwarden-policy-client-node", version: "0.2.0" }, { capabilities: {} });
  const transport = new StreamableHTTPClientTransport(new URL(url));
  try {
    await client.connect(transport);
  } catch (e) {
    results.push({ op: "initialize", outcome: "connection_error", text: [String(e).slice(0, 200)] });
    for (const op of ops) results.push({ op: op.op, tool: op.tool ?? null, outcome: "skipped" });
    return results;
  }
  let broken = false;
  for (const op of ops) {
    const entry = { op: op.op, tool: op.tool ?? null };
    results.push(entry);
    if (broken) {
      entry.outcome = "skipped";
      continue;
    }
    const started = performance.now();
    try {
      if (op.op === "call") {
        const r = await client.callTool({ name: op.tool, arguments: op.args ?? {} }, undefined, { timeout: CALL_TIMEOUT_MS });
        entry.outcome = r.isError ? "tool_error" : "ok";
        entry.text = text(r.content);
      } else if (op.op === "list") {
        const r = await client.listTools();
        entry.outcome = "ok";
        entry.text = r.tools.map((t) => t.name);
      } else if (op.op === "sleep") {
        await new Promise((r) => setTimeout(r, op.ms));
        entry.outcome = "ok";
      }
    } catch (e) {
      const msg = String(e?.message ?? e);
      // A JSON-RPC error answer has a numeric code; a reset connection surfaces as a fetch
      // or socket failure.
      const rpc = typeof e?.code === "number" && e.code !== -32001 && !/fetch failed|socket|ECONN|terminated/i.test(msg);
      entry.outcome = rpc ? "rpc_error" : "connection_error";
      entry.text = [msg.slice(0, 200)];
      broken = !rpc;
    }
    entry.ms = Math.round((performance.now() - started) * 1000) / 1000;
  }
  try {
    if (!broken) await transport.terminateSession();
  } catch {
    // the session may already be gone
  }
  await client.close().catch(() => {});
  return results;
}

const sessions = [];
for (const ops of script) sessions.push(await runSession(ops));
console.log(JSON.stringify({ pid: process.pid, sessions }));
process.exit(0);

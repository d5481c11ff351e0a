// The Python peers' scripted conversation (see tests/peers/python/client.py), driven by the
// official TypeScript SDK client (`@modelcontextprotocol/sdk` 1.32.2) on node, whose OpenSSL is
// linked into the `node` executable. Prints a JSON summary with the same fields as client.py:
//
//     node conversation_client.mjs URL        (HTTPS: trust a test cert with NODE_EXTRA_CA_CERTS;
//                                              MCPWARDEN_PAUSE_FILE: pause after initialize)
//
// initialize (+ notifications/initialized), tools/list, tools/call add {a:2,b:3},
// tools/call fail {reason:"on purpose"}, resources/read config://app, prompts/get greet
// {name:"mcpwarden"}, then DELETE (terminateSession) and close.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { existsSync, readFileSync } from "node:fs";

const CLIENT_NAME = "mcpwarden-test-client";
const CLIENT_VERSION = "0.1.0";

const url = process.argv[2];
if (!url) {
  console.error("usage: node conversation_client.mjs URL");
  process.exit(2);
}

const client = new Client({ name: CLIENT_NAME, version: CLIENT_VERSION }, { capabilities: {} });
const transport = new StreamableHTTPClientTransport(new URL(url));
const text = (content) => content.filter((c) => c.type === "text").map((c) => c.text);

const summary = {
  pid: process.pid,
  comm: readFileSync("/proc/self/comm", "utf8").trim(),
  url,
  client_name: CLIENT_NAME,
  client_version: CLIENT_VERSION,
};

await client.connect(transport);
const server = client.getServerVersion();
summary.server_name = server?.name ?? null;
summary.server_version = server?.version ?? null;
summary.protocol_version = transport.protocolVersion ?? null;
summary.session_id = transport.sessionId ?? null;

// Tests that start the agent after initialize: say so, then wait for the go (the keep-alive
// TLS connection opened so far is reused by the calls below).
const pauseFile = process.env.MCPWARDEN_PAUSE_FILE;
if (pauseFile) {
  console.error(JSON.stringify({ initialized: true, pid: process.pid }));
  while (!existsSync(pauseFile)) {
    await new Promise((r) => setTimeout(r, 50));
  }
}

const tools = await client.listTools();
summary.tools = tools.tools.map((t) => t.name);

const added = await client.callTool({ name: "add", arguments: { a: 2, b: 3 } });
summary.add = { is_error: Boolean(added.isError), text: text(added.content), structured: added.structuredContent ?? null };

const failed = await client.callTool({ name: "fail", arguments: { reason: "on purpose" } });
summary.fail = { is_error: Boolean(failed.isError), text: text(failed.content) };

const resource = await client.readResource({ uri: "config://app" });
summary.resource = resource.contents.map((c) => c.text ?? null);

const prompt = await client.getPrompt({ name: "greet", arguments: { name: "mcpwarden" } });
summary.prompt = prompt.messages.map((m) => m.content?.text ?? null);

await transport.terminateSession();
await client.close();
console.log(JSON.stringify(summary));

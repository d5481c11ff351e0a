// MCP test client for mcpwarden (official TypeScript SDK v2: `@modelcontextprotocol/client`
// 2.4.0, plain JavaScript for Node 20), negotiating the era with `versionNegotiation:
// {mode: "auto"}` (a `server/discover` probe, falling back to `initialize`). Prints a JSON summary:
//
//     node modern_client.mjs URL
//
// Conversation, in order: (probe) tools/list, tools/call add {a: 2, b: 3}, tools/call fail
// {reason: "on purpose"}, resources/read config://app, prompts/get greet {name: "mcpwarden"},
// tools/call route {region: "eu-west-1", query: "q1"}, then close.

import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { readFileSync } from "node:fs";

const url = process.argv[2];
if (!url) {
  console.error("usage: node modern_client.mjs URL");
  process.exit(2);
}

const client = new Client(
  { name: "mcpwarden-ts-modern-client", version: "2.4.0" },
  { versionNegotiation: { mode: "auto" } },
);
const transport = new StreamableHTTPClientTransport(new URL(url));
const summary = {
  pid: process.pid,
  comm: readFileSync("/proc/self/comm", "utf8").trim(),
  url,
};
const text = (content) => content.map((c) => c.text ?? c.type);

await client.connect(transport);
summary.server = client.getServerVersion();
summary.protocol_version = transport.protocolVersion ?? null;

const tools = await client.listTools();
summary.tools = tools.tools.map((t) => t.name);
const add = await client.callTool({ name: "add", arguments: { a: 2, b: 3 } });
summary.add = { is_error: Boolean(add.isError), text: text(add.content) };
const fail = await client.callTool({ name: "fail", arguments: { reason: "on purpose" } });
summary.fail = { is_error: Boolean(fail.isError), text: text(fail.content) };
const read = await client.readResource({ uri: "config://app" });
summary.resource = read.contents.map((c) => c.text ?? c.blob);
const prompt = await client.getPrompt({ name: "greet", arguments: { name: "mcpwarden" } });
summary.prompt = prompt.messages.map((m) => m.content.text);
const route = await client.callTool({ name: "route", arguments: { region: "eu-west-1", query: "q1" } });
summary.route = text(route.content);

await client.close();
console.log(JSON.stringify(summary));

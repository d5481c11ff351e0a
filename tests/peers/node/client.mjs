// MCP test client for mcpwarden (official TypeScript SDK `@modelcontextprotocol/sdk`, plain
// JavaScript so Node 20 runs it as is). Drives one handshake-era conversation over streamable
// HTTP against `@modelcontextprotocol/server-everything` and prints a JSON summary on stdout:
//
//     node client.mjs URL
//
// Conversation, in order: initialize (+ notifications/initialized, after which the SDK opens
// the GET listening stream), tools/list, tools/call echo, tools/call
// trigger-long-running-operation with a progress token (3 progress notifications),
// tools/call trigger-sampling-request (the server asks this client sampling/createMessage on
// the call's SSE stream; the client answers with a canned message), resources/list,
// resources/read of a small dynamic resource, prompts/list, prompts/get simple-prompt and
// args-prompt, then DELETE (terminateSession) and close.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { readFileSync } from "node:fs";

const url = process.argv[2];
if (!url) {
  console.error("usage: node client.mjs URL");
  process.exit(2);
}

const client = new Client(
  { name: "mcpwarden-node-test-client", version: "0.1.0" },
  { capabilities: { sampling: {} } },
);
client.setRequestHandler(CreateMessageRequestSchema, async (request) => ({
  role: "assistant",
  model: "canned-test-model",
  stopReason: "endTurn",
  content: {
    type: "text",
    text: `canned answer to: ${request.params.messages[0]?.content?.text ?? ""}`,
  },
}));

const transport = new StreamableHTTPClientTransport(new URL(url));
const summary = {
  pid: process.pid,
  comm: readFileSync("/proc/self/comm", "utf8").trim(),
  url,
};

await client.connect(transport);
summary.session_id = transport.sessionId;
summary.server = client.getServerVersion();
summary.protocol_version = transport.protocolVersion ?? null;

const tools = await client.listTools();
summary.tools = tools.tools.map((t) => t.name);

const echo = await client.callTool({ name: "echo", arguments: { message: "hello from node" } });
summary.echo = echo.content.map((c) => c.text);

const progress = [];
const long = await client.callTool(
  { name: "trigger-long-running-operation", arguments: { duration: 0.6, steps: 3 } },
  undefined,
  { onprogress: (p) => progress.push(p) },
);
summary.long_running = long.content.map((c) => c.text);
summary.progress = progress;

const sampling = await client.callTool({
  name: "trigger-sampling-request",
  arguments: { prompt: "say hi", maxTokens: 20 },
});
summary.sampling = sampling.content.map((c) => c.text ?? c.type);

const resources = await client.listResources();
summary.resources = resources.resources.map((r) => r.uri);
const read = await client.readResource({ uri: "demo://resource/dynamic/text/1" });
summary.read = read.contents.map((c) => c.text ?? c.blob);

const prompts = await client.listPrompts();
summary.prompts = prompts.prompts.map((p) => p.name);
const simple = await client.getPrompt({ name: "simple-prompt" });
summary.simple_prompt = simple.messages.map((m) => m.content.text);
const args = await client.getPrompt({ name: "args-prompt", arguments: { city: "Paris", state: "TX" } });
summary.args_prompt = args.messages.map((m) => m.content.text);

await transport.terminateSession();
await client.close();
console.log(JSON.stringify(summary));

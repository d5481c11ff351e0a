// MCP test server for mcpwarden (official TypeScript SDK v2: `@modelcontextprotocol/server`
// 2.4.0 behind `@modelcontextprotocol/node` 2.1.2, plain JavaScript for Node 20). Serves the
// stateless revision (2026-07-28) with `createMcpHandler` (a fresh McpServer per request) and,
// for 2025-era clients, the SDK's stateless legacy fallback.
//
//     node modern_server.mjs PORT
//
// http://127.0.0.1:PORT/mcp (plain node:http). The same offer as tests/peers/python/server.py,
// plus `route` (an `x-mcp-header` argument):
//   tool     add(a: int, b: int) -> int     (structured result {result})
//   tool     fail(reason: str)              result with isError: true
//   tool     route(region: str [x-mcp-header "Region"], query: str)
//   resource config://app                  text
//   prompt   greet(name: str)
// Prints {"listening": PORT} on stdout once it listens.

import { createServer } from "node:http";
import { toNodeHandler } from "@modelcontextprotocol/node";
import { createMcpHandler, McpServer } from "@modelcontextprotocol/server";
import { z } from "zod";

const port = Number(process.argv[2]);
if (!port) {
  console.error("usage: node modern_server.mjs PORT");
  process.exit(2);
}

function buildServer() {
  const server = new McpServer({ name: "mcpwarden-ts-modern-server", version: "2.4.0" });
  server.registerTool(
    "add",
    {
      description: "Add two integers.",
      inputSchema: z.object({ a: z.number().int(), b: z.number().int() }),
      outputSchema: z.object({ result: z.number().int() }),
    },
    async ({ a, b }) => ({
      content: [{ type: "text", text: String(a + b) }],
      structuredContent: { result: a + b },
    }),
  );
  server.registerTool(
    "fail",
    { description: "Always fail.", inputSchema: z.object({ reason: z.string() }) },
    async ({ reason }) => ({
      content: [{ type: "text", text: `requested failure: ${reason}` }],
      isError: true,
    }),
  );
  server.registerTool(
    "route",
    {
      description: "Run a query in a region (mirrored into Mcp-Param-Region).",
      inputSchema: z.object({
        region: z.string().meta({ "x-mcp-header": "Region" }),
        query: z.string(),
      }),
    },
    async ({ region, query }) => ({ content: [{ type: "text", text: `${query} @ ${region}` }] }),
  );
  server.registerResource(
    "app_config",
    "config://app",
    { description: "Static application configuration.", mimeType: "text/plain" },
    async (uri) => ({ contents: [{ uri: uri.href, text: "mode=test\nversion=1\n" }] }),
  );
  server.registerPrompt(
    "greet",
    { description: "Greet someone by name.", argsSchema: z.object({ name: z.string() }) },
    ({ name }) => ({
      messages: [
        { role: "user", content: { type: "text", text: `Hello, ${name}! Please greet the user warmly.` } },
      ],
    }),
  );
  return server;
}

const handler = toNodeHandler(createMcpHandler(buildServer));
const http = createServer((req, res) => {
  if (!req.url?.startsWith("/mcp")) {
    res.writeHead(404).end();
    return;
  }
  handler(req, res);
});
http.listen(port, "127.0.0.1", () => {
  console.log(JSON.stringify({ listening: port }));
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => process.exit(0));
}

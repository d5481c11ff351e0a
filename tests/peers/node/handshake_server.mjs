// MCP test server for mcpwarden (official TypeScript SDK `@modelcontextprotocol/sdk` 1.32.2,
// plain JavaScript so Node 20 runs it as is). Handshake era only (2025-03-26 … 2025-11-25):
// the SDK 1.x does not speak 2026-07-28, so a client probing `server/discover` gets the SDK's
// usual refusal and falls back to `initialize`.
//
//     node handshake_server.mjs PORT [--tls CERT KEY]
//
// Streamable HTTP at http://127.0.0.1:PORT/mcp (node:http; with --tls, https through node's
// own OpenSSL: one event-loop thread driving every connection's TLS), one
// StreamableHTTPServerTransport per session, the same offer as tests/peers/python/server.py:
//   tool     add(a: int, b: int) -> int     (structured result {result})
//   tool     fail(reason: str)              result with isError: true
//   resource config://app                  text
//   prompt   greet(name: str)
// A POST without a known mcp-session-id that is not `initialize` is answered like the SDK's
// examples do: 400 {"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid
// session ID provided"},"id":null}. Prints {"listening": PORT} on stdout once it listens.

import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createTlsServer } from "node:https";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

const port = Number(process.argv[2]);
if (!port) {
  console.error("usage: node handshake_server.mjs PORT");
  process.exit(2);
}

function buildServer() {
  const server = new McpServer({ name: "mcpwarden-ts-handshake-server", version: "1.32.2" });
  server.registerTool(
    "add",
    {
      description: "Add two integers.",
      inputSchema: { a: z.number().int(), b: z.number().int() },
      outputSchema: { result: z.number().int() },
    },
    async ({ a, b }) => ({
      content: [{ type: "text", text: String(a + b) }],
      structuredContent: { result: a + b },
    }),
  );
  server.registerTool(
    "fail",
    { description: "Always fail.", inputSchema: { reason: z.string() } },
    async ({ reason }) => ({
      content: [{ type: "text", text: `requested failure: ${reason}` }],
      isError: true,
    }),
  );
  server.registerResource(
    "app_config",
    "config://app",
    { description: "Static application configuration.", mimeType: "text/plain" },
    async (uri) => ({ contents: [{ uri: uri.href, text: "mode=test\nversion=1\n" }] }),
  );
  server.registerPrompt(
    "greet",
    { description: "Greet someone by name.", argsSchema: { name: z.string() } },
    ({ name }) => ({
      messages: [
        { role: "user", content: { type: "text", text: `Hello, ${name}! Please greet the user warmly.` } },
      ],
    }),
  );
  return server;
}

const transports = new Map();

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? JSON.parse(text) : undefined;
}

function refuse(res, status, message) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message }, id: null }));
}

const tlsAt = process.argv.indexOf("--tls");
const tls =
  tlsAt > 0
    ? { cert: readFileSync(process.argv[tlsAt + 1]), key: readFileSync(process.argv[tlsAt + 2]) }
    : null;

const handler = async (req, res) => {
  try {
    if (!req.url?.startsWith("/mcp")) {
      res.writeHead(404).end();
      return;
    }
    const sessionId = req.headers["mcp-session-id"];
    if (req.method === "POST") {
      const body = await readJson(req);
      let transport = sessionId ? transports.get(sessionId) : undefined;
      if (!transport && !sessionId && isInitializeRequest(body)) {
        transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (id) => transports.set(id, transport),
        });
        transport.onclose = () => {
          if (transport.sessionId) transports.delete(transport.sessionId);
        };
        await buildServer().connect(transport);
      }
      if (!transport) {
        refuse(res, 400, "Bad Request: No valid session ID provided");
        return;
      }
      await transport.handleRequest(req, res, body);
      return;
    }
    const transport = sessionId ? transports.get(sessionId) : undefined;
    if (!transport) {
      refuse(res, 400, "Bad Request: No valid session ID provided");
      return;
    }
    await transport.handleRequest(req, res);
  } catch (e) {
    console.error(e);
    if (!res.headersSent) refuse(res, 500, "Internal error");
  }
};
const http = tls ? createTlsServer(tls, handler) : createServer(handler);

http.listen(port, "127.0.0.1", () => {
  console.log(JSON.stringify({ listening: port }));
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => process.exit(0));
}

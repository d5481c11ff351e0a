"""MCP test server for mcpwarden's end-to-end tests (official Python SDK `mcp` 2.3.0).

Serves streamable HTTP at /mcp on 127.0.0.1:<port> with uvicorn (handshake era, SSE
responses: the SDK default `json_response=False`).

    python server.py PORT [--tls CERT KEY] [--log FILE] [--large-tools] [--json-response]

Offers:
  tool     add(a: int, b: int) -> int
  tool     fail(reason: str)            raises, so the result carries isError: true
  resource config://app                 text
  prompt   greet(name: str)
and with --large-tools also (unstructured results, so a result is its text once):
  tool     blob(size: int) -> str        `size` bytes of text
  tool     measure(data: str) -> int     the length of its argument
With --json-response, answers are JSON bodies instead of SSE streams (the SDK client refuses
SSE events above 1 MiB).

With --log FILE, every HTTP response is appended to FILE as one JSON line
{"method", "path", "status", "mcp_session_id"} (the `mcp-session-id` response header,
or null), so a test can learn the session id the server handed out.
"""

from __future__ import annotations

import argparse
import json
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

SERVER_NAME = "mcpwarden-test-server"
SERVER_VERSION = "0.1.0"

server = MCPServer(SERVER_NAME, version=SERVER_VERSION)


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def fail(reason: str) -> str:
    """Always fail: the SDK turns the exception into a result with isError: true."""
    raise RuntimeError(f"requested failure: {reason}")


@server.resource("config://app")
def app_config() -> str:
    """Static application configuration."""
    return "mode=test\nversion=1\n"


@server.prompt()
def greet(name: str) -> str:
    """Greet someone by name."""
    return f"Hello, {name}! Please greet the user warmly."


def blob(size: int) -> str:
    """Return `size` characters of text (one large result)."""
    return "x" * size


def measure(data: str) -> int:
    """Return the length of `data` (one large argument)."""
    return len(data)


class ResponseLog:
    """Pure ASGI middleware: appends each HTTP response's status and mcp-session-id header.

    Pure ASGI (not Starlette's BaseHTTPMiddleware) so that SSE responses keep streaming.
    """

    def __init__(self, app, path: str) -> None:
        self.app = app
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (lives as long as the server)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def logging_send(message):
            if message["type"] == "http.response.start":
                session_id = None
                for name, value in message.get("headers", []):
                    if name.lower() == b"mcp-session-id":
                        session_id = value.decode("ascii")
                record = {
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": message["status"],
                    "mcp_session_id": session_id,
                }
                self.file.write(json.dumps(record) + "\n")
                self.file.flush()
            await send(message)

        return await self.app(scope, receive, logging_send)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve HTTPS with this cert and key")
    parser.add_argument("--log", metavar="FILE", help="append one JSON line per HTTP response")
    parser.add_argument("--large-tools", action="store_true", help="also offer blob and measure")
    parser.add_argument("--json-response", action="store_true", help="JSON bodies, not SSE")
    args = parser.parse_args()
    if args.large_tools:
        server.tool(structured_output=False)(blob)
        server.tool(structured_output=False)(measure)

    app = server.streamable_http_app(streamable_http_path="/mcp", json_response=args.json_response)
    if args.log:
        app = ResponseLog(app, args.log)

    ssl = {}
    if args.tls:
        ssl = {"ssl_certfile": args.tls[0], "ssl_keyfile": args.tls[1]}
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", **ssl)
    return 0


if __name__ == "__main__":
    sys.exit(main())

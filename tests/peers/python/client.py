"""MCP test client for mcpwarden's end-to-end tests (official Python SDK `mcp` 2.3.0).

Runs one handshake-era conversation over streamable HTTP and prints a JSON summary on stdout:

    python client.py URL [--cafile CERT] [--bearer TOKEN] [--wait-start PATH] [--wait-file PATH]

Conversation, in order: initialize (+ notifications/initialized), tools/list,
tools/call add {a: 2, b: 3}, tools/call fail {reason: "on purpose"}, resources/read config://app,
prompts/get greet {name: "mcpwarden"}, then leaving the transport context ends the session (DELETE).
The SDK also opens a GET stream after initialize; it carries no JSON-RPC message here.

Summary fields: pid, comm, client_name/client_version (what we sent), server_name/server_version/
protocol_version (from the InitializeResult), session_id (the `mcp-session-id` response header,
read with an httpx2 response hook), tools, results of each call, and `http` (every HTTP exchange:
method, status, session id header).
"""

from __future__ import annotations

import asyncio
import json
import argparse
import os
import ssl
import sys
import time

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types import Implementation, TextContent

CLIENT_NAME = "mcpwarden-test-client"
CLIENT_VERSION = "0.1.0"


def text_of(content) -> list[str]:
    return [c.text for c in content if isinstance(c, TextContent)]


async def converse(
    url: str, cafile: str | None = None, wait_file: str | None = None, bearer: str | None = None
) -> dict:
    exchanges: list[dict] = []
    session_ids: list[str] = []

    async def on_response(response: httpx2.Response) -> None:
        session_id = response.headers.get("mcp-session-id")
        if session_id is not None and session_id not in session_ids:
            session_ids.append(session_id)
        exchanges.append(
            {
                "method": response.request.method,
                "status": response.status_code,
                "request_session_id": response.request.headers.get("mcp-session-id"),
                "response_session_id": session_id,
            }
        )

    extra: dict = {}
    if cafile:
        extra["verify"] = ssl.create_default_context(cafile=cafile)
    if bearer:
        extra["headers"] = {"Authorization": f"Bearer {bearer}"}
    http_client = httpx2.AsyncClient(
        timeout=httpx2.Timeout(30.0, read=300.0),
        event_hooks={"response": [on_response]},
        **extra,
    )
    summary: dict = {"pid": os.getpid(), "comm": open("/proc/self/comm").read().strip(), "url": url}
    async with http_client:
        async with streamable_http_client(url, http_client=http_client) as (read, write):
            async with ClientSession(
                read, write, client_info=Implementation(name=CLIENT_NAME, version=CLIENT_VERSION)
            ) as session:
                init = await session.initialize()
                summary["client_name"] = CLIENT_NAME
                summary["client_version"] = CLIENT_VERSION
                summary["server_name"] = init.server_info.name
                summary["server_version"] = init.server_info.version
                summary["protocol_version"] = init.protocol_version
                if wait_file:
                    # Connected and initialized: tell the test, then wait for its go.
                    print(json.dumps({"initialized": True, "pid": os.getpid()}), file=sys.stderr, flush=True)
                    while not os.path.exists(wait_file):
                        await asyncio.sleep(0.05)

                tools = await session.list_tools()
                summary["tools"] = [t.name for t in tools.tools]

                added = await session.call_tool("add", {"a": 2, "b": 3})
                summary["add"] = {
                    "is_error": bool(added.is_error),
                    "text": text_of(added.content),
                    "structured": added.structured_content,
                }

                failed = await session.call_tool("fail", {"reason": "on purpose"})
                summary["fail"] = {"is_error": bool(failed.is_error), "text": text_of(failed.content)}

                resource = await session.read_resource("config://app")
                summary["resource"] = [getattr(c, "text", None) for c in resource.contents]

                prompt = await session.get_prompt("greet", {"name": "mcpwarden"})
                summary["prompt"] = [
                    getattr(m.content, "text", None) for m in prompt.messages
                ]
        # Leaving streamable_http_client sent the DELETE that ends the session.
    summary["session_ids"] = session_ids
    summary["session_id"] = session_ids[0] if len(session_ids) == 1 else None
    summary["http"] = exchanges
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description="MCP test client (official Python SDK)")
    parser.add_argument("url")
    parser.add_argument("--cafile", help="trust this CA/self-signed certificate (HTTPS)")
    parser.add_argument("--bearer", help="send Authorization: Bearer <this token> on every request")
    parser.add_argument(
        "--wait-start",
        help="before connecting, print a line on stderr and wait until this file exists",
    )
    parser.add_argument(
        "--wait-file",
        help="after initialize, print a line on stderr and wait until this file exists",
    )
    args = parser.parse_args()
    if args.wait_start:
        # Imports done (libssl is mapped): tell the test, then wait for its go.
        print(json.dumps({"ready": True, "pid": os.getpid()}), file=sys.stderr, flush=True)
        while not os.path.exists(args.wait_start):
            time.sleep(0.05)
    summary = asyncio.run(converse(args.url, args.cafile, args.wait_file, args.bearer))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

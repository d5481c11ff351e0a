"""Scripted MCP client for mcpwarden's enforcement and content tests (official Python SDK).

    python policy_client.py URL --script JSON [--cafile CERT] [--bearer TOKEN] [--wait-start FILE]

The script is a JSON list of sessions; each session is a list of operations run in order in
one handshake-era session (initialize, then the operations, then DELETE):
  {"op": "call", "tool": NAME, "args": {...}}      tools/call
      "pad": {ARG: N} adds string argument ARG of N bytes (too large for a command line)
  {"op": "list"}                                   tools/list
  {"op": "sleep", "ms": N}
A session whose connection is reset (the agent enforcing a verdict) ends there: the failing
operation is reported as "connection_error", the rest as "skipped"; the next session starts
afresh. Prints one JSON object: {"pid", "sessions": [[{op, tool, outcome, text, ms}, ...], ...]}
with outcome "ok" | "tool_error" | "rpc_error" | "connection_error" | "skipped".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import time

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import Implementation, TextContent

CLIENT = Implementation(name="mcpwarden-policy-client", version="0.2.0")
CALL_TIMEOUT = 20.0  # seconds
# The SDK transport's own error when a response stream breaks before its answer.
TRANSPORT_FAILURE = "stream ended without a response"


def texts(content) -> list[str]:
    return [c.text for c in content if isinstance(c, TextContent)]


async def run_session(url: str, ops: list[dict], http_extra: dict) -> list[dict]:
    results: list[dict] = []
    http_client = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=60.0), **http_extra)

    async def body() -> None:
        async with http_client:
            async with streamable_http_client(url, http_client=http_client) as (read, write):
                async with ClientSession(read, write, client_info=CLIENT) as session:
                    await session.initialize()
                    for op in ops:
                        started = time.perf_counter()
                        entry = {"op": op["op"], "tool": op.get("tool")}
                        results.append(entry)
                        try:
                            if op["op"] == "call":
                                args = dict(op.get("args", {}))
                                for arg, n in op.get("pad", {}).items():
                                    args[arg] = "x" * n
                                r = await session.call_tool(
                                    op["tool"], args, read_timeout_seconds=CALL_TIMEOUT
                                )
                                entry["outcome"] = "tool_error" if r.is_error else "ok"
                                entry["text"] = texts(r.content)
                            elif op["op"] == "list":
                                r = await session.list_tools()
                                entry["outcome"] = "ok"
                                entry["text"] = [t.name for t in r.tools]
                            elif op["op"] == "sleep":
                                await asyncio.sleep(op["ms"] / 1000)
                                entry["outcome"] = "ok"
                        except MCPError as e:
                            entry["text"] = [str(e)]
                            entry["ms"] = round((time.perf_counter() - started) * 1000, 3)
                            if TRANSPORT_FAILURE in str(e):
                                # Made up by the client transport when the connection broke
                                # after the response head: no answer from the server.
                                entry["outcome"] = "connection_error"
                                break
                            entry["outcome"] = "rpc_error"
                            continue
                        entry["ms"] = round((time.perf_counter() - started) * 1000, 3)

    try:
        await asyncio.wait_for(body(), timeout=60)
    except (Exception, asyncio.CancelledError, BaseExceptionGroup) as e:  # noqa: BLE001
        # The transport's task group fails as a whole when a POST's connection is reset.
        if results and "outcome" not in results[-1]:
            results[-1]["outcome"] = "connection_error"
            results[-1]["text"] = [type(e).__name__ + ": " + str(e)[:200]]
        elif not results:
            results.append({"op": "initialize", "outcome": "connection_error", "text": [str(e)[:200]]})
    for op in ops[len(results):]:
        results.append({"op": op["op"], "tool": op.get("tool"), "outcome": "skipped"})
    return results


async def run(url: str, script: list[list[dict]], http_extra: dict) -> dict:
    sessions = []
    for ops in script:
        sessions.append(await run_session(url, ops, http_extra))
    return {"pid": os.getpid(), "sessions": sessions}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--script", required=True)
    parser.add_argument("--cafile")
    parser.add_argument("--bearer")
    parser.add_argument("--wait-start")
    args = parser.parse_args()
    extra: dict = {}
    if args.cafile:
        extra["verify"] = ssl.create_default_context(cafile=args.cafile)
    if args.bearer:
        extra["headers"] = {"Authorization": f"Bearer {args.bearer}"}
    if args.wait_start:
        print(json.dumps({"ready": True, "pid": os.getpid()}), file=sys.stderr, flush=True)
        while not os.path.exists(args.wait_start):
            time.sleep(0.02)
    print(json.dumps(asyncio.run(run(args.url, json.loads(args.script), extra))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

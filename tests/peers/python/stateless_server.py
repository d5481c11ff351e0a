"""MCP test server for mcpwarden's stateless-era (2026-07-28) end-to-end tests.

The same `MCPServer` as server.py (official Python SDK `mcp` 2.3.0: tools add/fail, resource
config://app, prompt greet; it speaks both eras), plus tools that exercise what the stateless
revision adds:

    python stateless_server.py PORT [--tls CERT KEY] [--log FILE]

  tool  route(region: str [x-mcp-header "Region"], query: str) -> str
        the client mirrors `region` into an `Mcp-Param-Region` header
  tool  ask(topic: str) -> str | InputRequiredResult
        multi round-trip (MRTR): round 1 returns input_required with an elicitation keyed
        "name" and requestState "ask:1"; round 2 (inputResponses.name) asks "confirm" with
        requestState "ask:2"; round 3 completes with "<topic> for <name>: confirmed"
  tool  slow(steps: int) -> str
        reports progress `i/steps` (message "step i") every 0.2 s, then returns "done";
        the test client cancels it after the first progress, closing the response stream
  tool  touch() -> str
        publishes a tools-list change to every open `subscriptions/listen` stream

With --log FILE, every HTTP response is appended to FILE as one JSON line (see server.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Annotated

import anyio
import uvicorn
from mcp.server.mcpserver import Context
from mcp_types import (
    ElicitRequest,
    ElicitRequestFormParams,
    InputRequiredResult,
)
from pydantic import Field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import ResponseLog, server  # noqa: E402  (the shared MCPServer and its log)


def _elicit(message: str, field: str) -> ElicitRequest:
    return ElicitRequest(
        params=ElicitRequestFormParams(
            message=message,
            requested_schema={
                "type": "object",
                "properties": {field: {"type": "string"}},
                "required": [field],
            },
        )
    )


@server.tool()
def route(
    region: Annotated[str, Field(description="Where to run", json_schema_extra={"x-mcp-header": "Region"})],
    query: str,
) -> str:
    """Run a query in a region (the region is mirrored into the Mcp-Param-Region header)."""
    return f"{query} @ {region}"


@server.tool()
async def ask(topic: str, ctx: Context) -> str | InputRequiredResult:
    """Ask the user for a name, then for a confirmation (two input_required rounds)."""
    answers = ctx.input_responses or {}
    state = ctx.request_state
    if state is None:
        return InputRequiredResult(input_requests={"name": _elicit(f"Who is {topic} for?", "name")}, request_state="ask:1")
    if state == "ask:1":
        name = answers["name"].content["name"]  # type: ignore[union-attr,index]
        return InputRequiredResult(
            input_requests={"confirm": _elicit(f"Confirm {topic} for {name}?", "ok")},
            request_state=f"ask:2:{name}",
        )
    name = state.split(":", 2)[2]
    ok = answers["confirm"].content["ok"]  # type: ignore[union-attr,index]
    return f"{topic} for {name}: {ok}"


@server.tool()
async def slow(steps: int, ctx: Context) -> str:
    """Report progress every 0.2 s for `steps` steps."""
    for i in range(1, steps + 1):
        await ctx.report_progress(i, steps, f"step {i}")
        await anyio.sleep(0.2)
    return "done"


@server.tool()
async def touch(ctx: Context) -> str:
    """Tell listeners that the tool list changed."""
    await ctx.notify_tools_changed()
    return "touched"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve HTTPS with this cert and key")
    parser.add_argument("--log", metavar="FILE", help="append one JSON line per HTTP response")
    args = parser.parse_args()

    app = server.streamable_http_app(streamable_http_path="/mcp")
    if args.log:
        app = ResponseLog(app, args.log)
    ssl = {}
    if args.tls:
        ssl = {"ssl_certfile": args.tls[0], "ssl_keyfile": args.tls[1]}
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", **ssl)
    return 0


if __name__ == "__main__":
    sys.exit(main())

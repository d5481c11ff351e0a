"""MCP test client for mcpwarden's stateless-era end-to-end tests (official Python SDK `mcp` 2.3.0).

Uses the high-level `mcp.Client` in `mode="auto"`: it probes `server/discover` (2026-07-28) and
falls back to the `initialize` handshake when the server does not speak the stateless revision.
Prints a JSON summary on stdout:

    python stateless_client.py URL [--cafile CERT] [--conversation basic|full]

`basic` (any server offering tools add/fail, resource config://app, prompt greet):
  tools/list, tools/call add {a: 2, b: 3}, tools/call fail {reason: "on purpose"},
  resources/read config://app, prompts/get greet {name: "mcpwarden"}.
`full` (stateless_server.py): basic, then
  tools/call route {region: "eu-west-1", query: "q1"}   (Mcp-Param-Region: eu-west-1)
  tools/call route {region: "Zürich", query: "q2"}      (Mcp-Param-Region: =?base64?WsO8cmljaA==?=)
  tools/call ask {topic: "lunch"}: three rounds (two input_required, elicitations answered
             "mcpwarden" and "yes")
  subscriptions/listen {toolsListChanged}: acknowledged; tools/call touch; one
             notifications/tools/list_changed arrives; leaving the listen closes its stream
  tools/call slow {steps: 10} with a progress callback: cancelled after the first progress
             notification (the client closes the response stream)

Summary fields: pid, comm, client_name/client_version (what we sent), protocol_version (what the
client settled on), server_name/server_version, tools, results, and `http` (every HTTP
exchange: method, status, the request's mcp-method / mcp-name / mcp-param-region headers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ElicitResult, Implementation, TextContent

CLIENT_NAME = "mcpwarden-stateless-client"
CLIENT_VERSION = "0.2.0"


def text_of(content) -> list[str]:
    return [c.text for c in content if isinstance(c, TextContent)]


async def on_elicit(context, params) -> ElicitResult:
    field = next(iter(params.requested_schema["properties"]))
    return ElicitResult(action="accept", content={field: "mcpwarden" if field == "name" else "yes"})


async def converse(url: str, cafile: str | None, conversation: str) -> dict:
    exchanges: list[dict] = []

    async def on_response(response: httpx2.Response) -> None:
        req = response.request
        exchanges.append(
            {
                "method": req.method,
                "status": response.status_code,
                "mcp_method": req.headers.get("mcp-method"),
                "mcp_name": req.headers.get("mcp-name"),
                "mcp_param_region": req.headers.get("mcp-param-region"),
                "mcp_protocol_version": req.headers.get("mcp-protocol-version"),
                "session_id": response.headers.get("mcp-session-id"),
            }
        )

    extra: dict = {}
    if cafile:
        extra["verify"] = ssl.create_default_context(cafile=cafile)
    http_client = httpx2.AsyncClient(
        timeout=httpx2.Timeout(30.0, read=300.0),
        event_hooks={"response": [on_response]},
        **extra,
    )
    summary: dict = {"pid": os.getpid(), "comm": open("/proc/self/comm").read().strip(), "url": url}
    async with http_client:
        transport = streamable_http_client(url, http_client=http_client)
        async with Client(
            transport,
            mode="auto",
            client_info=Implementation(name=CLIENT_NAME, version=CLIENT_VERSION),
            elicitation_callback=on_elicit,
        ) as client:
            summary["client_name"] = CLIENT_NAME
            summary["client_version"] = CLIENT_VERSION
            summary["protocol_version"] = client.protocol_version
            info = client.server_info
            summary["server_name"] = info.name if info else None
            summary["server_version"] = info.version if info else None

            tools = await client.list_tools()
            summary["tools"] = [t.name for t in tools.tools]
            added = await client.call_tool("add", {"a": 2, "b": 3})
            summary["add"] = {"is_error": bool(added.is_error), "text": text_of(added.content)}
            failed = await client.call_tool("fail", {"reason": "on purpose"})
            summary["fail"] = {"is_error": bool(failed.is_error), "text": text_of(failed.content)}
            resource = await client.read_resource("config://app")
            summary["resource"] = [getattr(c, "text", None) for c in resource.contents]
            prompt = await client.get_prompt("greet", {"name": "mcpwarden"})
            summary["prompt"] = [getattr(m.content, "text", None) for m in prompt.messages]

            if conversation == "full":
                routed = await client.call_tool("route", {"region": "eu-west-1", "query": "q1"})
                summary["route"] = text_of(routed.content)
                routed = await client.call_tool("route", {"region": "Zürich", "query": "q2"})
                summary["route"] += text_of(routed.content)

                asked = await client.call_tool("ask", {"topic": "lunch"})
                summary["ask"] = text_of(asked.content)

                events: list[str] = []
                async with client.listen(tools_list_changed=True) as sub:
                    touched = await client.call_tool("touch", {})
                    summary["touch"] = text_of(touched.content)
                    with anyio.fail_after(10):
                        async for event in sub:
                            events.append(type(event).__name__)
                            break
                summary["listen_events"] = events

                progress: list[float] = []
                first = anyio.Event()

                async def on_progress(value: float, total: float | None, message: str | None) -> None:
                    progress.append(value)
                    first.set()

                async with anyio.create_task_group() as tg:

                    async def call_slow() -> None:
                        await client.call_tool("slow", {"steps": 10}, progress_callback=on_progress)

                    tg.start_soon(call_slow)
                    with anyio.fail_after(10):
                        await first.wait()
                    tg.cancel_scope.cancel()
                summary["slow_progress"] = progress
                # Let the cancelled stream's connection close before leaving.
                await anyio.sleep(0.3)
    summary["http"] = exchanges
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description="MCP stateless-era test client (official Python SDK)")
    parser.add_argument("url")
    parser.add_argument("--cafile", help="trust this CA/self-signed certificate (HTTPS)")
    parser.add_argument("--conversation", choices=["basic", "full"], default="full")
    args = parser.parse_args()
    summary = asyncio.run(converse(args.url, args.cafile, args.conversation))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Large MCP messages over streamable HTTP (official Python SDK `mcp` 2.3.0).

    python large_client.py URL --cafile CERT --sizes 600000,2000000

Against `server.py --large-tools`: initialize, then for each size
tools/call blob {size} (a result of `size` characters) and tools/call measure {data: `size`
characters} (an argument that large), then the session ends (DELETE). Each result is one
HTTP body the server hands to ONE `SSL_write`, and each argument one request body the
client encrypts in one call. Prints a JSON summary: pid, session_id, and per call
{tool, size, result_len} (`result_len`: the blob's text length, or what measure returned).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types import Implementation, TextContent


async def run(url: str, cafile: str | None, sizes: list[int]) -> dict:
    session_ids: list[str] = []

    async def on_response(response: httpx2.Response) -> None:
        sid = response.headers.get("mcp-session-id")
        if sid is not None and sid not in session_ids:
            session_ids.append(sid)

    extra: dict = {}
    if cafile:
        extra["verify"] = ssl.create_default_context(cafile=cafile)
    http_client = httpx2.AsyncClient(
        timeout=httpx2.Timeout(60.0, read=300.0), event_hooks={"response": [on_response]}, **extra
    )
    calls: list[dict] = []
    async with http_client:
        async with streamable_http_client(url, http_client=http_client) as (read, write):
            async with ClientSession(
                read, write, client_info=Implementation(name="mcpwarden-large-client", version="0.1.0")
            ) as session:
                await session.initialize()
                for size in sizes:
                    r = await session.call_tool("blob", {"size": size})
                    text = "".join(c.text for c in r.content if isinstance(c, TextContent))
                    calls.append({"tool": "blob", "size": size, "result_len": len(text), "is_error": r.is_error})
                    r = await session.call_tool("measure", {"data": "y" * size})
                    text = "".join(c.text for c in r.content if isinstance(c, TextContent))
                    calls.append({"tool": "measure", "size": size, "result_len": int(text), "is_error": r.is_error})
    return {"pid": os.getpid(), "session_id": session_ids[0] if session_ids else None, "calls": calls}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--cafile")
    parser.add_argument("--sizes", default="600000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    summary = asyncio.run(run(args.url, args.cafile, sizes))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

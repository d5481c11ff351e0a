"""One TCP connection to an MCP server used through two fds of one process (mcpwarden's
duplicate-fd test), as a client that writes through a `dup` of its socket and reads through
the socket itself (what Rust's `try_clone` reader/writer split does).

    python dup_fd.py PORT

initialize, notifications/initialized, tools/list and tools/call add {a: 2, b: 3}: every
request written with os.write on the duplicate fd, every answer read with http.client on the
original socket. Prints one JSON line: {"pid": PID, "session": ID, "tools": N, "sum": TEXT}.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys

PROTOCOL = "2025-11-25"


def main() -> None:
    port = int(sys.argv[1])
    sock = socket.create_connection(("127.0.0.1", port))
    writer = os.dup(sock.fileno())
    session: str | None = None

    def call(body: dict) -> http.client.HTTPResponse:
        payload = json.dumps(body).encode()
        head = [
            "POST /mcp HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Content-Type: application/json",
            "Accept: application/json, text/event-stream",
            f"MCP-Protocol-Version: {PROTOCOL}",
            f"Content-Length: {len(payload)}",
        ]
        if session:
            head.append(f"Mcp-Session-Id: {session}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
        while data:
            data = data[os.write(writer, data):]
        resp = http.client.HTTPResponse(sock, method="POST")
        resp.begin()
        return resp

    def answer(resp: http.client.HTTPResponse) -> dict:
        raw = resp.read().decode()
        if resp.getheader("content-type", "").startswith("text/event-stream"):
            for line in raw.splitlines():
                if line.startswith("data:"):
                    return json.loads(line[5:].strip())
            raise SystemExit(f"no data event in {raw!r}")
        return json.loads(raw)

    resp = call({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                   "clientInfo": {"name": "dup-fd", "version": "1.0"}},
    })
    session = resp.getheader("mcp-session-id")
    answer(resp)
    call({"jsonrpc": "2.0", "method": "notifications/initialized"}).read()
    tools = answer(call({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))["result"]["tools"]
    result = answer(call({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                          "params": {"name": "add", "arguments": {"a": 2, "b": 3}}}))
    os.close(writer)
    sock.close()
    print(json.dumps({"pid": os.getpid(), "session": session, "tools": len(tools),
                      "sum": result["result"]["content"][0]["text"]}), flush=True)


if __name__ == "__main__":
    main()

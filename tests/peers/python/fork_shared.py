"""One TCP connection to an MCP server, shared across fork (mcpwarden's shared-socket test).

    python fork_shared.py PORT

The parent connects; the child, on the inherited socket, POSTs `initialize` and reads the
answer, closes its own fd (the socket stays open: the parent still has it) and stays alive.
The parent then POSTs `notifications/initialized` and `tools/list` of the same session on the
same socket, and closes it: the connection ends with the parent's close. Prints one JSON line:
{"parent": PID, "child": PID, "session": ID, "tools": N}.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import time

PROTOCOL = "2025-11-25"


def post(sock: socket.socket, port: int, body: dict, session: str | None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.sock = sock  # the shared, already connected socket
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": PROTOCOL,
    }
    if session:
        headers["mcp-session-id"] = session
    conn.request("POST", "/mcp", body=json.dumps(body), headers=headers)
    return conn.getresponse()


def answer(resp: http.client.HTTPResponse) -> dict:
    """The JSON-RPC answer of a JSON or SSE response body."""
    raw = resp.read().decode()
    if resp.getheader("content-type", "").startswith("text/event-stream"):
        for line in raw.splitlines():
            if line.startswith("data:"):
                return json.loads(line[5:].strip())
        raise SystemExit(f"no data event in {raw!r}")
    return json.loads(raw)


def main() -> None:
    port = int(sys.argv[1])
    sock = socket.create_connection(("127.0.0.1", port))
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r)
        resp = post(sock, port, {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "fork-shared", "version": "1.0"}},
        }, None)
        session = resp.getheader("mcp-session-id") or ""
        answer(resp)
        os.write(w, session.encode() + b"\n")
        os.close(w)
        sock.close()  # this process's fd only
        time.sleep(4)  # alive well after the connection ended
        os._exit(0)
    os.close(w)
    session = os.read(r, 256).decode().strip()
    resp = post(sock, port, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    resp.read()
    resp = post(sock, port, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session)
    tools = answer(resp)["result"]["tools"]
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    print(json.dumps({"parent": os.getpid(), "child": child, "session": session,
                      "tools": len(tools)}), flush=True)
    os.waitpid(child, 0)


if __name__ == "__main__":
    main()

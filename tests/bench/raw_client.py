"""Raw keep-alive MCP client for `cargo xtask bench` (standard library only).

    python raw_client.py URL CALLS [--cafile CERT]

One TCP connection (TLS for https:// URLs, through the stdlib `ssl` module, i.e. libssl),
kept alive for the whole run: initialize, notifications/initialized, tools/list, then CALLS
`tools/call add {a: i, b: 1}` POSTs, each timed from the first byte written to the last byte
of its answer read, then DELETE. Answers may be JSON (Content-Length) or an SSE stream
(chunked), as the official Python SDK server sends them.

Prints one JSON object: {"pid", "us": [per-call microseconds], "ok": calls answered with a
result}. Exits 1 when the server does not behave (no session id, an error status).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import time
from urllib.parse import urlsplit

PROTOCOL = "2025-06-18"


class Conn:
    def __init__(self, url: str, cafile: str | None) -> None:
        u = urlsplit(url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.path = u.path or "/"
        sock = socket.create_connection((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if u.scheme == "https":
            ctx = ssl.create_default_context(cafile=cafile)
            sock = ctx.wrap_socket(sock, server_hostname=self.host)
        self.sock = sock
        self.buf = b""
        self.session: str | None = None
        self.protocol = PROTOCOL

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data

    def _take_until(self, sep: bytes) -> bytes:
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + len(sep):]
                return out
            self._fill()

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def request(self, method: str, body: dict | None) -> tuple[int, dict, bytes]:
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        head = [
            f"{method} {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Accept: application/json, text/event-stream",
            f"MCP-Protocol-Version: {self.protocol}",
        ]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
        if self.session:
            head.append(f"Mcp-Session-Id: {self.session}")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        return self.response()

    def response(self) -> tuple[int, dict, bytes]:
        lines = self._take_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self._take_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._take_until(b"\r\n")
                    break
                parts.append(self._take(size))
                self._take(2)
            body = b"".join(parts)
        else:
            body = b""
        return status, headers, body


def result_of(body: bytes) -> dict:
    """The JSON-RPC answer in a JSON body or in the SSE events of a stream."""
    text = body.decode()
    if text.lstrip().startswith("{"):
        return json.loads(text)
    for line in text.splitlines():
        if line.startswith("data:"):
            msg = json.loads(line[5:])
            if "result" in msg or "error" in msg:
                return msg
    return {}


def main() -> int:
    url, calls = sys.argv[1], int(sys.argv[2])
    cafile = sys.argv[sys.argv.index("--cafile") + 1] if "--cafile" in sys.argv else None
    c = Conn(url, cafile)
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "mcpwarden-bench-raw", "version": "0.1.0"},
        },
    }
    status, headers, body = c.request("POST", init)
    c.session = headers.get("mcp-session-id")
    answer = result_of(body)
    c.protocol = answer.get("result", {}).get("protocolVersion", PROTOCOL)
    if status != 200 or not c.session:
        print(f"initialize: HTTP {status}, session {c.session!r}: {body[:200]!r}", file=sys.stderr)
        return 1
    c.request("POST", {"jsonrpc": "2.0", "method": "notifications/initialized"})
    status, _, body = c.request("POST", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    if status != 200:
        print(f"tools/list: HTTP {status}", file=sys.stderr)
        return 1
    us, ok = [], 0
    for i in range(calls):
        req = {
            "jsonrpc": "2.0",
            "id": i + 2,
            "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": i, "b": 1}},
        }
        t0 = time.perf_counter_ns()
        status, _, body = c.request("POST", req)
        us.append((time.perf_counter_ns() - t0) / 1000)
        if status == 200 and "result" in result_of(body):
            ok += 1
    c.request("DELETE", None)
    c.sock.close()
    print(json.dumps({"pid": os.getpid(), "us": us, "ok": ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

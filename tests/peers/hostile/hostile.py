"""Crafted hostile HTTP traffic for mcpwarden's end-to-end tests (Python standard library only).

Two roles, each its own process (so the agent's records of this traffic carry their own pids,
apart from the SDK peers beside them):

    python hostile.py sink PORT           a raw HTTP/1.1 server on 127.0.0.1:PORT (see below)
    python hostile.py send CASE PORT      send one case's traffic to the sink; print a JSON summary

The sink reads requests with its own small parser (Content-Length or chunked bodies, heads up
to 64 KiB) and answers each complete one:
  - POST with a JSON body that parses and has an "id": `200 application/json`
    `{"jsonrpc":"2.0","id":<id>,"result":{"ok":true}}` with `Mcp-Session-Id: hostile-session`;
  - POST with a JSON body that parses and has no "id" (a notification): `202`, no body;
  - POST to /mcp whose body does not parse (deep nesting, invalid UTF-8): `400 text/plain`;
  - a body over 1 MiB: read to its end, then `413 text/plain`;
  - anything else (GET, non-JSON): `200 text/plain` "ok".
A head it cannot parse, or a connection closed mid-message, closes the connection without an
answer. It prints nothing; it runs until killed.

Cases (`send`), each printing `{"case", "connections", "requests", ...}` with what it sent:
  malformed       5 connections, each one malformed request head (see MALFORMED); the sink
                  closes each without answering
  big_body        one POST /mcp with a 100 MB Content-Length body (64 KiB writes)
  deep_json       one POST /mcp whose JSON is nested 10,000 deep
  invalid_utf8    one POST /mcp whose JSON has invalid UTF-8 (0xff 0xfe) inside a string
  byte_at_a_time  one connection: an `initialize` request written whole, then a `tools/list`
                  request written one byte per send(2) (TCP_NODELAY)
  byte_fresh      a fresh connection whose first request (`initialize`) is written one byte
                  per send(2)
  abandoned       10,000 connections held open at once, each with a request whose body was cut
                  off after 10 of its 100 bytes, then all closed
  non_mcp_rate    2,000 requests over 4 keep-alive connections: GET /index.html and
                  POST /api/items with a JSON body that is not JSON-RPC (`{"item": n}`)
  large           valid MCP `tools/call` requests on one connection whose `params.arguments.blob`
                  makes a 40 KiB, a 200 KiB and a 1 MiB body; the 1 MiB request is written
                  with one send(2) call (the sizes each send(2) moved are in `sends`)
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import sys
import time

BIG_BODY = 100 * 1000 * 1000
MAX_HEAD = 64 * 1024
MAX_KEPT_BODY = 1 << 20

MALFORMED = [
    # A header line without a colon.
    b"POST /mcp HTTP/1.1\r\nHost: x\r\nthis line has no colon\r\n\r\n",
    # A Content-Length that is not a number.
    b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
    # A request line with a bad version.
    b"POST /mcp HTTP/9.x\r\nHost: x\r\n\r\n",
    # A head that never ends (70 KiB of header).
    b"POST /mcp HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * (70 * 1024) + b"\r\n",
    # A chunk size that is not hexadecimal.
    b"POST /mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
]


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# ----------------------------------------------------------------------------------- sink


class Conn:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.head: dict | None = None
        self.need = 0  # body bytes still to read (Content-Length)
        self.body = bytearray()
        self.body_len = 0
        self.chunked = False


def answer(status: str, body: bytes, ctype: str = "text/plain", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def respond(c: Conn) -> bytes:
    head = c.head or {}
    if c.body_len > MAX_KEPT_BODY:
        return answer("413 Payload Too Large", b"too large")
    if head.get("method") != "POST":
        return answer("200 OK", b"ok")
    try:
        msg = json.loads(bytes(c.body).decode("utf-8"))
    except (ValueError, RecursionError):
        return answer("400 Bad Request", b"bad json")
    if isinstance(msg, dict) and msg.get("jsonrpc") == "2.0" and "method" in msg:
        if "id" not in msg:
            return answer("202 Accepted", b"", extra="Mcp-Session-Id: hostile-session\r\n")
        body = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {"ok": True}}).encode()
        sid = "" if head.get("path") == "/nosession" else "Mcp-Session-Id: hostile-session\r\n"
        return answer("200 OK", body, "application/json", sid)
    return answer("200 OK", b"ok")


def parse_head(raw: bytes) -> dict | None:
    try:
        text = raw.decode("latin-1")
        lines = text.split("\r\n")
        method, path, version = lines[0].split(" ")
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            return None
        headers = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                return None
            headers[name.strip().lower()] = value.strip()
        return {"method": method, "path": path, "headers": headers}
    except ValueError:
        return None


def step(c: Conn) -> tuple[list[bytes], bool]:
    """Consumes what `c.buf` holds; returns answers to send and whether to close."""
    out: list[bytes] = []
    while True:
        if c.head is None:
            end = c.buf.find(b"\r\n\r\n")
            if end < 0:
                return out, len(c.buf) > MAX_HEAD
            head = parse_head(bytes(c.buf[:end]))
            del c.buf[: end + 4]
            if head is None:
                return out, True
            c.head = head
            c.body = bytearray()
            c.body_len = 0
            h = head["headers"]
            c.chunked = h.get("transfer-encoding", "").lower() == "chunked"
            if not c.chunked:
                try:
                    c.need = int(h.get("content-length", "0"))
                except ValueError:
                    return out, True
        if c.chunked:
            line_end = c.buf.find(b"\r\n")
            if line_end < 0:
                return out, False
            try:
                size = int(bytes(c.buf[:line_end]).split(b";")[0], 16)
            except ValueError:
                return out, True
            if len(c.buf) < line_end + 2 + size + 2:
                return out, False
            chunk = bytes(c.buf[line_end + 2 : line_end + 2 + size])
            del c.buf[: line_end + 2 + size + 2]
            if size > 0:
                c.body_len += size
                if len(c.body) <= MAX_KEPT_BODY:
                    c.body += chunk
                continue
        else:
            take = min(c.need, len(c.buf))
            if c.body_len + take <= MAX_KEPT_BODY:
                c.body += c.buf[:take]
            c.body_len += take
            del c.buf[:take]
            c.need -= take
            if c.need > 0:
                return out, False
        out.append(respond(c))
        c.head = None


def sink(port: int) -> int:
    raise_nofile()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                while True:
                    try:
                        s, _ = listener.accept()
                    except BlockingIOError:
                        break
                    s.setblocking(False)
                    sel.register(s, selectors.EVENT_READ, Conn())
                continue
            s = key.fileobj
            c: Conn = key.data
            try:
                data = s.recv(65536)
            except (ConnectionResetError, BlockingIOError):
                data = b""
            close = not data
            if data:
                c.buf += data
                answers, close = step(c)
                try:
                    for a in answers:
                        s.setblocking(True)
                        s.sendall(a)
                        s.setblocking(False)
                except OSError:
                    close = True
            if close:
                sel.unregister(s)
                s.close()


# ----------------------------------------------------------------------------------- cases


def connect(port: int, nodelay: bool = False) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def request(body: bytes, path: str = "/mcp", session: bool = False) -> bytes:
    extra = "Mcp-Session-Id: hostile-session\r\n" if session else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def read_response(s: socket.socket) -> tuple[int, bytes]:
    """Reads one response (Content-Length framed); returns (status, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        got = s.recv(65536)
        if not got:
            raise ConnectionError(f"closed before a response head: {buf!r}")
        buf += got
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(rest) < length:
        got = s.recv(65536)
        if not got:
            raise ConnectionError("closed inside a response body")
        rest += got
    return status, rest[:length]


def wait_closed(s: socket.socket) -> None:
    """Waits until the sink closes the connection (it read everything and gave up)."""
    while s.recv(65536):
        pass


def rpc(method: str, id_: int | None, params: dict | None = None) -> bytes:
    msg: dict = {"jsonrpc": "2.0", "method": method}
    if id_ is not None:
        msg["id"] = id_
    if params is not None:
        msg["params"] = params
    return json.dumps(msg, separators=(",", ":")).encode()


INITIALIZE = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "hostile", "version": "1"},
}


def case_malformed(port: int) -> dict:
    for raw in MALFORMED:
        s = connect(port)
        s.sendall(raw)
        wait_closed(s)
        s.close()
    return {"connections": len(MALFORMED), "requests": len(MALFORMED)}


def case_big_body(port: int) -> dict:
    s = connect(port)
    s.sendall(
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {BIG_BODY}\r\n\r\n".encode()
    )
    piece = b'{"jsonrpc":"2.0","id":1,"method":"x","params":"' + b"A" * (65536 - 47)
    piece = piece[:65536]
    sent = 0
    while sent < BIG_BODY:
        n = min(len(piece), BIG_BODY - sent)
        s.sendall(piece[:n])
        sent += n
    status, _ = read_response(s)
    s.close()
    return {"connections": 1, "requests": 1, "body_bytes": sent, "status": status}


def case_deep_json(port: int) -> dict:
    depth = 10_000
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":' + b"[" * depth + b"]" * depth + b"}"
    s = connect(port)
    s.sendall(request(body))
    status, _ = read_response(s)
    s.close()
    return {"connections": 1, "requests": 1, "depth": depth, "status": status}


def case_invalid_utf8(port: int) -> dict:
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\xff\xfe"}}'
    s = connect(port)
    s.sendall(request(body))
    status, _ = read_response(s)
    s.close()
    return {"connections": 1, "requests": 1, "status": status}


def one_byte_at_a_time(s: socket.socket, raw: bytes) -> int:
    for i in range(len(raw)):
        s.send(raw[i : i + 1])
    return len(raw)


def case_byte_at_a_time(port: int) -> dict:
    s = connect(port, nodelay=True)
    s.sendall(request(rpc("initialize", 1, INITIALIZE)))
    first = read_response(s)[0]
    writes = one_byte_at_a_time(s, request(rpc("tools/list", 2, {}), session=True))
    second = read_response(s)[0]
    s.close()
    return {"connections": 1, "requests": 2, "writes": writes, "status": [first, second]}


def case_byte_fresh(port: int) -> dict:
    s = connect(port, nodelay=True)
    writes = one_byte_at_a_time(s, request(rpc("initialize", 1, INITIALIZE)))
    status = read_response(s)[0]
    s.close()
    return {"connections": 1, "requests": 1, "writes": writes, "status": status}


def case_abandoned(port: int) -> dict:
    raise_nofile()
    count = 10_000
    partial = (
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"jsonrpc"'
    )
    socks = []
    for _ in range(count):
        s = connect(port)
        s.sendall(partial)
        socks.append(s)
    # Every partial request is in; then walk away from them all (close, no more bytes).
    for s in socks:
        s.close()
    return {"connections": count, "requests": count}


def case_non_mcp_rate(port: int) -> dict:
    conns = [connect(port) for _ in range(4)]
    total = 2000
    for i in range(total):
        s = conns[i % len(conns)]
        if i % 2 == 0:
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        else:
            s.sendall(request(json.dumps({"item": i}).encode(), path="/api/items"))
        status, _ = read_response(s)
        if status != 200:
            raise RuntimeError(f"request {i}: status {status}")
    for s in conns:
        s.close()
    return {"connections": len(conns), "requests": total}


def case_large(port: int) -> dict:
    s = connect(port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sizes = []
    sends = []
    for i, size in enumerate([40 * 1024, 200 * 1024, 1024 * 1024]):
        head = b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"blob":"' % (i + 1)
        tail = b'"}}}'
        body = head + b"x" * (size - len(head) - len(tail)) + tail
        raw = request(body, session=True)
        sizes.append(len(body))
        if i < 2:
            s.sendall(raw)
        else:
            # One send(2) for the whole request (the rest, if any, in further calls).
            moved = []
            view = memoryview(raw)
            while view:
                n = s.send(view)
                moved.append(n)
                view = view[n:]
            sends = moved
            sizes.append(len(raw))
        status = read_response(s)[0]
        if status != 200:
            raise RuntimeError(f"request {i + 1}: status {status}")
    s.close()
    return {"connections": 1, "requests": 3, "body_sizes": sizes[:3], "last_request_bytes": sizes[3], "sends": sends}


def case_burst(port: int) -> dict:
    """4,000 `tools/call` requests of 16 KiB bodies pipelined on one connection (a reader thread
    drains the answers): a burst for a small ring buffer."""
    import threading

    count = 4000
    s = connect(port)
    received = [0, 0]  # bytes, responses

    def reader() -> None:
        buf = b""
        while received[1] < count:
            got = s.recv(1 << 20)
            if not got:
                break
            received[0] += len(got)
            buf += got
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                length = 0
                for line in buf[:end].decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if len(buf) < end + 4 + length:
                    break
                buf = buf[end + 4 + length :]
                received[1] += 1

    t = threading.Thread(target=reader)
    t.start()
    sent = 0
    for i in range(count):
        head = b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"burst","arguments":{"blob":"' % (i + 1)
        tail = b'"}}}'
        body = head + b"y" * (16 * 1024 - len(head) - len(tail)) + tail
        raw = request(body, path="/nosession")
        s.sendall(raw)
        sent += len(raw)
    t.join()
    s.close()
    return {"connections": 1, "requests": count, "responses": received[1], "sent_bytes": sent, "received_bytes": received[0]}


def case_killed_mid_message(port: int) -> dict:
    """initialize (answered), then the first half of a `tools/call` request; says so on stderr
    (`{"half_sent": true}`) and waits to be killed."""
    s = connect(port)
    s.sendall(request(rpc("initialize", 1, INITIALIZE), path="/nosession"))
    status = read_response(s)[0]
    raw = request(rpc("tools/call", 2, {"name": "slow", "arguments": {"pad": "z" * 4000}}), path="/nosession")
    s.sendall(raw[: len(raw) // 2])
    print(json.dumps({"half_sent": True, "status": status, "half_bytes": len(raw) // 2}), file=sys.stderr, flush=True)
    while True:
        time.sleep(1)


CASES = {
    "burst": case_burst,
    "killed_mid_message": case_killed_mid_message,
    "malformed": case_malformed,
    "big_body": case_big_body,
    "deep_json": case_deep_json,
    "invalid_utf8": case_invalid_utf8,
    "byte_at_a_time": case_byte_at_a_time,
    "byte_fresh": case_byte_fresh,
    "abandoned": case_abandoned,
    "non_mcp_rate": case_non_mcp_rate,
    "large": case_large,
}


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "sink":
        return sink(int(sys.argv[2]))
    if len(sys.argv) == 4 and sys.argv[1] == "send" and sys.argv[2] in CASES:
        t0 = time.monotonic()
        summary = CASES[sys.argv[2]](int(sys.argv[3]))
        summary["case"] = sys.argv[2]
        summary["pid"] = __import__("os").getpid()
        summary["seconds"] = round(time.monotonic() - t0, 3)
        print(json.dumps(summary), flush=True)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

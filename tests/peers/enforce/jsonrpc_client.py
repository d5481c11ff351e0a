"""A JSON-RPC-over-HTTP/1.1 client for the enforcement tests.

Usage: jsonrpc_client.py PORT CAFILE|- MODE TOOL [TOOL...]

CAFILE "-" means plaintext. MODE "async" uses asyncio streams (TLS through a memory BIO, as
the MCP SDKs do); MODE "threads" opens one blocking socket per TOOL and calls them from one
thread each at the same moment (TLS through a socket BIO). Each connection first sends an
`initialize` request (so the agent sees an MCP client), then a `tools/call` per tool.
Prints one JSON line per call: {"tool", "outcome": "ok" | "error", "detail"}.
PAUSE_AFTER_INIT_MS (environment): wait this long after each `initialize` answer.
"""
import asyncio
import json
import os
import socket
import ssl
import sys
import threading

PORT = int(sys.argv[1])
CAFILE = sys.argv[2]
MODE = sys.argv[3]
TOOLS = sys.argv[4:]
PAUSE = int(os.environ.get("PAUSE_AFTER_INIT_MS", "0")) / 1000.0
next_id = [0]
lock = threading.Lock()


def request(method, params):
    with lock:
        next_id[0] += 1
        rid = next_id[0]
    body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode()
    return (
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Accept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )


INIT = ("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "enforce-test", "version": "1"}})


_REPORT_LOCK = threading.Lock()


def report(tool, outcome, detail=""):
    # One whole line per write, under a lock: print() from several threads writes the text
    # and the newline separately, and two threads' lines could interleave into one.
    line = json.dumps({"tool": tool, "outcome": outcome, "detail": detail}) + "\n"
    with _REPORT_LOCK:
        sys.stdout.write(line)
        sys.stdout.flush()


def context():
    if CAFILE == "-":
        return None
    ctx = ssl.create_default_context(cafile=CAFILE)
    return ctx


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":", 1)[1])
    return await reader.readexactly(n)


async def run_async():
    reader = writer = None
    for tool in TOOLS:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", PORT, ssl=context())
                writer.write(request(*INIT))
                await writer.drain()
                await read_response(reader)
                await asyncio.sleep(PAUSE)
            writer.write(request("tools/call", {"name": tool, "arguments": {"n": 1}}))
            await writer.drain()
            body = await read_response(reader)
            report(tool, "ok", body.decode())
        except Exception as e:  # the reset shows up here
            report(tool, "error", "%s: %s" % (type(e).__name__, e))
            if writer is not None:
                writer.close()
            reader = writer = None


def read_blocking(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("EOF")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":", 1)[1])
    while len(rest) < n:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("EOF")
        rest += chunk
    return rest[:n]


def run_threads():
    socks = []
    for _ in TOOLS:
        s = socket.create_connection(("127.0.0.1", PORT))
        ctx = context()
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        s.sendall(request(*INIT))
        read_blocking(s)
        socks.append(s)
    barrier = threading.Barrier(len(TOOLS))

    def call(s, tool):
        try:
            msg = request("tools/call", {"name": tool, "arguments": {"n": 1}})
            barrier.wait()
            s.sendall(msg)
            report(tool, "ok", read_blocking(s).decode())
        except Exception as e:
            report(tool, "error", "%s: %s" % (type(e).__name__, e))

    threads = [threading.Thread(target=call, args=(s, t)) for s, t in zip(socks, TOOLS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if MODE == "async":
    asyncio.run(run_async())
else:
    run_threads()

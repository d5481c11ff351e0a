"""A minimal JSON-RPC-over-HTTP/1.1 server (asyncio, optional TLS) for the enforcement tests.

Usage: jsonrpc_server.py PORT LOG [CERT KEY]

Every request body it receives is appended to LOG (one line each, flushed) before it answers;
a connection that ends (EOF, reset, TLS error) appends "EOF <peer port>". Prints "ready" once
listening. What the log does not show, the server never received. A body containing "slow" is
answered after 300 ms.
"""
import asyncio
import json
import ssl
import sys

PORT = int(sys.argv[1])
LOG = sys.argv[2]


def log(line):
    with open(LOG, "a") as f:
        f.write(line + "\n")
        f.flush()


async def handle(reader, writer):
    peer = writer.get_extra_info("peername")
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":", 1)[1])
            body = await reader.readexactly(n)
            log(body.decode())
            req = json.loads(body)
            if b"slow" in body:
                await asyncio.sleep(0.3)  # gives a reactive reset time to win
            resp = json.dumps({"jsonrpc": "2.0", "id": req.get("id"), "result": {"ok": True}}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(resp)
                + resp
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
        log("EOF %s" % (peer[1] if peer else "?"))
        writer.close()


async def main():
    ctx = None
    if len(sys.argv) > 4:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    server = await asyncio.start_server(handle, "127.0.0.1", PORT, ssl=ctx)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())

"""TLS edge cases for the kernel side's thread and tie bookkeeping (stdlib only).

    python tls_edge.py stuck-reader CERT KEY
        Serves TLS on a loopback port from a helper thread; the main thread connects, completes
        the handshake and blocks in SSL_read (recv) forever. Prints {"pid", "ready": true} on
        stderr once the main thread is about to read. Kill it: its main thread dies inside
        SSL_read, so the uretprobe never runs.

    python tls_edge.py mixed TLS_URL PLAIN_URL CAFILE
        One thread, two connections. On the TLS one (memory BIO, like asyncio) it writes a
        request with SSL_write but holds the ciphertext back; then it POSTs an MCP initialize
        over plain HTTP on the other; then it sends the held ciphertext. Prints
        {"pid", "plain_status", "tls_status"} on stdout.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import sys
import threading
import time
from urllib.parse import urlparse


def stuck_reader(cert: str, key: str) -> int:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        tls = server_ctx.wrap_socket(conn, server_side=True)
        time.sleep(3600)  # never answers
        tls.close()

    threading.Thread(target=serve, daemon=True).start()
    client_ctx = ssl.create_default_context(cafile=cert)
    sock = client_ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
    print(json.dumps({"pid": os.getpid(), "ready": True}), file=sys.stderr, flush=True)
    sock.recv(1)  # blocks inside SSL_read_ex
    return 0


def mixed(tls_url: str, plain_url: str, cafile: str) -> int:
    t = urlparse(tls_url)
    ctx = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection((t.hostname, t.port))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=t.hostname)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pending = outgoing.read()
            if pending:
                raw.sendall(pending)
            data = raw.recv(65536)
            if not data:
                raise RuntimeError("TLS server closed during the handshake")
            incoming.write(data)
    pending = outgoing.read()
    if pending:
        raw.sendall(pending)
    # SSL_write into the memory BIO: no syscall yet, so the kernel waits for this thread's
    # next socket write to name the TLS socket.
    tls.write(f"GET /health HTTP/1.1\r\nHost: {t.hostname}\r\nConnection: close\r\n\r\n".encode())
    held = outgoing.read()

    # Meanwhile, plaintext HTTP from the same thread: it must not be taken for that ciphertext.
    p = urlparse(plain_url)
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "mcpwarden-mixed-client", "version": "0.1.0"},
            },
        }
    ).encode()
    plain = http.client.HTTPConnection(p.hostname, p.port, timeout=30)
    plain.request(
        "POST",
        p.path,
        body=body,
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
    )
    response = plain.getresponse()
    response.read()
    plain.close()

    # Now the ciphertext leaves: it ties the TLS connection to its socket.
    raw.sendall(held)
    reply = b""
    while b"\r\n" not in reply:
        data = raw.recv(65536)
        if not data:
            break
        incoming.write(data)
        try:
            reply += tls.read(65536)
        except ssl.SSLWantReadError:
            continue
    raw.close()
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.") else None
    print(json.dumps({"pid": os.getpid(), "plain_status": response.status, "tls_status": status}))
    return 0


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "stuck-reader":
        return stuck_reader(sys.argv[2], sys.argv[3])
    if len(sys.argv) == 5 and sys.argv[1] == "mixed":
        return mixed(sys.argv[2], sys.argv[3], sys.argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

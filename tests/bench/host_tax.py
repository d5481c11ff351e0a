"""Non-MCP workloads for `cargo xtask bench`'s host tax (standard library only).

    python host_tax.py pipe N
    python host_tax.py tcp N
    python host_tax.py https N --cert CERT --key KEY
    python host_tax.py ssl N --cert CERT --key KEY
    python host_tax.py download N --cert CERT --key KEY

pipe:  N writes of 64 bytes to a pipe a forked child drains;
tcp:   N round trips of 64 bytes on one loopback TCP connection to a forked echo server;
https: N `GET /` requests on one keep-alive TLS connection to a forked HTTPS server (plain
       text answers: HTTP, but no JSON-RPC anywhere).
download: N `GET /file` requests on one keep-alive TLS connection, each answered with a
       1 MiB `application/octet-stream` body (Content-Length): a bulk HTTPS transfer, the
       bytes a host moves that are HTTP but never MCP.
ssl:   N rounds of one `SSL_write_ex` (64 bytes, client) and one `SSL_read_ex` (server) in
       this process, over memory BIOs (no socket, no syscall): the price of the SSL probes
       alone, per pair of calls.

Prints one JSON object: {"ops": N, "ns_per_op": wall time per operation of the loop}. The
caller measures the CPU of the whole process tree (this process and its waited-for child).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import time


def pipe(n: int) -> float:
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(w)
        while os.read(r, 65536):
            pass
        os._exit(0)
    os.close(r)
    data = b"x" * 64
    t0 = time.perf_counter_ns()
    for _ in range(n):
        os.write(w, data)
    spent = time.perf_counter_ns() - t0
    os.close(w)
    os.waitpid(child, 0)
    return spent / n


def serve(listener: socket.socket, handle) -> int:
    child = os.fork()
    if child == 0:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            handle(conn)
        finally:
            os._exit(0)
    listener.close()
    return child


def echo(conn: socket.socket) -> None:
    while True:
        d = conn.recv(4096)
        if not d:
            return
        conn.sendall(d)


def tcp(n: int) -> float:
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port = ls.getsockname()[1]
    child = serve(ls, echo)
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = b"y" * 64
    t0 = time.perf_counter_ns()
    for _ in range(n):
        s.sendall(data)
        got = 0
        while got < len(data):
            got += len(s.recv(4096))
    spent = time.perf_counter_ns() - t0
    s.close()
    os.waitpid(child, 0)
    return spent / n


ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n"


def https(n: int, cert: str, key: str, answer_bytes: bytes = b"", request: bytes = b"") -> float:
    answer_bytes = answer_bytes or ANSWER
    request = request or REQUEST
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port = ls.getsockname()[1]

    def answer(conn: socket.socket) -> None:
        tls = server_ctx.wrap_socket(conn, server_side=True)
        buf = b""
        while True:
            d = tls.recv(4096)
            if not d:
                return
            buf += d
            while b"\r\n\r\n" in buf:
                _, buf = buf.split(b"\r\n\r\n", 1)
                tls.sendall(answer_bytes)

    child = serve(ls, answer)
    ctx = ssl.create_default_context(cafile=cert)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        s.sendall(request)
        want, got = len(answer_bytes), 0
        while got < want:
            d = s.recv(262144)
            if not d:
                raise SystemExit("https loop: the server closed the connection")
            got += len(d)
    spent = time.perf_counter_ns() - t0
    s.close()
    os.waitpid(child, 0)
    return spent / n


DOWNLOAD_BODY = 1 << 20
DOWNLOAD_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    + b"Content-Length: %d\r\n\r\n" % DOWNLOAD_BODY
    + b"\x5a" * DOWNLOAD_BODY
)
DOWNLOAD_REQUEST = b"GET /file HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n"


def ssl_calls(n: int, cert: str, key: str) -> float:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)

    def pump() -> None:
        s_in.write(c_out.read())
        c_in.write(s_out.read())

    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        pump()
    client.do_handshake()
    server.do_handshake()
    pump()
    data = b"z" * 64
    t0 = time.perf_counter_ns()
    for _ in range(n):
        client.write(data)
        s_in.write(c_out.read())
        if server.read(64) != data:
            raise SystemExit("ssl loop: the server read other bytes")
    spent = time.perf_counter_ns() - t0
    return spent / n


def main() -> int:
    what, n = sys.argv[1], int(sys.argv[2])
    if what == "pipe":
        ns = pipe(n)
    elif what == "tcp":
        ns = tcp(n)
    elif what == "https":
        args = sys.argv[3:]
        ns = https(n, args[args.index("--cert") + 1], args[args.index("--key") + 1])
    elif what == "download":
        args = sys.argv[3:]
        ns = https(
            n,
            args[args.index("--cert") + 1],
            args[args.index("--key") + 1],
            DOWNLOAD_ANSWER,
            DOWNLOAD_REQUEST,
        )
    elif what == "ssl":
        args = sys.argv[3:]
        ns = ssl_calls(n, args[args.index("--cert") + 1], args[args.index("--key") + 1])
    else:
        print(f"unknown workload {what!r} (pipe, tcp, https, download, ssl)", file=sys.stderr)
        return 2
    print(json.dumps({"ops": n, "ns_per_op": ns}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

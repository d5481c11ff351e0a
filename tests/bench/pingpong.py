import socket, sys, time, os
N = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
mode = sys.argv[1]
REQ = b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n" + b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}  '
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n" + b'{"jsonrpc":"2.0","id":1,"result":{}}    '
if mode == "http":
    req, resp = REQ, RESP
else:
    req, resp = b"x" * len(REQ), b"y" * len(RESP)
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
port = ls.getsockname()[1]
pid = os.fork()
if pid == 0:
    c, _ = ls.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(4096)
        if not d: break
        c.sendall(resp)
    os._exit(0)
s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range(500):
    s.sendall(req); s.recv(4096)
t = time.perf_counter()
for _ in range(N):
    s.sendall(req); s.recv(4096)
el = time.perf_counter() - t
s.close(); os.wait()
print(f"{el / N * 1e6:.1f}")

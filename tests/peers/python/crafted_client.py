"""Crafted MCP requests over raw HTTP/1.1 (keep-alive), for enforcement tests of the
2026-07-28 (stateless) era where headers mirror the body:

    python crafted_client.py URL --requests JSON [--pause-ms N]

JSON: a list of {"headers": {...}, "body": {...}} sent in order on one connection (a new one
after a reset). Prints {"pid", "answers": [{"status", "body"} | {"outcome": "connection_error"}]}.
A request may also name its "method" (POST by default) and "path" (the URL's by default); one
without "body" is sent without one (and without Content-Type). An https URL is reached over
TLS, trusting the certificate given with --cafile.
--pause-ms waits after the first request (so the agent learns this process takes part in MCP).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import sys
import time
from urllib.parse import urlparse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--requests", required=True)
    parser.add_argument("--pause-ms", type=int, default=0)
    parser.add_argument("--cafile")
    args = parser.parse_args()
    url = urlparse(args.url)
    answers = []
    conn = None
    for i, req in enumerate(json.loads(args.requests)):
        if conn is None:
            if url.scheme == "https":
                ctx = ssl.create_default_context(cafile=args.cafile)
                ctx.check_hostname = False
                conn = http.client.HTTPSConnection(url.hostname, url.port, timeout=20, context=ctx)
            else:
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
        headers = {"Accept": "application/json, text/event-stream"}
        body = None
        if "body" in req:
            headers["Content-Type"] = "application/json"
            body = json.dumps(req["body"])
        headers.update(req.get("headers", {}))
        try:
            conn.request(req.get("method", "POST"), req.get("path", url.path), body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            body = None
            for line in text.splitlines():
                if line.startswith("data:"):
                    text = line[5:].strip()
            try:
                body = json.loads(text)
            except ValueError:
                body = text
            answers.append({"status": resp.status, "body": body})
        except (OSError, http.client.HTTPException) as e:
            answers.append({"outcome": "connection_error", "error": f"{type(e).__name__}: {e}"})
            conn.close()
            conn = None
        if i == 0 and args.pause_ms:
            time.sleep(args.pause_ms / 1000)
    print(json.dumps({"pid": os.getpid(), "answers": answers}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A minimal Gitea API stub for scripts/bench-serve: answers the calls `ka serve` makes when idle or replying,
and counts requests (GET /stub/count). Not a test double for correctness; the tests use the Swift stand-in."""
import json, signal, sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

count = 0
lock = threading.Lock()

class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        global count
        if self.path == "/stub/count":
            return self.reply(200, {"count": count})
        with lock: count += 1
        if self.path.startswith("/api/v1/user"):
            return self.reply(200, {"id": 1, "login": "claude-noether"})
        if "/collaborators/" in self.path:
            return self.reply(200, {"permission": "write"})
        return self.reply(200, [])
    def do_POST(self):
        global count
        with lock: count += 1
        n = int(self.headers.get("Content-Length", "0")); self.rfile.read(n)
        u = {"id": 1, "login": "claude-noether"}
        return self.reply(201, {"id": count, "body": "", "user": u, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                                "content": "eyes"})
    do_PATCH = do_POST

# A parent may hand down SIGTERM blocked or ignored (a thread of a test runner): take it back, so the benchmark's
# cleanup can stop this stub and no orphan holds the port (or the caller's output pipes) open.
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()

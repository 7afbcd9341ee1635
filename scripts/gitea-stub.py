#!/usr/bin/env python3
"""A minimal Gitea API stub for scripts/bench-serve and scripts/bench-replies: answers the calls `ka serve` makes
when idle or replying, over keep-alive HTTP/1.1, and counts requests: GET /stub/count (JSON: every API request,
the comments created, the reactions added) or /stub/counts (the same three numbers on one line, for polling).
Not a test double for correctness; the tests use the Swift stand-in."""
import json, re, signal, sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

count = comments = reactions = 0
lock = threading.Lock()
comment_route = re.compile(r"^/api/v1/repos/[^/]+/[^/]+/issues/\d+/comments$")
reaction_route = re.compile(r"^/api/v1/repos/[^/]+/[^/]+/issues/comments/\d+/reactions$")

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as Gitea behind any server does
    disable_nagle_algorithm = True  # headers and body go out in two writes: with Nagle, each answer waits ~40 ms for an ACK
    def log_message(self, *a): pass
    def reply(self, code, obj, text=None):
        data = text.encode() if text is not None else json.dumps(obj).encode()
        self.send_response(code); self.send_header("Content-Type", "text/plain" if text is not None else "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        global count
        if self.path == "/stub/count":
            return self.reply(200, {"count": count, "comments": comments, "reactions": reactions})
        if self.path == "/stub/counts":
            return self.reply(200, None, f"{count} {comments} {reactions}\n")
        with lock: count += 1
        if self.path.startswith("/api/v1/user"):
            return self.reply(200, {"id": 1, "login": "claude-noether"})
        if "/collaborators/" in self.path:
            return self.reply(200, {"permission": "write"})
        return self.reply(200, [])
    def do_POST(self):
        global count, comments, reactions
        path = self.path.split("?", 1)[0]
        with lock:
            count += 1
            n = count
            if comment_route.match(path): comments += 1
            elif reaction_route.match(path): reactions += 1
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        u = {"id": 1, "login": "claude-noether"}
        return self.reply(201, {"id": n, "body": "", "user": u, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                                "content": "eyes"})
    do_PATCH = do_POST

# A parent may hand down SIGTERM blocked or ignored (a thread of a test runner): take it back, so the benchmark's
# cleanup can stop this stub and no orphan holds the port (or the caller's output pipes) open.
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()

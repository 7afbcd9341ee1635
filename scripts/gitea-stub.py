#!/usr/bin/env python3
"""A minimal Gitea API stub for scripts/bench-serve and scripts/bench-replies: answers the calls `ka serve` makes
when idle or replying, over keep-alive HTTP/1.1, and counts requests: GET /stub/count (JSON: every API request,
the comments created, the reactions added) or /stub/counts (the same three numbers on one line, for polling).
It keeps the issues `ka serve` creates and edits (the [ka:dashboard] issue above all), as Gitea does: an idle
cycle is then measured as on a real tracker, where the bot finds its dashboard and lists nothing again.
Not a test double for correctness; the tests use the Swift stand-in."""
import json, re, signal, sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

count = comments = reactions = 0
lock = threading.Lock()
comment_route = re.compile(r"^/api/v1/repos/[^/]+/[^/]+/issues/\d+/comments$")
reaction_route = re.compile(r"^/api/v1/repos/[^/]+/[^/]+/issues/comments/\d+/reactions$")
issues_route = re.compile(r"^/api/v1/repos/[^/]+/[^/]+/issues$")
issue_route = re.compile(r"^/api/v1/repos/[^/]+/[^/]+/issues/(\d+)$")
issues = {}   # number -> issue JSON, as Gitea returns it
bot = {"id": 1, "login": "claude-noether"}

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
        path, _, query = self.path.partition("?")
        if issues_route.match(path):
            q = dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv)
            state = q.get("state", "open")
            page = int(q.get("page", "1") or 1)
            with lock:
                found = [i for i in sorted(issues.values(), key=lambda i: -i["number"]) if state == "all" or i["state"] == state]
            return self.reply(200, found if page == 1 else [])
        m = issue_route.match(path)
        if m:
            with lock: issue = issues.get(int(m.group(1)))
            return self.reply(200, issue) if issue else self.reply(404, {"message": "not found"})
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
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if issues_route.match(path) and self.command == "POST":
            body = json.loads(raw or b"{}")
            with lock:
                number = max(issues, default=0) + 1
                issues[number] = {"id": number, "number": number, "title": body.get("title", ""), "body": body.get("body", ""),
                                  "state": "open", "user": bot, "labels": [], "comments": 0, "pull_request": None,
                                  "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
                return self.reply(201, issues[number])
        m = issue_route.match(path)
        if m and self.command == "PATCH":
            body = json.loads(raw or b"{}")
            with lock:
                issue = issues.get(int(m.group(1)))
                if issue is None: return self.reply(404, {"message": "not found"})
                for k in ("title", "body", "state"):
                    if body.get(k) is not None: issue[k] = body[k]
                return self.reply(201, issue)
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

#!/usr/bin/python3
"""A small booking backend for the demo: what waitroom protects.

It trusts the Waitroom-User header (the gateway removes any copy a client
sends and sets its own), shows the admitted user a page, and books seats
with POST /book/seats/<n>, refusing a seat already taken (409).

Usage: demo_backend.py PORT
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

seats = {}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def send(self, status, ctype, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        user = self.headers.get("Waitroom-User", "unknown")
        if "application/json" in self.headers.get("Accept", ""):
            self.send(200, "application/json", json.dumps({"user": user, "path": self.path, "taken": sorted(seats)}))
            return
        self.send(200, "text/html; charset=utf-8",
                  "<!doctype html><html lang=en><meta charset=utf-8><title>Booking</title>"
                  "<main><h1>You are in!</h1><p>Welcome, user <code>%s</code>. "
                  "Seats taken so far: %d.</p></main></html>" % (user, len(seats)))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        user = self.headers.get("Waitroom-User", "unknown")
        parts = self.path.rstrip("/").split("/")
        seat = parts[-1] if len(parts) >= 2 and parts[-2] == "seats" else None
        if seat is None:
            self.send(404, "application/json", '{"error":"no such resource"}')
            return
        with lock:
            if seat in seats:
                self.send(409, "application/json", json.dumps({"error": "seat taken", "seat": seat}))
                return
            seats[seat] = user
        self.send(201, "application/json", json.dumps({"booked": seat, "user": user}))

    def log_message(self, fmt, *args):
        sys.stderr.write("demo-backend: " + (fmt % args) + "\n")


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()

"""What the Codex test's two mock upstreams share (chat_mock.py and
recording_responses_mock.py): a request recorder writing JSONL, a JSON
reply helper, answer splitting, and the serve-on-127.0.0.1 main loop.

Both mocks run as scripts from this folder, which puts it on sys.path.
"""

import json
import sys
import threading
import time
from http.server import ThreadingHTTPServer


class Recorder:
    """Every request seen, in order, in memory and appended to a JSONL file."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.records = []

    def add(self, record):
        with self.lock:
            record = {"seq": len(self.records), "time": time.time(), **record}
            self.records.append(record)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def snapshot(self):
        with self.lock:
            return list(self.records)


class JsonReplies:
    """A BaseHTTPRequestHandler mixin: send_json."""

    def send_json(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def pieces_of(text, n=3):
    """`text` in about `n` pieces, for streaming it."""
    step = max(1, -(-len(text) // n))
    return [text[i : i + step] for i in range(0, len(text), step)] or [""]


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(handler, argv, script):
    """`script RECORD.jsonl [PORT]`: serves `handler` on 127.0.0.1, recording
    into RECORD.jsonl, and prints the port (the only line on stdout)."""
    if len(argv) < 2:
        sys.exit(f"usage: {script} RECORD.jsonl [PORT]")
    handler.recorder = Recorder(argv[1])
    port = int(argv[2]) if len(argv) > 2 else 0
    server = Server(("127.0.0.1", port), handler)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

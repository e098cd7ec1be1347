#!/usr/bin/env python3
"""A small OpenAI-compatible upstream for Tollgate's end-to-end tests.

Standard library only. Usage:

    python3 mock_upstream.py [PORT]

Listens on 127.0.0.1:PORT (0 or no argument: a free port) and prints the port
it listens on as the first line of stdout.

Routes:

* ``POST /v1/chat/completions``: a deterministic answer, as JSON or (with
  ``"stream": true``) as Server-Sent Events. The text is ``MOCK_TEXT`` sent in
  ``MOCK_TEXT_PIECES``; when the request has ``tools``, the answer is a call to
  ``get_weather`` with arguments ``{"city":"Paris"}`` (streamed as argument
  deltas ``MOCK_ARGUMENT_PIECES``) and finish_reason ``tool_calls``. Usage is
  always ``prompt_tokens`` 12, ``completion_tokens`` = the number of pieces
  sent, ``prompt_tokens_details.cached_tokens`` 2. A stream carries the usage
  chunk (``choices: []``) only when ``stream_options.include_usage`` is true.
* ``GET /__requests``: the JSON bodies of the chat requests received so far
  (for the tests to check what the gateway forwarded).

Every request other than ``GET /__requests`` must carry
``Authorization: Bearer sk-upstream-test``; otherwise the answer is a 401 in
OpenAI's error shape.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM_KEY = "sk-upstream-test"

MOCK_TEXT_PIECES = ["Hello", " from", " the", " mock"]
MOCK_TEXT = "".join(MOCK_TEXT_PIECES)
MOCK_ARGUMENT_PIECES = ['{"city":', '"Paris"}']
MOCK_TOOL_NAME = "get_weather"
MOCK_TOOL_CALL_ID = "call_mock_1"
PROMPT_TOKENS = 12
CACHED_TOKENS = 2

_received = []
_received_lock = threading.Lock()


def usage(completion_tokens):
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
    }


def error_body(message, kind, code):
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MockUpstream/1"

    def log_message(self, fmt, *args):  # keep stdout for the port line only
        sys.stderr.write("mock: " + (fmt % args) + "\n")

    # -- helpers ---------------------------------------------------------

    def send_json(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def authorized(self):
        return self.headers.get("Authorization", "") == "Bearer " + UPSTREAM_KEY

    def write_chunk(self, data):
        """One HTTP/1.1 chunk (the stream uses chunked transfer encoding)."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def send_event(self, payload):
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self.write_chunk(("data: " + text + "\n\n").encode())

    # -- routes ----------------------------------------------------------

    def do_GET(self):
        if self.path == "/__requests":
            with _received_lock:
                self.send_json(200, {"requests": list(_received)})
            return
        if not self.authorized():
            self.unauthorized()
            return
        self.send_json(404, error_body("Unknown route " + self.path, "invalid_request_error", "not_found"))

    def do_POST(self):
        raw = self.read_body()
        if not self.authorized():
            self.unauthorized()
            return
        if self.path != "/v1/chat/completions":
            self.send_json(404, error_body("Unknown route " + self.path, "invalid_request_error", "not_found"))
            return
        try:
            request = json.loads(raw or b"{}")
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            self.send_json(400, error_body("The body is not a JSON object.", "invalid_request_error", None))
            return
        with _received_lock:
            _received.append(request)
        if request.get("stream"):
            self.chat_stream(request)
        else:
            self.chat_json(request)

    def unauthorized(self):
        self.send_json(
            401,
            error_body(
                "Incorrect API key provided to the mock upstream.",
                "invalid_request_error",
                "invalid_api_key",
            ),
        )

    def chat_json(self, request):
        model = request.get("model", "mock-model")
        if request.get("tools"):
            pieces = MOCK_ARGUMENT_PIECES
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": MOCK_TOOL_CALL_ID,
                        "type": "function",
                        "function": {"name": MOCK_TOOL_NAME, "arguments": "".join(pieces)},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            pieces = MOCK_TEXT_PIECES
            message = {"role": "assistant", "content": "".join(pieces)}
            finish = "stop"
        self.send_json(
            200,
            {
                "id": "chatcmpl-mock",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage(len(pieces)),
            },
        )

    def chat_stream(self, request):
        model = request.get("model", "mock-model")
        options = request.get("stream_options") or {}
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        created = int(time.time())

        def chunk(delta, finish=None):
            c = {
                "id": "chatcmpl-mock",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                # As OpenAI does: every chunk but the last says `usage: null`.
                c["usage"] = None
            return c

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if request.get("tools"):
            pieces = MOCK_ARGUMENT_PIECES
            self.send_event(
                chunk(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": MOCK_TOOL_CALL_ID,
                                "type": "function",
                                "function": {"name": MOCK_TOOL_NAME, "arguments": ""},
                            }
                        ],
                    }
                )
            )
            for piece in pieces:
                self.send_event(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            finish = "tool_calls"
        else:
            pieces = MOCK_TEXT_PIECES
            self.send_event(chunk({"role": "assistant", "content": ""}))
            for piece in pieces:
                self.send_event(chunk({"content": piece}))
            finish = "stop"
        self.send_event(chunk({}, finish))
        if include_usage:
            self.send_event(
                {
                    "id": "chatcmpl-mock",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage(len(pieces)),
                }
            )
        self.send_event("[DONE]")
        self.write_chunk(b"")  # the terminating zero-length chunk


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = Server(("127.0.0.1", port), Handler)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

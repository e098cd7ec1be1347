#!/usr/bin/env python3
"""A recording mock upstream (Anthropic Messages + OpenAI chat completions)
and a recording front proxy, for driving the real Claude Code CLI through
Tollgate.

Standard library only. Two modes:

    python3 recording_mock.py upstream RECORD.jsonl [PORT]
    python3 recording_mock.py front RECORD.jsonl TARGET_URL [PORT]

Each listens on 127.0.0.1:PORT (0 or none: a free port), prints the port as
the first line of stdout, and appends JSON lines to RECORD.jsonl: one when a
request arrives, ``{"side", "seq", "time", "method", "path", "headers",
"body"}`` (header names in lower case; ``body`` is the parsed JSON body, or
None with the text under ``raw_body`` when it is not JSON), and the same
object again, completed, once it is answered (``status``; upstream:
``reply`` = final|tool|side|count_tokens|..., ``reply_text``, ``usage`` as
reported; front: ``response_headers``, ``response_body``). Readers keep the
last line of each ``seq``. ``GET /__requests`` returns the records as JSON.

``upstream``: what Tollgate's providers point at.

* ``POST /v1/messages`` (stream and not), ``POST /v1/messages/count_tokens``:
  Anthropic's wire format.
* ``POST /v1/chat/completions`` (stream and not): OpenAI's wire format; the
  usage chunk only when ``stream_options.include_usage`` is true.

Every request but ``GET /__requests`` must carry ``x-api-key: sk-upstream-test`` or
``Authorization: Bearer sk-upstream-test``; otherwise a 401 in the vendor's
error shape. The answers script one Claude Code turn, statelessly:

0. a request whose first user message holds ``ANSWER_TRIGGER``: answered
   the way a chat model answers, by replying to the *last user message* —
   ``ANSWER_PREFIX`` + the last text block of the last user message (the
   user's words come after Claude Code's reminders). A system text that
   reached the upstream as the last user message is what gets answered then;
1. a request whose conversation holds a tool result (Anthropic
   ``tool_result`` block, OpenAI ``tool`` message): text quoting the tool's
   output, ``FINAL_PREFIX + output``;
2. else a request that offers a tool named ``Bash``: a call to ``Bash`` with
   ``{"command": "echo tollgate-tool-ok", ...}``, preceded by reasoning (a
   signed ``thinking`` block when the Anthropic request enables thinking;
   ``reasoning_content`` in OpenAI's format, as DeepSeek-style models send);
3. else (Claude Code's side requests: titles, topics, quota probes, ...):
   ``SIDE_TEXT``.

``front``: a transparent HTTP proxy to TARGET_URL (Tollgate) that records
what the client sent (method, path with query, headers, body) and what it
got back (status, headers, body up to ``RESPONSE_KEEP`` bytes), streaming the
response through as it arrives.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM_KEY = "sk-upstream-test"

TOOL_NAME = "Bash"
TOOL_COMMAND = "echo tollgate-tool-ok"
TOOL_OUTPUT = "tollgate-tool-ok"
TOOL_CALL_ID_ANTHROPIC = "toolu_mock_bash_1"
TOOL_CALL_ID_OPENAI = "call_mock_bash_1"
TOOL_INPUT = {"command": TOOL_COMMAND, "description": "Print a marker"}
FINAL_PREFIX = "Tollgate round trip done; the tool printed: "
SIDE_TEXT = "Tollgate side answer"
# Reasoning sent before the tool call: an Anthropic thinking block (only when
# the request enables thinking) with this signature, or OpenAI
# `reasoning_content` (as DeepSeek-style reasoning models send it).
THINKING_TEXT = "The user wants the marker printed; run it with Bash."
THINKING_SIGNATURE = "bW9jay1zaWduYXR1cmUtdG9sbGdhdGU="

# Token counts every answer reports (so the charges are predictable).
INPUT_TOKENS = 100
CACHE_READ_TOKENS = 20  # Anthropic cache_read_input_tokens / OpenAI cached_tokens
CACHE_CREATION_TOKENS = 10  # Anthropic only
TOOL_OUTPUT_TOKENS = 12  # output tokens of the tool-call answer

RESPONSE_KEEP = 256 * 1024  # bytes of a proxied response kept in the record
PROXY_TIMEOUT = 120  # seconds: connect/read limit of the front proxy

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}


class Recorder:
    def __init__(self, path, side):
        self.path = path
        self.side = side
        self.lock = threading.Lock()
        self.records = []

    def add(self, record):
        with self.lock:
            record = {"side": self.side, "seq": len(self.records), "time": time.time(), **record}
            self.records.append(record)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            return record

    def update(self, record, **fields):
        """Adds fields to a record and appends the completed record again
        (readers keep the last line per ``seq``)."""
        with self.lock:
            record.update(fields)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def snapshot(self):
        with self.lock:
            return list(self.records)


def parse_body(raw):
    if not raw:
        return {"body": None}
    try:
        return {"body": json.loads(raw)}
    except ValueError:
        return {"body": None, "raw_body": raw.decode("utf-8", "replace")}


def text_of(content):
    """The text of an Anthropic/OpenAI content value (string or blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                if isinstance(block.get("text"), str):
                    parts.append(block["text"])
                elif "content" in block:
                    parts.append(text_of(block["content"]))
            elif isinstance(block, str):
                parts.append(block)
        return "".join(parts)
    return ""


# -- the scripted conversation ----------------------------------------------


def anthropic_tool_result(body):
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if message.get("role") == "user" and isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    return text_of(block.get("content"))
    return None


def openai_tool_result(body):
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "tool":
            return text_of(message.get("content"))
    return None


def offers_bash(body, openai):
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        name = (tool.get("function") or {}).get("name") if openai else tool.get("name")
        if name == TOOL_NAME:
            return True
    return False


# A prompt holding this marker is answered like a chat model answers: by
# replying to the last user message, whatever it is.
ANSWER_TRIGGER = "tollgate-mock-answer"
ANSWER_PREFIX = "You said: "


def first_user_text(body):
    first = next((m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"), None)
    return text_of(first.get("content")) if first else ""


def last_user_words(body):
    """The text of the last user message's last text block (or its string)."""
    for message in reversed(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            texts = [
                b["text"]
                for b in content
                if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
            ]
            return texts[-1] if texts else ""
        return text_of(content)
    return ""


def plan(body, openai):
    """("answer", text) | ("final", text) | ("tool", None) | ("side", text)"""
    if ANSWER_TRIGGER in first_user_text(body):
        return "answer", ANSWER_PREFIX + last_user_words(body).strip()
    result = openai_tool_result(body) if openai else anthropic_tool_result(body)
    if result is not None:
        return "final", FINAL_PREFIX + result.strip()
    if offers_bash(body, openai):
        return "tool", None
    return "side", SIDE_TEXT


ERROR_TRIGGER = "tollgate-mock-error="


def scripted_error(body, openai):
    """(status, headers, body) of the vendor error a request asks for by
    holding ``tollgate-mock-error=NAME`` in its first user message, or None.
    NAME: overloaded, too-long, rate-limit."""
    text = first_user_text(body)
    if ERROR_TRIGGER not in text:
        return None
    name = text.split(ERROR_TRIGGER, 1)[1].split()[0].strip(".,;:`'\"")
    if name == "overloaded":
        if openai:
            return 503, [], {"error": {"message": "The server is overloaded or not ready yet.",
                                       "type": "server_error", "param": None, "code": None}}
        return 529, [], {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    if name == "too-long":
        if openai:
            return 400, [], {"error": {
                "message": "This model's maximum context length is 128000 tokens. However, your messages "
                           "resulted in 250000 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}
        return 400, [], {"type": "error", "error": {"type": "invalid_request_error",
                                                    "message": "prompt is too long: 250000 tokens > 200000 maximum"}}
    if name == "rate-limit":
        headers = [("retry-after", "1")]
        if openai:
            return 429, headers, {"error": {"message": "Rate limit reached for requests",
                                            "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
        return 429, headers, {"type": "error", "error": {"type": "rate_limit_error",
                                                         "message": "Number of requests has exceeded your rate limit"}}
    return None


def output_tokens(kind, text):
    """The output token count an answer reports: 12 for the tool call, one
    per streamed text piece otherwise."""
    return TOOL_OUTPUT_TOKENS if kind == "tool" else len(pieces_of(text))


def pieces_of(text, n=3):
    """Splits text into up to n pieces (to stream several deltas)."""
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# -- HTTP plumbing ------------------------------------------------------------


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "RecordingMock/1"
    recorder = None  # set on the subclass

    def log_message(self, fmt, *args):  # stdout is for the port line only
        sys.stderr.write(f"{self.recorder.side}: " + (fmt % args) + "\n")

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def header_dict(self):
        return {k.lower(): v for k, v in self.headers.items()}

    def send_json(self, status, payload, extra_headers=()):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def start_sse(self, extra_headers=()):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()


# -- upstream mode ------------------------------------------------------------


class UpstreamHandler(BaseHandler):
    def do_HEAD(self):
        self.handle_any()

    def do_GET(self):
        if self.path == "/__requests":
            self.send_json(200, {"requests": self.recorder.snapshot()})
            return
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def handle_any(self):
        raw = self.read_body() if self.command == "POST" else b""
        record = self.recorder.add(
            {"method": self.command, "path": self.path, "headers": self.header_dict(), **parse_body(raw)}
        )
        path = urllib.parse.urlsplit(self.path).path
        anthropic = path.startswith("/v1/messages") or path == "/v1/complete"
        if not self.authorized():
            self.recorder.update(record, status=401, reply="unauthorized")
            if anthropic:
                self.send_json(
                    401,
                    {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
                )
            else:
                self.send_json(
                    401,
                    {
                        "error": {
                            "message": "Incorrect API key provided to the mock upstream.",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": "invalid_api_key",
                        }
                    },
                )
            return
        body = record.get("body")
        if self.command != "POST" or path not in (
            "/v1/messages",
            "/v1/messages/count_tokens",
            "/v1/chat/completions",
        ):
            self.recorder.update(record, status=404, reply="not_found")
            self.send_json(
                404,
                {"type": "error", "error": {"type": "not_found_error", "message": "Unknown route " + self.path}},
            )
            return
        if not isinstance(body, dict):
            self.recorder.update(record, status=400, reply="bad_json")
            self.send_json(
                400, {"type": "error", "error": {"type": "invalid_request_error", "message": "body is not JSON"}}
            )
            return
        if path == "/v1/messages/count_tokens":
            tokens = max(1, len(json.dumps(body)) // 4)
            self.recorder.update(record, status=200, reply="count_tokens")
            self.send_json(200, {"input_tokens": tokens})
            return
        openai = path == "/v1/chat/completions"
        failure = scripted_error(body, openai)
        if failure is not None:
            status, headers, payload = failure
            self.recorder.update(record, status=status, reply="error")
            self.send_json(status, payload, extra_headers=headers)
            return
        kind, text = plan(body, openai)
        out = output_tokens(kind, text)
        if openai:
            usage = self.openai_usage(out)
        else:
            usage = {**self.anthropic_usage(out)}
            usage.pop("service_tier")
        self.recorder.update(record, status=200, reply=kind, reply_text=text, usage=usage)
        model = body.get("model", "mock-model")
        if openai:
            (self.openai_stream if body.get("stream") else self.openai_json)(model, body, kind, text)
        else:
            thinking = (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")
            (self.anthropic_stream if body.get("stream") else self.anthropic_json)(model, kind, text, thinking)

    def authorized(self):
        return (
            self.headers.get("x-api-key", "") == UPSTREAM_KEY
            or self.headers.get("Authorization", "") == "Bearer " + UPSTREAM_KEY
        )

    # Anthropic ---------------------------------------------------------------

    @staticmethod
    def anthropic_usage(output_tokens):
        return {
            "input_tokens": INPUT_TOKENS,
            "cache_creation_input_tokens": CACHE_CREATION_TOKENS,
            "cache_read_input_tokens": CACHE_READ_TOKENS,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def anthropic_json(self, model, kind, text, thinking):
        if kind == "tool":
            content = [
                *([{"type": "thinking", "thinking": THINKING_TEXT, "signature": THINKING_SIGNATURE}] if thinking else []),
                {"type": "text", "text": "Running it."},
                {"type": "tool_use", "id": TOOL_CALL_ID_ANTHROPIC, "name": TOOL_NAME, "input": TOOL_INPUT},
            ]
            stop, out = "tool_use", TOOL_OUTPUT_TOKENS
        else:
            content = [{"type": "text", "text": text}]
            stop, out = "end_turn", output_tokens(kind, text)
        self.send_json(
            200,
            {
                "id": "msg_mock_json",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": self.anthropic_usage(out),
            },
            extra_headers=[("request-id", "req_mock")],
        )

    def anthropic_stream(self, model, kind, text, thinking):
        def event(name, payload):
            self.write_chunk(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())

        self.start_sse(extra_headers=[("request-id", "req_mock")])
        start_usage = self.anthropic_usage(1)
        event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_mock_stream",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        )
        event("ping", {"type": "ping"})
        index = 0
        if kind == "tool":
            if thinking:
                event("content_block_start", {"type": "content_block_start", "index": index,
                                              "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
                for piece in pieces_of(THINKING_TEXT, 2):
                    event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                  "delta": {"type": "thinking_delta", "thinking": piece}})
                event("content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "signature_delta", "signature": THINKING_SIGNATURE}})
                event("content_block_stop", {"type": "content_block_stop", "index": index})
                index += 1
            event("content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {"type": "text", "text": ""}})
            event("content_block_delta", {"type": "content_block_delta", "index": index,
                                          "delta": {"type": "text_delta", "text": "Running it."}})
            event("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
            event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "tool_use", "id": TOOL_CALL_ID_ANTHROPIC, "name": TOOL_NAME,
                                      "input": {}},
                },
            )
            arguments = json.dumps(TOOL_INPUT)
            for piece in ["", *pieces_of(arguments)]:
                event("content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "input_json_delta", "partial_json": piece}})
            event("content_block_stop", {"type": "content_block_stop", "index": index})
            stop, out = "tool_use", TOOL_OUTPUT_TOKENS
        else:
            event("content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {"type": "text", "text": ""}})
            pieces = pieces_of(text)
            for piece in pieces:
                event("content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "text_delta", "text": piece}})
            event("content_block_stop", {"type": "content_block_stop", "index": index})
            stop, out = "end_turn", len(pieces)
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {
                    "input_tokens": INPUT_TOKENS,
                    "cache_creation_input_tokens": CACHE_CREATION_TOKENS,
                    "cache_read_input_tokens": CACHE_READ_TOKENS,
                    "output_tokens": out,
                },
            },
        )
        event("message_stop", {"type": "message_stop"})
        self.write_chunk(b"")

    # OpenAI ------------------------------------------------------------------

    @staticmethod
    def openai_usage(completion_tokens):
        return {
            "prompt_tokens": INPUT_TOKENS,
            "completion_tokens": completion_tokens,
            "total_tokens": INPUT_TOKENS + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": CACHE_READ_TOKENS},
        }

    def openai_json(self, model, body, kind, text):
        if kind == "tool":
            message = {
                "role": "assistant",
                "content": None,
                "reasoning_content": THINKING_TEXT,
                "tool_calls": [
                    {
                        "id": TOOL_CALL_ID_OPENAI,
                        "type": "function",
                        "function": {"name": TOOL_NAME, "arguments": json.dumps(TOOL_INPUT)},
                    }
                ],
            }
            finish, out = "tool_calls", TOOL_OUTPUT_TOKENS
        else:
            message = {"role": "assistant", "content": text}
            finish, out = "stop", output_tokens(kind, text)
        self.send_json(
            200,
            {
                "id": "chatcmpl-mockjson",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": self.openai_usage(out),
            },
        )

    def openai_stream(self, model, body, kind, text):
        options = body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        created = int(time.time())

        def chunk(delta, finish=None):
            c = {
                "id": "chatcmpl-mockstream",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                c["usage"] = None
            return c

        def send(payload):
            data = payload if isinstance(payload, str) else json.dumps(payload)
            self.write_chunk(f"data: {data}\n\n".encode())

        self.start_sse()
        if kind == "tool":
            send(chunk({"role": "assistant", "content": None, "reasoning_content": THINKING_TEXT}))
            send(chunk({"tool_calls": [
                {"index": 0, "id": TOOL_CALL_ID_OPENAI, "type": "function",
                 "function": {"name": TOOL_NAME, "arguments": ""}}]}))
            for piece in pieces_of(json.dumps(TOOL_INPUT)):
                send(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            finish, out = "tool_calls", TOOL_OUTPUT_TOKENS
        else:
            send(chunk({"role": "assistant", "content": ""}))
            pieces = pieces_of(text)
            for piece in pieces:
                send(chunk({"content": piece}))
            finish, out = "stop", len(pieces)
        send(chunk({}, finish))
        if include_usage:
            send({"id": "chatcmpl-mockstream", "object": "chat.completion.chunk", "created": created,
                  "model": model, "choices": [], "usage": self.openai_usage(out)})
        send("[DONE]")
        self.write_chunk(b"")


# -- front (recording proxy) mode -------------------------------------------


class FrontHandler(BaseHandler):
    target = None  # urllib.parse.SplitResult of the target, set on the subclass

    def do_GET(self):
        if self.path == "/__requests":
            self.send_json(200, {"requests": self.recorder.snapshot()})
            return
        self.proxy()

    def do_HEAD(self):
        self.proxy()

    def do_POST(self):
        self.proxy()

    def do_PUT(self):
        self.proxy()

    def do_DELETE(self):
        self.proxy()

    def do_PATCH(self):
        self.proxy()

    def do_OPTIONS(self):
        self.proxy()

    def proxy(self):
        raw = self.read_body()
        record = self.recorder.add(
            {"method": self.command, "path": self.path, "headers": self.header_dict(), **parse_body(raw)}
        )
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = self.target.netloc
        if raw or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(raw))
        conn = http.client.HTTPConnection(self.target.hostname, self.target.port, timeout=PROXY_TIMEOUT)
        try:
            conn.request(self.command, self.path, body=raw or None, headers=headers)
            resp = conn.getresponse()
        except OSError as e:
            conn.close()
            self.recorder.update(record, status=502, error=repr(e))
            self.send_json(502, {"type": "error", "error": {"type": "api_error", "message": f"front proxy: {e}"}})
            return
        try:
            resp_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
            self.send_response(resp.status, resp.reason)
            for k, v in resp_headers:
                self.send_header(k, v)
            bodyless = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
            if not bodyless:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            kept = b""
            if not bodyless:
                while True:
                    data = resp.read1(65536)
                    if not data:
                        break
                    if len(kept) < RESPONSE_KEEP:
                        kept += data[: RESPONSE_KEEP - len(kept)]
                    self.write_chunk(data)
                self.write_chunk(b"")
            self.wfile.flush()
            self.recorder.update(
                record,
                status=resp.status,
                response_headers={k.lower(): v for k, v in resp_headers},
                response_body=kept.decode("utf-8", "replace"),
            )
        except OSError as e:
            self.recorder.update(record, status=resp.status, error=repr(e))
            self.close_connection = True
        finally:
            conn.close()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv):
    if len(argv) < 3 or argv[1] not in ("upstream", "front"):
        sys.stderr.write(__doc__)
        return 2
    mode, record_path = argv[1], argv[2]
    if mode == "upstream":
        port = int(argv[3]) if len(argv) > 3 else 0
        handler = type("Handler", (UpstreamHandler,), {"recorder": Recorder(record_path, "upstream")})
    else:
        target = urllib.parse.urlsplit(argv[3])
        if target.hostname not in ("127.0.0.1", "localhost", "::1"):
            sys.stderr.write("front: the target must be on the loopback interface\n")
            return 2
        port = int(argv[4]) if len(argv) > 4 else 0
        handler = type("Handler", (FrontHandler,), {"recorder": Recorder(record_path, "client"), "target": target})
    server = Server(("127.0.0.1", port), handler)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

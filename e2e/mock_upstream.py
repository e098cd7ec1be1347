#!/usr/bin/env python3
"""A small OpenAI-compatible and Anthropic-compatible upstream for Tollgate's
end-to-end tests.

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
* ``POST /v1/messages``: Anthropic's Messages API, as JSON or (with
  ``"stream": true``) as Anthropic's event stream (``message_start``,
  ``content_block_start``, ``ping``, ``content_block_delta``…,
  ``content_block_stop``, ``message_delta`` with the stop reason and the
  output tokens, ``message_stop``). The text is ``CLAUDE_TEXT`` sent in
  ``CLAUDE_TEXT_PIECES``. When the request has ``tools`` and its last user
  turn holds no ``tool_result``, the answer is a ``tool_use`` block calling
  ``get_weather`` with input ``{"city":"Paris"}`` (streamed as
  ``input_json_delta`` pieces ``CLAUDE_ARGUMENT_PIECES``) and stop reason
  ``tool_use``. When the last user turn holds a ``tool_result``, the answer is
  the text ``tool_result_pieces(<that result's text>)``. Usage is always
  ``input_tokens`` 15, ``cache_read_input_tokens`` 3,
  ``cache_creation_input_tokens`` 2, ``output_tokens`` = the number of pieces.
  Requests are checked as Anthropic does (``model``, ``max_tokens``, roles,
  every ``tool_result`` answering a ``tool_use`` of the turn before it and
  vice versa): a 400 ``invalid_request_error`` otherwise.
* ``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``, N being the
  number of whitespace-separated words of the text in ``system`` and
  ``messages`` (see ``count_words``).
* ``GET /__requests``: the JSON bodies of the chat requests received so far
  (for the tests to check what the gateway forwarded).
* ``GET /__anthropic_requests``: the Anthropic requests received so far, each
  ``{"path", "anthropic_version", "anthropic_beta", "authorized", "body"}``.
* ``GET /__log[?marker=TEXT]``: every POST received so far, both APIs, in
  arrival order, as ``{"requests": [entry…]}``; with ``marker``, only those
  whose JSON body contains TEXT (compared as ``json.dumps(body,
  ensure_ascii=False)``, so use a plain alphanumeric marker). An entry is
  ``{"seq", "api" ("openai" | "anthropic"), "path", "body", "stream",
  "slow", "pieces" (how many the answer has), "sent" (how many were produced
  so far), "state"}``; ``state`` is ``"running"`` while the answer is being
  produced, then ``"done"``, ``"aborted"`` (the client went away before the
  end of the answer) or ``"rejected"`` (refused with a 4xx: bad key, bad
  body, or an unknown path such as an upstream ``/v1/responses``).

**Broken answers.** When the text of a request's messages contains
``BREAK_MARKER`` (``[break]``) and the answer is a text stream, the mock sends
the first ``BREAK_AFTER`` (2) pieces and then closes the connection without
ending the stream, as a crashed upstream would; its entry says ``"broken"``.

**Slow answers.** When the text of a request's messages (or Anthropic
``system``) contains ``SLOW_MARKER`` (``[slow]``) and the answer is text (no
tool call), the answer is ``SLOW_TEXT_PIECES`` (``SLOW_PIECES`` = 50 pieces,
``"s0"``, ``" s1"``… ``" s49"``), each produced ``SLOW_DELAY_SECS`` (0.1 s)
after the one before: a stream sends one chunk per piece, a non-stream answer
waits for all of them. Usage stays exact: output tokens = pieces (50) when the
answer completes; a stream whose client disconnects stops at the next piece
(its entry says ``"aborted"`` and how many were ``sent``).

The OpenAI routes require ``Authorization: Bearer sk-upstream-test`` (else a
401 in OpenAI's error shape); the Anthropic routes require
``x-api-key: sk-upstream-test`` and an ``anthropic-version`` header (else a
401 in Anthropic's error shape). The ``GET /__*`` routes are open.
"""

import json
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM_KEY = "sk-upstream-test"

MOCK_TEXT_PIECES = ["Hello", " from", " the", " mock"]
MOCK_TEXT = "".join(MOCK_TEXT_PIECES)
MOCK_ARGUMENT_PIECES = ['{"city":', '"Paris"}']
MOCK_TOOL_NAME = "get_weather"
MOCK_TOOL_CALL_ID = "call_mock_1"
PROMPT_TOKENS = 12
CACHED_TOKENS = 2

# The Anthropic side.
ANTHROPIC_PATHS = ("/v1/messages", "/v1/messages/count_tokens")
CLAUDE_TEXT_PIECES = ["Hello", " from", " the", " Claude", " mock"]
CLAUDE_TEXT = "".join(CLAUDE_TEXT_PIECES)
CLAUDE_ARGUMENT_PIECES = ['{"city":', ' "Par', 'is"}']
CLAUDE_TOOL_INPUT = {"city": "Paris"}
CLAUDE_TOOL_USE_ID = "toolu_mock_1"
CLAUDE_MESSAGE_ID = "msg_mock_1"
CLAUDE_INPUT_TOKENS = 15  # Anthropic's input_tokens: the uncached part only
CLAUDE_CACHE_READ_TOKENS = 3
CLAUDE_CACHE_WRITE_TOKENS = 2

# Slow answers (see the module docstring).
BREAK_MARKER = "[break]"
BREAK_AFTER = 2
SLOW_MARKER = "[slow]"
SLOW_PIECES = 50
SLOW_DELAY_SECS = 0.1
SLOW_TEXT_PIECES = ["s0"] + [f" s{i}" for i in range(1, SLOW_PIECES)]
SLOW_TEXT = "".join(SLOW_TEXT_PIECES)

_received = []
_received_lock = threading.Lock()
_anthropic_received = []
# Every POST, both APIs: entries of GET /__log, updated while answering.
_log = []


def log_request(api, path, body, state="running"):
    """Appends an entry to the request log and returns it (update it under the lock)."""
    with _received_lock:
        entry = {
            "seq": len(_log),
            "api": api,
            "path": path,
            "body": body,
            "stream": bool(isinstance(body, dict) and body.get("stream") is True),
            "slow": False,
            "pieces": 0,
            "sent": 0,
            "state": state,
        }
        _log.append(entry)
        return entry


def update_entry(entry, **changes):
    with _received_lock:
        entry.update(changes)


def log_matching(marker):
    with _received_lock:
        entries = [dict(e) for e in _log]
    if marker:
        entries = [e for e in entries if marker in json.dumps(e["body"], ensure_ascii=False)]
    return entries


def parsed_or_none(raw):
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return None


def is_slow(request):
    """Whether the text of the request's messages (or system) holds SLOW_MARKER."""
    parts = [request.get("messages"), request.get("system")]
    return SLOW_MARKER in json.dumps(parts, ensure_ascii=False)


def breaks(request):
    """Whether the request's text holds BREAK_MARKER."""
    return BREAK_MARKER in json.dumps(request.get("messages"), ensure_ascii=False)


class Broken(Exception):
    """The mock broke the stream off on purpose (BREAK_MARKER)."""


class ClientGone(Exception):
    """The client closed the connection while we were streaming to it."""


def tool_result_pieces(result_text):
    """The answer to a last user turn holding a tool_result with this text."""
    return ["The tool", " said: ", result_text]


def anthropic_usage(output_tokens):
    return {
        "input_tokens": CLAUDE_INPUT_TOKENS,
        "cache_creation_input_tokens": CLAUDE_CACHE_WRITE_TOKENS,
        "cache_read_input_tokens": CLAUDE_CACHE_READ_TOKENS,
        "output_tokens": output_tokens,
    }


def anthropic_error(kind, message):
    return {"type": "error", "error": {"type": kind, "message": message}}


def text_of(content):
    """The text of an Anthropic content (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif block.get("type") == "tool_result":
            parts.append(text_of(block.get("content", "")))
    return "\n".join(p for p in parts if p)


def count_words(request):
    """count_tokens' answer: the words of the text in `system` and `messages`."""
    texts = [text_of(request.get("system", ""))]
    for message in request.get("messages") or []:
        if isinstance(message, dict):
            texts.append(text_of(message.get("content", "")))
    return sum(len(t.split()) for t in texts)


def blocks_of(message):
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def validate_messages_request(request, count_only=False):
    """Anthropic's checks that matter for a translating gateway; None if fine."""
    if not isinstance(request.get("model"), str) or not request["model"]:
        return "model: Field required"
    if not count_only:
        max_tokens = request.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            return "max_tokens: Field required (a positive integer)"
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        if not isinstance(content, (str, list)):
            return f"messages.{i}.content: Input should be a string or a list of blocks"
        uses = [b.get("id") for b in blocks_of(message) if b.get("type") == "tool_use"]
        results = [b.get("tool_use_id") for b in blocks_of(message) if b.get("type") == "tool_result"]
        if message["role"] == "assistant" and results:
            return f"messages.{i}: tool_result blocks are only allowed in user turns"
        if message["role"] == "user" and uses:
            return f"messages.{i}: tool_use blocks are only allowed in assistant turns"
        if results:
            before = blocks_of(messages[i - 1]) if i > 0 and messages[i - 1].get("role") == "assistant" else []
            ids = {b.get("id") for b in before if b.get("type") == "tool_use"}
            for r in results:
                if r not in ids:
                    return (
                        f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: {r}. "
                        "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    )
        if uses and i + 1 < len(messages):
            answered = {
                b.get("tool_use_id") for b in blocks_of(messages[i + 1]) if b.get("type") == "tool_result"
            }
            missing = [u for u in uses if u not in answered]
            if missing:
                return (
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    + ", ".join(map(str, missing))
                )
    tools = request.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: Input should be a list"
        for j, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                return f"tools.{j}.name: Field required"
            if "type" not in tool and not isinstance(tool.get("input_schema"), dict):
                return f"tools.{j}.input_schema: Field required"
    return None


def last_tool_result(request):
    """The text of the last user turn's tool_result, or None."""
    messages = request.get("messages") or []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return None
    results = [b for b in blocks_of(users[-1]) if b.get("type") == "tool_result"]
    if not results:
        return None
    return text_of(results[-1].get("content", ""))


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
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
            self.close_connection = True
            raise ClientGone() from e

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def authorized(self):
        return self.headers.get("Authorization", "") == "Bearer " + UPSTREAM_KEY

    def write_chunk(self, data):
        """One HTTP/1.1 chunk (the stream uses chunked transfer encoding)."""
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
            self.close_connection = True
            raise ClientGone() from e

    def produced(self, entry, delay):
        """Notes one more piece of the answer (after `delay` seconds, for slow answers)."""
        if delay:
            time.sleep(delay)
        with _received_lock:
            entry["sent"] += 1

    def maybe_break(self, request, sent):
        """Closes the connection mid-stream for a BREAK_MARKER request."""
        if sent == BREAK_AFTER and breaks(request):
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            raise Broken()

    def send_event(self, payload):
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self.write_chunk(("data: " + text + "\n\n").encode())

    # -- routes ----------------------------------------------------------

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/__log":
            marker = urllib.parse.parse_qs(query).get("marker", [None])[0]
            self.send_json(200, {"requests": log_matching(marker)})
            return
        if self.path == "/__requests":
            with _received_lock:
                self.send_json(200, {"requests": list(_received)})
            return
        if self.path == "/__anthropic_requests":
            with _received_lock:
                self.send_json(200, {"requests": list(_anthropic_received)})
            return
        if not self.authorized():
            self.unauthorized()
            return
        self.send_json(404, error_body("Unknown route " + self.path, "invalid_request_error", "not_found"))

    def do_POST(self):
        raw = self.read_body()
        path = self.path.split("?", 1)[0]
        if path in ANTHROPIC_PATHS:
            self.anthropic(path, raw)
            return
        if not self.authorized():
            log_request("openai", path, parsed_or_none(raw), state="rejected")
            self.unauthorized()
            return
        if self.path != "/v1/chat/completions":
            log_request("openai", path, parsed_or_none(raw), state="rejected")
            self.send_json(404, error_body("Unknown route " + self.path, "invalid_request_error", "not_found"))
            return
        try:
            request = json.loads(raw or b"{}")
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            log_request("openai", path, None, state="rejected")
            self.send_json(400, error_body("The body is not a JSON object.", "invalid_request_error", None))
            return
        with _received_lock:
            _received.append(request)
        entry = log_request("openai", path, request)
        try:
            if request.get("stream"):
                self.chat_stream(request, entry)
            else:
                self.chat_json(request, entry)
        except Broken:
            update_entry(entry, state="broken")
        except ClientGone:
            update_entry(entry, state="aborted")
        else:
            update_entry(entry, state="done")

    def unauthorized(self):
        self.send_json(
            401,
            error_body(
                "Incorrect API key provided to the mock upstream.",
                "invalid_request_error",
                "invalid_api_key",
            ),
        )

    def chat_json(self, request, entry):
        model = request.get("model", "mock-model")
        delay = 0
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
            if is_slow(request):
                pieces, delay = SLOW_TEXT_PIECES, SLOW_DELAY_SECS
            message = {"role": "assistant", "content": "".join(pieces)}
            finish = "stop"
        update_entry(entry, slow=bool(delay), pieces=len(pieces))
        for _ in pieces:
            self.produced(entry, delay)
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

    def chat_stream(self, request, entry):
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
            update_entry(entry, pieces=len(pieces))
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
                self.produced(entry, 0)
            finish = "tool_calls"
        else:
            pieces, delay = MOCK_TEXT_PIECES, 0
            if is_slow(request):
                pieces, delay = SLOW_TEXT_PIECES, SLOW_DELAY_SECS
            update_entry(entry, slow=bool(delay), pieces=len(pieces))
            self.send_event(chunk({"role": "assistant", "content": ""}))
            for sent, piece in enumerate(pieces):
                self.maybe_break(request, sent)
                self.produced(entry, delay)
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

    # -- Anthropic -------------------------------------------------------

    def send_anthropic_event(self, name, payload):
        self.write_chunk(("event: " + name + "\ndata: " + json.dumps(payload) + "\n\n").encode())

    def anthropic(self, path, raw):
        version = self.headers.get("anthropic-version", "")
        authorized = self.headers.get("x-api-key", "") == UPSTREAM_KEY and bool(version)
        try:
            request = json.loads(raw or b"{}")
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            request = None
        with _received_lock:
            _anthropic_received.append(
                {
                    "path": path,
                    "anthropic_version": version or None,
                    "anthropic_beta": self.headers.get("anthropic-beta"),
                    "authorized": authorized,
                    "body": request,
                }
            )
        entry = log_request("anthropic", path, request)
        if not authorized:
            update_entry(entry, state="rejected")
            message = "invalid x-api-key" if version else "anthropic-version: header is required"
            self.send_json(401, anthropic_error("authentication_error", message))
            return
        if request is None:
            update_entry(entry, state="rejected")
            self.send_json(400, anthropic_error("invalid_request_error", "The body is not a JSON object."))
            return
        problem = validate_messages_request(request, count_only=path.endswith("/count_tokens"))
        if problem:
            update_entry(entry, state="rejected")
            self.send_json(400, anthropic_error("invalid_request_error", problem))
            return
        if path.endswith("/count_tokens"):
            update_entry(entry, state="done")
            self.send_json(200, {"input_tokens": count_words(request)})
            return
        result = last_tool_result(request)
        delay = 0
        if request.get("tools") and result is None:
            answer = ("tool_use", CLAUDE_ARGUMENT_PIECES, "tool_use")
        elif result is not None:
            answer = ("text", tool_result_pieces(result), "end_turn")
        elif is_slow(request):
            answer, delay = ("text", SLOW_TEXT_PIECES, "end_turn"), SLOW_DELAY_SECS
        else:
            answer = ("text", CLAUDE_TEXT_PIECES, "end_turn")
        update_entry(entry, slow=bool(delay), pieces=len(answer[1]))
        try:
            if request.get("stream") is True:
                self.messages_stream(request, *answer, entry=entry, delay=delay)
            else:
                self.messages_json(request, *answer, entry=entry, delay=delay)
        except Broken:
            update_entry(entry, state="broken")
        except ClientGone:
            update_entry(entry, state="aborted")
        else:
            update_entry(entry, state="done")

    def messages_json(self, request, kind, pieces, stop_reason, entry, delay=0):
        for _ in pieces:
            self.produced(entry, delay)
        if kind == "tool_use":
            block = {
                "type": "tool_use",
                "id": CLAUDE_TOOL_USE_ID,
                "name": MOCK_TOOL_NAME,
                "input": json.loads("".join(pieces)),
            }
        else:
            block = {"type": "text", "text": "".join(pieces)}
        self.send_json(
            200,
            {
                "id": CLAUDE_MESSAGE_ID,
                "type": "message",
                "role": "assistant",
                "model": request["model"],
                "content": [block],
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": anthropic_usage(len(pieces)),
            },
        )

    def messages_stream(self, request, kind, pieces, stop_reason, entry, delay=0):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.send_anthropic_event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": CLAUDE_MESSAGE_ID,
                    "type": "message",
                    "role": "assistant",
                    "model": request["model"],
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    # As Anthropic does: the input side, and output so far.
                    "usage": anthropic_usage(1),
                },
            },
        )
        if kind == "tool_use":
            block = {"type": "tool_use", "id": CLAUDE_TOOL_USE_ID, "name": MOCK_TOOL_NAME, "input": {}}
            delta = lambda piece: {"type": "input_json_delta", "partial_json": piece}  # noqa: E731
        else:
            block = {"type": "text", "text": ""}
            delta = lambda piece: {"type": "text_delta", "text": piece}  # noqa: E731
        self.send_anthropic_event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
        self.send_anthropic_event("ping", {"type": "ping"})
        for sent, piece in enumerate(pieces):
            self.maybe_break(request, sent)
            self.produced(entry, delay)
            self.send_anthropic_event(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta(piece)}
            )
        self.send_anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0})
        self.send_anthropic_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": len(pieces)},
            },
        )
        self.send_anthropic_event("message_stop", {"type": "message_stop"})
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

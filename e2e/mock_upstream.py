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

The OpenAI routes require ``Authorization: Bearer sk-upstream-test`` (else a
401 in OpenAI's error shape); the Anthropic routes require
``x-api-key: sk-upstream-test`` and an ``anthropic-version`` header (else a
401 in Anthropic's error shape). The ``GET /__*`` routes are open.
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

_received = []
_received_lock = threading.Lock()
_anthropic_received = []


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
        if not authorized:
            message = "invalid x-api-key" if version else "anthropic-version: header is required"
            self.send_json(401, anthropic_error("authentication_error", message))
            return
        if request is None:
            self.send_json(400, anthropic_error("invalid_request_error", "The body is not a JSON object."))
            return
        problem = validate_messages_request(request, count_only=path.endswith("/count_tokens"))
        if problem:
            self.send_json(400, anthropic_error("invalid_request_error", problem))
            return
        if path.endswith("/count_tokens"):
            self.send_json(200, {"input_tokens": count_words(request)})
            return
        result = last_tool_result(request)
        if request.get("tools") and result is None:
            answer = ("tool_use", CLAUDE_ARGUMENT_PIECES, "tool_use")
        elif result is not None:
            answer = ("text", tool_result_pieces(result), "end_turn")
        else:
            answer = ("text", CLAUDE_TEXT_PIECES, "end_turn")
        if request.get("stream") is True:
            self.messages_stream(request, *answer)
        else:
            self.messages_json(request, *answer)

    def messages_json(self, request, kind, pieces, stop_reason):
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

    def messages_stream(self, request, kind, pieces, stop_reason):
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
        for piece in pieces:
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

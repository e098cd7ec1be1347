#!/usr/bin/env python3
"""A recording OpenAI chat-completions upstream that scripts one Codex CLI
turn, for driving the real Codex CLI through Tollgate's Responses API
emulation.

Standard library only. Usage:

    python3 chat_mock.py RECORD.jsonl [PORT]

Listens on 127.0.0.1:PORT (0 or none: a free port), prints the port as the
first line of stdout, and appends one JSON line per request to RECORD.jsonl
once it is answered: ``{"seq", "time", "method", "path", "headers", "body",
"status", "reply", "usage"}`` (header names in lower case; ``reply`` is
tool|final|side|error; ``usage`` as reported). ``GET /__requests`` returns
the records as JSON.

``POST /v1/chat/completions`` (stream and not; the usage chunk only when
``stream_options.include_usage`` is true) requires ``Authorization: Bearer
sk-upstream-test`` (else 401 in OpenAI's error shape) and a body with
``model`` and a non-empty ``messages`` list, whose ``tools`` (if any) are
well-formed function tools, with ``tool_choice`` / ``parallel_tool_calls``
only beside ``tools``, and whose ``tool`` messages each answer a
``tool_calls`` id of the assistant message before them (else 400, as OpenAI
does). The answers script one Codex turn, statelessly:

1. the last message is a ``tool`` message: the text ``FINAL_PREFIX +
   TOOL_OUTPUT`` when that message holds TOOL_OUTPUT (else ``FINAL_PREFIX +
   "<no marker>"``); usage FINAL_USAGE;
2. else, when a user message holds ``CALL_DIRECTIVE + NAME`` (e.g.
   ``tollgate-call=apply_patch``): a call to the offered function whose
   name is NAME or ends with NAME (a flattened namespace tool, e.g.
   ``multi_agent_v1__close_agent``), with arguments DIRECTED_ARGUMENTS[NAME];
   for ``apply_patch`` (a freeform tool in Responses) the arguments are
   ``{<its one string parameter>: PATCH}``. No such function: the text
   ``NO_TOOL_PREFIX + NAME``;
3. else the request offers Codex's shell tool (``exec_command``; or
   ``shell_command`` / ``shell`` for older Codex versions): a call to it
   running TOOL_COMMAND;
4. else (e.g. Codex's compaction request, which has no tools): SIDE_TEXT.

Every tool call is preceded by reasoning (``delta.reasoning_content``, as
DeepSeek-style reasoning models send it) and reports usage TOOL_USAGE.
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler

from mock_server import JsonReplies, pieces_of, serve

UPSTREAM_KEY = "sk-upstream-test"

TOOL_NAME = "exec_command"
TOOL_COMMAND = "echo tollgate-codex-ok"
TOOL_OUTPUT = "tollgate-codex-ok"
TOOL_CALL_ID = "call_mock_codex_exec_1"
FINAL_PREFIX = "Tollgate Codex round trip done; the command printed: "
SIDE_TEXT = "Tollgate side answer"
REASONING_TEXT = "The user wants the marker printed; run it with exec_command."
NO_TOOL_PREFIX = "The upstream was offered no function for "

# Calls chosen by a directive in the prompt (rule 2).
CALL_DIRECTIVE = "tollgate-call="
PATCH_FILE = "tollgate-patch.txt"
PATCH_LINE = "written by apply_patch through tollgate"
PATCH = f"*** Begin Patch\n*** Add File: {PATCH_FILE}\n+{PATCH_LINE}\n*** End Patch\n"
DIRECTED_ARGUMENTS = {
    "close_agent": {"target": "no-such-agent"},  # Codex's multi_agent_v1 namespace
    "apply_patch": None,  # {<its string parameter>: PATCH}
}

# Usage each answer reports, so that the charges are predictable.
PROMPT_TOKENS = 100
CACHED_TOKENS = 20
TOOL_COMPLETION_TOKENS = 12  # the tool-call answer
FINAL_COMPLETION_TOKENS = 7  # the final text answer
REASONING_TOKENS = 4  # part of TOOL_COMPLETION_TOKENS
SIDE_COMPLETION_TOKENS = 3


def usage(completion_tokens, reasoning_tokens=0):
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }


TOOL_USAGE = usage(TOOL_COMPLETION_TOKENS, REASONING_TOKENS)
FINAL_USAGE = usage(FINAL_COMPLETION_TOKENS)
SIDE_USAGE = usage(SIDE_COMPLETION_TOKENS)


def text_of(content):
    """The text of a chat message's content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def shell_call(tools):
    """(name, arguments JSON) calling the shell tool the request offers, or None."""
    names = {
        t["function"].get("name")
        for t in tools or []
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("function"), dict)
    }
    if TOOL_NAME in names:  # Codex 0.1xx "unified exec": {"cmd": "...", ...}
        return TOOL_NAME, json.dumps({"cmd": TOOL_COMMAND})
    if "shell_command" in names:
        return "shell_command", json.dumps({"command": TOOL_COMMAND})
    if "shell" in names:
        return "shell", json.dumps({"command": ["bash", "-lc", TOOL_COMMAND]})
    return None


def directed_call(body):
    """(name, arguments JSON) for a CALL_DIRECTIVE in the user's messages,
    ("", NAME) when no offered function matches it, or None without one."""
    wanted = None
    for m in body.get("messages") or []:
        if isinstance(m, dict) and m.get("role") == "user":
            text = text_of(m.get("content"))
            if CALL_DIRECTIVE in text:
                wanted = text.split(CALL_DIRECTIVE, 1)[1].split()[0].strip("`.,;:)")
    if wanted is None:
        return None
    for t in body.get("tools") or []:
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            continue
        if fn["name"] == wanted or fn["name"].endswith(wanted):
            if wanted == "apply_patch":
                props = (fn.get("parameters") or {}).get("properties") or {}
                strings = [k for k, v in props.items() if isinstance(v, dict) and v.get("type") == "string"]
                if len(strings) != 1:
                    return "", wanted
                return fn["name"], json.dumps({strings[0]: PATCH})
            return fn["name"], json.dumps(DIRECTED_ARGUMENTS.get(wanted) or {})
    return "", wanted


def validate(body):
    """An OpenAI-style complaint about the request, or None."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not tools:
            return "'tools' must be a non-empty array when present"
        for i, t in enumerate(tools):
            if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("function"), dict):
                return f"tools[{i}]: only tools of type 'function' are supported, got {json.dumps(t)[:200]}"
            if not isinstance(t["function"].get("name"), str):
                return f"tools[{i}].function.name: missing"
    for key in ("tool_choice", "parallel_tool_calls"):
        if key in body and not tools:
            return f"Invalid value for '{key}': '{key}' is only allowed when 'tools' are specified."
    open_ids = set()
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant", "tool"):
            return f"messages[{i}]: invalid role"
        if m["role"] == "tool":
            if m.get("tool_call_id") not in open_ids:
                return (
                    f"messages[{i}]: messages with role 'tool' must be a response to a preceeding message "
                    "with 'tool_calls'"
                )
            open_ids.discard(m.get("tool_call_id"))
            continue
        if open_ids:
            return f"messages[{i}]: an assistant message with 'tool_calls' must be followed by tool messages " \
                   f"responding to each 'tool_call_id'; missing {sorted(open_ids)}"
        if m["role"] == "assistant":
            open_ids = {c.get("id") for c in m.get("tool_calls") or [] if isinstance(c, dict)}
    return None


class Handler(JsonReplies, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CodexChatMock/1"
    recorder = None  # set in main()

    def log_message(self, fmt, *args):  # stdout is for the port line only
        sys.stderr.write("chat-mock: " + (fmt % args) + "\n")

    def error(self, status, message, code=None, body=None):
        self.record(body, status, "error", error=message)
        self.send_json(status, {"error": {"message": message, "type": "invalid_request_error", "param": None,
                                          "code": code}})

    def record(self, body, status, reply, **extra):
        self.recorder.add(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
                "status": status,
                "reply": reply,
                **extra,
            }
        )

    def do_GET(self):
        if self.path == "/__requests":
            self.send_json(200, {"requests": self.recorder.snapshot()})
            return
        self.error(404, f"Unknown route GET {self.path}", "not_found")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if self.headers.get("Authorization", "") != "Bearer " + UPSTREAM_KEY:
            self.error(401, "Incorrect API key provided to the mock upstream.", "invalid_api_key", body)
            return
        if self.path.split("?", 1)[0] != "/v1/chat/completions":
            self.error(404, f"Unknown route POST {self.path}", "not_found", body)
            return
        if not isinstance(body, dict):
            self.error(400, "The body is not a JSON object.", None, body)
            return
        problem = validate(body)
        if problem:
            self.error(400, problem, None, body)
            return
        messages = body["messages"]
        call = directed_call(body) or shell_call(body.get("tools"))
        if messages[-1].get("role") == "tool":
            result = text_of(messages[-1].get("content"))
            marker = TOOL_OUTPUT if TOOL_OUTPUT in result else "<no marker>"
            reply, text, answer_usage = "final", FINAL_PREFIX + marker, FINAL_USAGE
        elif call is not None and not call[0]:
            reply, text, answer_usage = "side", NO_TOOL_PREFIX + call[1], SIDE_USAGE
        elif call is not None:
            reply, text, answer_usage = "tool", None, TOOL_USAGE
        else:
            reply, text, answer_usage = "side", SIDE_TEXT, SIDE_USAGE
        if body.get("stream") is True:
            self.stream(body, text, call, answer_usage)
        else:
            self.json_answer(body, text, call, answer_usage)
        self.record(body, 200, reply, usage=answer_usage)

    def json_answer(self, body, text, call, answer_usage):
        if text is None:
            name, arguments = call
            message = {
                "role": "assistant",
                "content": None,
                "reasoning_content": REASONING_TEXT,
                "tool_calls": [
                    {"id": TOOL_CALL_ID, "type": "function", "function": {"name": name, "arguments": arguments}}
                ],
            }
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": text}, "stop"
        self.send_json(
            200,
            {
                "id": "chatcmpl-codex-mock",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": answer_usage,
            },
        )

    def stream(self, body, text, call, answer_usage):
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        created = int(time.time())

        def chunk(delta, finish=None):
            c = {
                "id": "chatcmpl-codex-mock",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                c["usage"] = None
            return c

        def send(payload):
            data = ("data: " + (payload if isinstance(payload, str) else json.dumps(payload)) + "\n\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if text is None:
            name, arguments = call
            send(chunk({"role": "assistant", "content": None, "reasoning_content": ""}))
            for piece in pieces_of(REASONING_TEXT):
                send(chunk({"reasoning_content": piece}))
            send(chunk({"tool_calls": [{"index": 0, "id": TOOL_CALL_ID, "type": "function",
                                        "function": {"name": name, "arguments": ""}}]}))
            for piece in pieces_of(arguments):
                send(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            finish = "tool_calls"
        else:
            send(chunk({"role": "assistant", "content": ""}))
            for piece in pieces_of(text):
                send(chunk({"content": piece}))
            finish = "stop"
        send(chunk({}, finish))
        if include_usage:
            send({"id": "chatcmpl-codex-mock", "object": "chat.completion.chunk", "created": created,
                  "model": body["model"], "choices": [], "usage": answer_usage})
        send("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


if __name__ == "__main__":
    serve(Handler, sys.argv, "chat_mock.py")

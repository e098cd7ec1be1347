#!/usr/bin/env python3
"""A recording mock of OpenAI's Responses API, for seeing exactly what the
real Codex CLI (`codex exec`) sends, with no gateway in between.

Standard library only. Usage:

    python3 recording_responses_mock.py RECORD.jsonl [PORT]

Listens on 127.0.0.1:PORT (0 or none: a free port), prints the port as the
first line of stdout, and appends one JSON line per request to RECORD.jsonl:
``{"seq", "time", "method", "path", "headers", "body", "status", "reply"}``
(header names in lower case; ``body`` is the parsed JSON body, or None with
``raw_body_b64`` when it is not JSON, e.g. compressed). ``GET /__requests``
returns the records as JSON.

Routes (every other request is recorded and answered 404 in OpenAI's error
shape, so that the record shows what else Codex tried):

* ``POST /v1/responses``: a streamed (SSE) Response, scripted statelessly:

  1. the request's ``input`` holds a tool result (``function_call_output``,
     ``custom_tool_call_output``, ...): an assistant message
     ``FINAL_PREFIX + TOOL_OUTPUT`` when the result contains TOOL_OUTPUT
     (else FINAL_PREFIX + "<no marker>");
  2. else the request offers one of Codex's shell tools (``exec_command``,
     ``shell_command``, ``shell``): a ``reasoning`` item (with a summary and
     ``encrypted_content``, to see it echoed back) and a ``function_call``
     to that tool running ``TOOL_COMMAND``;
  3. else: ``SIDE_TEXT``.

  Events: response.created, response.in_progress, then per output item
  response.output_item.added, (response.output_text.delta /
  response.function_call_arguments.delta ...), response.output_item.done,
  and response.completed with ``usage`` (USAGE).
* ``POST /v1/responses/compact`` and ``GET /v1/models``: recorded, 404 (Codex
  falls back on its own).

With env ``MOCK_MAX_RESPONSES=N``, requests to ``/v1/responses`` after the
N-th are answered 400 (and recorded with reply ``limit``): a run that would
loop (e.g. compacting forever) ends at once.
"""

import base64
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler

from mock_server import JsonReplies, pieces_of, serve

TOOL_COMMAND = "echo tollgate-codex-ok"
TOOL_OUTPUT = "tollgate-codex-ok"
FINAL_PREFIX = "Tollgate Codex round trip done; the command printed: "
SIDE_TEXT = "Tollgate side answer"
REASONING_SUMMARY = "**Running the marker command**\n\nThe user wants the marker printed."
REASONING_ENCRYPTED = "gAAAAB-mock-encrypted-reasoning-tollgate=="
CALL_ID = "call_mock_codex_1"

USAGE = {
    "input_tokens": 100,
    "input_tokens_details": {"cached_tokens": 20},
    "output_tokens": 12,
    "output_tokens_details": {"reasoning_tokens": 4},
    "total_tokens": 112,
}

# Tool results Codex may send back, by item type.
TOOL_RESULT_TYPES = {
    "function_call_output",
    "custom_tool_call_output",
    "local_shell_call_output",
    "tool_search_output",
    "mcp_tool_call_output",
}


def shell_call(tools):
    """(name, arguments JSON string) calling Codex's shell tool, or None."""
    names = {t.get("name") for t in tools or [] if isinstance(t, dict) and t.get("type") == "function"}
    if "exec_command" in names:  # unified exec: {"cmd": "...", ...}
        return "exec_command", json.dumps({"cmd": TOOL_COMMAND, "yield_time_ms": 10000})
    if "shell_command" in names:  # {"command": "...", "workdir"?, "timeout_ms"?}
        return "shell_command", json.dumps({"command": TOOL_COMMAND})
    if "shell" in names:  # {"command": ["bash", "-lc", "..."], ...}
        return "shell", json.dumps({"command": ["bash", "-lc", TOOL_COMMAND]})
    return None


def output_text(output):
    """The text of a tool output (a string or a list of content items)."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(p.get("text", "") for p in output if isinstance(p, dict))
    if isinstance(output, dict):
        return output_text(output.get("content") or output.get("output") or "")
    return ""


def tool_result(body):
    """The text of the last tool result in the request's input, or None."""
    items = body.get("input") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return None
    results = [i for i in items if isinstance(i, dict) and i.get("type") in TOOL_RESULT_TYPES]
    if not results:
        return None
    return output_text(results[-1].get("output"))


class Handler(JsonReplies, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "RecordingResponsesMock/1"
    recorder = None  # set in main()

    def log_message(self, fmt, *args):  # stdout is for the port line only
        sys.stderr.write("responses-mock: " + (fmt % args) + "\n")

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def record(self, raw, status, reply, body=None):
        rec = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
            "status": status,
            "reply": reply,
        }
        if body is None and raw:
            rec["raw_body_b64"] = base64.b64encode(raw).decode()
        self.recorder.add(rec)

    def not_found(self, raw):
        self.record(raw, 404, "not_found")
        self.send_json(
            404,
            {"error": {"message": f"Unknown route {self.command} {self.path}", "type": "invalid_request_error",
                       "param": None, "code": "not_found"}},
        )

    def do_GET(self):
        if self.path == "/__requests":
            self.send_json(200, {"requests": self.recorder.snapshot()})
            return
        self.not_found(b"")

    def do_HEAD(self):
        self.record(b"", 404, "not_found")
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        raw = self.read_body()
        path = self.path.split("?", 1)[0]
        if not path.endswith("/responses"):
            self.not_found(raw)
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            self.record(raw, 400, "bad_body")
            self.send_json(400, {"error": {"message": "body is not a JSON object", "type": "invalid_request_error",
                                           "param": None, "code": None}})
            return
        limit = int(os.environ.get("MOCK_MAX_RESPONSES") or 0)
        if limit and sum(1 for r in self.recorder.snapshot() if r["body"] is not None) >= limit:
            self.record(raw, 400, "limit", body)
            error = {"message": "mock: MOCK_MAX_RESPONSES reached", "type": "invalid_request_error"}
            self.send_json(400, {"error": {**error, "param": None, "code": None}})
            return
        result = tool_result(body)
        call = shell_call(body.get("tools"))
        if result is not None:
            marker = TOOL_OUTPUT if TOOL_OUTPUT in result else "<no marker>"
            reply, items = "final", [self.message_item(FINAL_PREFIX + marker)]
        elif call is not None:
            reply, items = "tool", [self.reasoning_item(), self.call_item(*call)]
        else:
            reply, items = "side", [self.message_item(SIDE_TEXT)]
        self.record(raw, 200, reply, body)
        self.stream(body, items)

    # -- the streamed Response --------------------------------------------

    @staticmethod
    def message_item(text):
        return {
            "type": "message",
            "id": "msg_mock_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }

    @staticmethod
    def reasoning_item():
        return {
            "type": "reasoning",
            "id": "rs_mock_1",
            "summary": [{"type": "summary_text", "text": REASONING_SUMMARY}],
            "encrypted_content": REASONING_ENCRYPTED,
        }

    @staticmethod
    def call_item(name, arguments):
        return {
            "type": "function_call",
            "id": "fc_mock_1",
            "status": "completed",
            "call_id": CALL_ID,
            "name": name,
            "arguments": arguments,
        }

    def stream(self, body, items):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", "req_mock_responses")
        self.end_headers()
        seq = [0]

        def event(kind, **payload):
            data = {"type": kind, "sequence_number": seq[0], **payload}
            seq[0] += 1
            chunk = f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()

        response = {
            "id": "resp_mock_1",
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "model": body.get("model"),
            "output": [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": [],
            "usage": None,
        }
        event("response.created", response=response)
        event("response.in_progress", response=response)
        for index, item in enumerate(items):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                event("response.output_item.added", output_index=index,
                      item={**item, "status": "in_progress", "content": []})
                part = {"type": "output_text", "text": "", "annotations": []}
                event("response.content_part.added", item_id=item["id"], output_index=index, content_index=0,
                      part=part)
                for piece in pieces_of(text):
                    event("response.output_text.delta", item_id=item["id"], output_index=index, content_index=0,
                          delta=piece, logprobs=[])
                event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                      text=text, logprobs=[])
                event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                      part={**part, "text": text})
            elif item["type"] == "function_call":
                event("response.output_item.added", output_index=index,
                      item={**item, "status": "in_progress", "arguments": ""})
                for piece in pieces_of(item["arguments"]):
                    event("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                          delta=piece)
                event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                      arguments=item["arguments"])
            else:  # reasoning
                event("response.output_item.added", output_index=index, item={**item, "summary": []})
                summary = item["summary"][0]["text"]
                event("response.reasoning_summary_part.added", item_id=item["id"], output_index=index,
                      summary_index=0, part={"type": "summary_text", "text": ""})
                event("response.reasoning_summary_text.delta", item_id=item["id"], output_index=index,
                      summary_index=0, delta=summary)
                event("response.reasoning_summary_text.done", item_id=item["id"], output_index=index,
                      summary_index=0, text=summary)
                event("response.reasoning_summary_part.done", item_id=item["id"], output_index=index,
                      summary_index=0, part={"type": "summary_text", "text": summary})
            event("response.output_item.done", output_index=index, item=item)
        event("response.completed", response={**response, "status": "completed", "output": items, "usage": USAGE})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


if __name__ == "__main__":
    serve(Handler, sys.argv, "recording_responses_mock.py")

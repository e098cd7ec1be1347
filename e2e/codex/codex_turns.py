"""What the mock upstream's Codex scenarios answer (crates/mock-upstream,
`mock-upstream --scenario codex-chat` and `--scenario codex-responses`;
their script is in crates/mock-upstream/src/scenario/codex.rs, which these
constants mirror). Standard library only.

codex-chat: a chat-completions upstream for Codex through Tollgate. Records
(JSON lines, `--record-file`, and GET /__requests) once a request is
answered: {"seq", "time", "method", "path", "headers", "body", "status",
"reply" (tool | final | side | error), "usage" or "error"}.

1. the last message is a `tool` message: FINAL_PREFIX + TOOL_OUTPUT (when
   the message holds it; else FINAL_PREFIX + "<no marker>"), FINAL usage;
2. a user message holds CALL_DIRECTIVE + NAME: a call to the offered
   function named NAME or ending with NAME (`apply_patch`: its one string
   parameter set to the patch adding PATCH_FILE with PATCH_LINE); none
   offered: NO_TOOL_PREFIX + NAME;
3. Codex's shell tool is offered: a call to it running TOOL_COMMAND, after
   REASONING_TEXT as `reasoning_content`;
4. else SIDE_TEXT.

codex-responses: the Responses API, for Codex alone (no gateway): the same
turn as a streamed Response (reasoning item and function_call, then the
final text); records {"seq", "time", "method", "path", "headers", "body",
"status", "reply"} before answering; `--max-responses N`: a 400 after N.
"""

UPSTREAM_KEY = "sk-upstream-test"  # the tests start codex-chat with --key UPSTREAM_KEY

TOOL_NAME = "exec_command"
TOOL_COMMAND = "echo tollgate-codex-ok"
TOOL_OUTPUT = "tollgate-codex-ok"
TOOL_CALL_ID = "call_mock_codex_exec_1"
FINAL_PREFIX = "Tollgate Codex round trip done; the command printed: "
SIDE_TEXT = "Tollgate side answer"
REASONING_TEXT = "The user wants the marker printed; run it with exec_command."
NO_TOOL_PREFIX = "The upstream was offered no function for "

CALL_DIRECTIVE = "tollgate-call="
PATCH_FILE = "tollgate-patch.txt"
PATCH_LINE = "written by apply_patch through tollgate"

# Usage each codex-chat answer reports.
PROMPT_TOKENS = 100
CACHED_TOKENS = 20
TOOL_COMPLETION_TOKENS = 12  # the tool-call answer
FINAL_COMPLETION_TOKENS = 7  # the final text answer
REASONING_TOKENS = 4  # part of TOOL_COMPLETION_TOKENS
SIDE_COMPLETION_TOKENS = 3


def text_of(content):
    """The text of a chat message's content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""

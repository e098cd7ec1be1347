"""What the mock upstream's Claude Code scenario answers (crates/mock-upstream,
`mock-upstream --scenario claude-code`; its script is in
crates/mock-upstream/src/scenario/claude_code.rs, which these constants
mirror), and its recording front proxy (`--scenario claude-code-front
--target URL`). Standard library only.

Both record JSON lines (`--record-file`, and GET /__requests): one when a
request arrives, {"side", "seq", "time", "method", "path", "headers",
"body"} ("raw_body" when it is not JSON), and the same again once it is
answered: upstream "status", "reply" (answer | final | tool | side | error |
count_tokens | …), "reply_text", "usage"; front "status",
"response_headers", "response_body". Readers keep the last line of each seq.

The upstream answers, statelessly: ANSWER_TRIGGER in the first user message:
ANSWER_PREFIX + the last user text; a tool result in the conversation:
FINAL_PREFIX + its text; a `Bash` tool offered: a call to it with
TOOL_INPUT (after THINKING_TEXT: a signed thinking block when thinking is on,
`reasoning_content` for OpenAI); else SIDE_TEXT. ERROR_TRIGGER + NAME
(overloaded, too-long, rate-limit) in the first user message: that vendor
error instead.
"""

UPSTREAM_KEY = "sk-upstream-test"  # the test starts the upstream with --key UPSTREAM_KEY

TOOL_NAME = "Bash"
TOOL_COMMAND = "echo tollgate-tool-ok"
TOOL_OUTPUT = "tollgate-tool-ok"
TOOL_CALL_ID_ANTHROPIC = "toolu_mock_bash_1"
TOOL_CALL_ID_OPENAI = "call_mock_bash_1"
TOOL_INPUT = {"command": TOOL_COMMAND, "description": "Print a marker"}
FINAL_PREFIX = "Tollgate round trip done; the tool printed: "
SIDE_TEXT = "Tollgate side answer"
THINKING_TEXT = "The user wants the marker printed; run it with Bash."
THINKING_SIGNATURE = "bW9jay1zaWduYXR1cmUtdG9sbGdhdGU="

INPUT_TOKENS = 100
CACHE_READ_TOKENS = 20  # Anthropic cache_read_input_tokens / OpenAI cached_tokens
CACHE_CREATION_TOKENS = 10  # Anthropic only
TOOL_OUTPUT_TOKENS = 12  # output tokens of the tool-call answer

ANSWER_TRIGGER = "tollgate-mock-answer"
ANSWER_PREFIX = "You said: "
ERROR_TRIGGER = "tollgate-mock-error="


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

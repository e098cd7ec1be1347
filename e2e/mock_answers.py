"""What the mock upstream (crates/mock-upstream, the `mock-upstream` binary)
answers when no script says otherwise: its built-in answers, as the tests
expect them. They mirror `mock_upstream::answers` in Rust; the harness
checks them against the running binary when it starts one
(harness.check_mock_answers), so a change on one side fails at once.

* OpenAI chat: MOCK_TEXT in MOCK_TEXT_PIECES; when the request has ``tools``,
  a call to MOCK_TOOL_NAME (id MOCK_TOOL_CALL_ID) with arguments
  ``{"city":"Paris"}`` in MOCK_ARGUMENT_PIECES. Usage: PROMPT_TOKENS prompt
  tokens, CACHED_TOKENS of them cached, one completion token per piece.
* Anthropic: CLAUDE_TEXT in CLAUDE_TEXT_PIECES; when the last user turn holds
  a ``tool_result``, ``tool_result_pieces(<its text>)``; else, when the
  request has ``tools``, a ``tool_use`` (id CLAUDE_TOOL_USE_ID) with input
  CLAUDE_TOOL_INPUT in CLAUDE_ARGUMENT_PIECES. Usage: CLAUDE_INPUT_TOKENS
  uncached input, CLAUDE_CACHE_READ_TOKENS cache reads,
  CLAUDE_CACHE_WRITE_TOKENS cache writes, one output token per piece.
  Requests are checked as Anthropic checks them (a 400 otherwise), and
  count_tokens answers the number of words of ``system`` and ``messages``.
* BREAK_MARKER in a streamed text answer's prompt: the connection breaks
  after BREAK_AFTER pieces. SLOW_MARKER in a text answer's prompt:
  SLOW_TEXT_PIECES, each SLOW_DELAY_SECS after the one before.
"""

UPSTREAM_KEY = "sk-upstream-test"  # the harness starts the mock with --key UPSTREAM_KEY

MOCK_TEXT_PIECES = ["Hello", " from", " the", " mock"]
MOCK_TEXT = "".join(MOCK_TEXT_PIECES)
MOCK_ARGUMENT_PIECES = ['{"city":', '"Paris"}']
MOCK_TOOL_NAME = "get_weather"
MOCK_TOOL_CALL_ID = "call_mock_1"
PROMPT_TOKENS = 12
CACHED_TOKENS = 2

CLAUDE_TEXT_PIECES = ["Hello", " from", " the", " Claude", " mock"]
CLAUDE_TEXT = "".join(CLAUDE_TEXT_PIECES)
CLAUDE_ARGUMENT_PIECES = ['{"city":', ' "Par', 'is"}']
CLAUDE_TOOL_INPUT = {"city": "Paris"}
CLAUDE_TOOL_USE_ID = "toolu_mock_1"
CLAUDE_MESSAGE_ID = "msg_mock_1"
CLAUDE_INPUT_TOKENS = 15  # Anthropic's input_tokens: the uncached part only
CLAUDE_CACHE_READ_TOKENS = 3
CLAUDE_CACHE_WRITE_TOKENS = 2

BREAK_MARKER = "[break]"
BREAK_AFTER = 2
SLOW_MARKER = "[slow]"
SLOW_PIECES = 50
SLOW_DELAY_SECS = 0.1
SLOW_TEXT_PIECES = ["s0"] + [f" s{i}" for i in range(1, SLOW_PIECES)]
SLOW_TEXT = "".join(SLOW_TEXT_PIECES)


def tool_result_pieces(result_text):
    """The answer to a last user turn holding a tool_result with this text."""
    return ["The tool", " said: ", result_text]

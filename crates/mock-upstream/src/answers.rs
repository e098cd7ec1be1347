//! The built-in answers' constants (see the crate documentation), for tests
//! that check what went through a gateway.

pub use crate::plan::{
    slow_text, tool_result_text, BREAK_AFTER, BREAK_MARKER, CLAUDE_ARGUMENTS, CLAUDE_CACHE_READ,
    CLAUDE_CACHE_WRITE, CLAUDE_INPUT, CLAUDE_TEXT, CLAUDE_TOOL_USE_ID, OPENAI_ARGUMENTS,
    OPENAI_CACHED, OPENAI_INPUT, OPENAI_TEXT, OPENAI_TOOL_CALL_ID, SCRIPT_MARKER, SLOW_DELAY_MS,
    SLOW_MARKER, SLOW_PIECES, TOOL_NAME,
};
pub use crate::render::MESSAGE_ID;

//! Byte-level edits of pass-through JSON, without re-serialising it.
//!
//! A relayed body or stream chunk is forwarded as the upstream wrote it, with
//! two exceptions the gateway itself causes: the upstream's model name is put
//! back to the public name the client asked for, and the `"usage":null` fields
//! an upstream adds once the gateway asked it for stream usage are removed
//! when the client did not ask. Both are exact token replacements in the
//! compact JSON upstreams emit (and its `": "` spaced form).

use std::borrow::Cow;

/// A list of exact byte replacements, applied left to right in one pass.
#[derive(Debug, Clone)]
pub struct ByteRewriter {
    rules: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes a rule can start with: every other byte is skipped at once.
    starts: [bool; 256],
}

impl Default for ByteRewriter {
    /// Changes nothing.
    fn default() -> Self {
        ByteRewriter {
            rules: Vec::new(),
            starts: [false; 256],
        }
    }
}

impl ByteRewriter {
    /// Edits for an OpenAI-format response: `upstream_model` → `public_model`
    /// (when they differ), and, with `strip_null_usage`, no `"usage":null`.
    pub fn for_openai(upstream_model: &str, public_model: &str, strip_null_usage: bool) -> Self {
        let mut rules = Vec::new();
        if upstream_model != public_model {
            let from = json_string(upstream_model);
            let to = json_string(public_model);
            for sep in [":", ": "] {
                rules.push((
                    format!("\"model\"{sep}{from}").into_bytes(),
                    format!("\"model\"{sep}{to}").into_bytes(),
                ));
            }
        }
        if strip_null_usage {
            for pattern in [
                ",\"usage\":null",
                ", \"usage\": null",
                "\"usage\":null,",
                "\"usage\": null, ",
            ] {
                rules.push((pattern.as_bytes().to_vec(), Vec::new()));
            }
        }
        let mut starts = [false; 256];
        for (from, _) in &rules {
            if let Some(&b) = from.first() {
                starts[b as usize] = true;
            }
        }
        ByteRewriter { rules, starts }
    }

    pub fn is_noop(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies every rule; borrows the input when nothing matched.
    pub fn apply<'a>(&self, input: &'a [u8]) -> Cow<'a, [u8]> {
        if self.rules.is_empty() {
            return Cow::Borrowed(input);
        }
        let mut out: Option<Vec<u8>> = None;
        let mut copied_to = 0;
        let mut i = 0;
        while i < input.len() {
            if !self.starts[input[i] as usize] {
                i += 1;
                continue;
            }
            let hit = self
                .rules
                .iter()
                .find(|(from, _)| input[i..].starts_with(from));
            match hit {
                Some((from, to)) => {
                    let buf = out.get_or_insert_with(|| Vec::with_capacity(input.len()));
                    buf.extend_from_slice(&input[copied_to..i]);
                    buf.extend_from_slice(to);
                    i += from.len();
                    copied_to = i;
                }
                None => i += 1,
            }
        }
        match out {
            None => Cow::Borrowed(input),
            Some(mut buf) => {
                buf.extend_from_slice(&input[copied_to..]);
                Cow::Owned(buf)
            }
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_the_public_model_name() {
        let r = ByteRewriter::for_openai("mock-model", "gpt-test", false);
        let out = r.apply(br#"{"id":"x","model":"mock-model","choices":[]}"#);
        assert_eq!(&*out, br#"{"id":"x","model":"gpt-test","choices":[]}"#);
        let spaced = r.apply(br#"{"model": "mock-model"}"#);
        assert_eq!(&*spaced, br#"{"model": "gpt-test"}"#);
        // Only the model field, not the same text elsewhere.
        let text = br#"{"content":"mock-model"}"#;
        assert!(matches!(r.apply(text), Cow::Borrowed(_)));
    }

    #[test]
    fn strips_null_usage_only_when_asked() {
        let chunk = br#"data: {"choices":[{"delta":{}}],"usage":null}"#;
        let r = ByteRewriter::for_openai("m", "m", true);
        assert_eq!(&*r.apply(chunk), br#"data: {"choices":[{"delta":{}}]}"#);
        let first = br#"{"usage":null,"id":"a"}"#;
        assert_eq!(&*r.apply(first), br#"{"id":"a"}"#);
        let keep = ByteRewriter::for_openai("m", "m", false);
        assert!(keep.is_noop());
        assert_eq!(&*keep.apply(chunk), &chunk[..]);
        // A real usage object is never touched.
        let real = br#"{"choices":[],"usage":{"prompt_tokens":1}}"#;
        assert_eq!(&*r.apply(real), &real[..]);
    }
}

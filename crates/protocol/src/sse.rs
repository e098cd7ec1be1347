//! An incremental Server-Sent Events decoder.
//!
//! Upstream streams arrive in arbitrary chunks: an event may be split across
//! reads, or one read may carry many events. [`SseDecoder`] buffers only the
//! unfinished tail and yields each complete event with its *raw bytes*, so a
//! pass-through stream can forward them untouched while the meter reads the
//! parsed `data` field.

use bytes::{Buf, Bytes, BytesMut};

/// One complete SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event exactly as received, including its terminating blank line.
    pub raw: Bytes,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n` (per the SSE specification).
    pub data: String,
}

/// Splits a byte stream into SSE events.
///
/// Lines may end at LF, CRLF or CR, mixed freely, as the specification allows.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: BytesMut,
    /// How far `buf` is known to hold no event end, so that a long event
    /// arriving in many reads is scanned once, not once per read.
    scanned: usize,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a chunk of the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Returns the next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let end = match find_event_end(&self.buf, self.scanned) {
                Ok(end) => end,
                Err(resume) => {
                    self.scanned = resume;
                    return None;
                }
            };
            self.scanned = 0;
            let raw = self.buf.split_to(end).freeze();
            let event = parse_event(raw);
            // A block of only comments (`: keep-alive`) carries no event for
            // the meter, but pass-through callers still want its bytes.
            if let Some(event) = event {
                return Some(event);
            }
        }
    }

    /// Returns whatever is left when the stream ends without a final blank
    /// line, parsed as a last event.
    pub fn finish(&mut self) -> Option<SseEvent> {
        self.scanned = 0;
        if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
            self.buf.clear();
            return None;
        }
        let raw = self.buf.split().freeze();
        parse_event(raw)
    }
}

/// Position just after the blank line that ends the first event in `buf`.
///
/// Lines end at LF, CRLF or CR (as the SSE specification says), so the blank
/// line is a line end right after another: `\n\n`, `\n\r\n`, `\r\n\r\n`,
/// `\r\r\n`, or a lone CR after a line end (`\n\r`, `\r\r`). That CR may be
/// the first half of a CRLF, whose LF then belongs to this event too; when
/// the buffer ends at it, the end is not known yet.
///
/// Scans from `from`; without an end, returns where the next scan must
/// resume (the last byte or two may yet start a blank line).
fn find_event_end(buf: &[u8], from: usize) -> Result<usize, usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        let blank_cr = match (buf[i], buf[i + 1]) {
            (b'\n', b'\n') => return Ok(i + 2),
            (b'\n', b'\r') | (b'\r', b'\r') => i + 1,
            _ => {
                i += 1;
                continue;
            }
        };
        return match buf.get(blank_cr + 1) {
            Some(b'\n') => Ok(blank_cr + 2),
            Some(_) => Ok(blank_cr + 1),
            None => Err(i),
        };
    }
    Err(i)
}

/// Parses the fields of one raw event block. Returns an event even when it has
/// no data (so comments are kept), except for blocks that are entirely empty.
fn parse_event(raw: Bytes) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(&raw);
    let mut event = None;
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.find(':') {
            Some(pos) => {
                let value = &line[pos + 1..];
                (&line[..pos], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_string()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    if raw.chunk().iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    Some(SseEvent {
        raw,
        event,
        data: data.unwrap_or_default(),
    })
}

/// Encodes one `data:` event. JSON payloads never contain raw newlines, so a
/// single data line suffices.
pub fn encode_data(data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut dec = SseDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            dec.push(c);
            while let Some(e) = dec.next_event() {
                out.push(e);
            }
        }
        out.extend(dec.finish());
        out
    }

    #[test]
    fn splits_events_across_arbitrary_chunk_boundaries() {
        let stream = b"data: {\"a\":1}\n\nevent: ping\ndata: x\n\ndata: [DONE]\n\n";
        let whole = decode_all(&[stream]);
        for split in 0..stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(decode_all(&[a, b]), whole, "split at {split}");
        }
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].data, "{\"a\":1}");
        assert_eq!(whole[1].event.as_deref(), Some("ping"));
        assert_eq!(whole[2].data, "[DONE]");
    }

    #[test]
    fn raw_bytes_round_trip() {
        let stream = b"data: one\r\n\r\n: comment\n\ndata: a\ndata: b\n\n";
        let events = decode_all(&[stream]);
        let joined: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
        assert_eq!(joined, stream);
        assert_eq!(events[2].data, "a\nb");
    }

    #[test]
    fn unterminated_tail_is_returned_by_finish() {
        let events = decode_all(&[b"data: last"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "last");
    }

    #[test]
    fn a_cr_after_a_line_end_is_a_blank_line() {
        // CR alone ends a line, so `\n\r` and `\r\n\r` end an event even
        // when no LF follows; these used to merge the two events into one
        // whose data was `a\nb`.
        for stream in [
            &b"data: a\n\rdata: b\n\n"[..],
            b"data: a\r\n\rdata: b\r\n\r\n",
        ] {
            let events = decode_all(&[stream]);
            let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
            assert_eq!(data, ["a", "b"], "{:?}", String::from_utf8_lossy(stream));
        }
        // A CR that ends an event may be the first half of a CRLF: its LF is
        // taken with the event, whether or not it comes in the same read.
        let stream = b"data: a\r\rdata: b\r\r\n";
        let whole = decode_all(&[stream]);
        assert_eq!(whole[1].raw, &b"data: b\r\r\n"[..]);
        for split in 0..stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(decode_all(&[a, b]), whole, "split at {split}");
        }
    }

    #[test]
    fn a_long_event_in_small_reads_is_scanned_once() {
        // 4 MiB in 4 KiB reads, the event end scanned for after each read:
        // rescanning the buffer from its start each time took seconds
        // (quadratic); resuming where the last scan stopped takes
        // milliseconds.
        let payload = "A".repeat(4 << 20);
        let stream = format!("data: {payload}\n\ndata: [DONE]\r\n\r\n");
        let mut dec = SseDecoder::new();
        let mut events = Vec::new();
        for read in stream.as_bytes().chunks(4096) {
            dec.push(read);
            while let Some(e) = dec.next_event() {
                events.push(e);
            }
        }
        assert_eq!(dec.finish(), None);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data.len(), payload.len());
        assert_eq!(events[1].data, "[DONE]");
    }
}

//! The requests the mock received, as it answers them.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};

/// Where a recorded request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Being answered.
    Running,
    /// Answered in full.
    Done,
    /// The client went away before the end of the answer.
    Aborted,
    /// The stream was broken off on purpose (`break_after`).
    Broken,
    /// Refused with a 4xx before any script applied: a bad key, a bad body,
    /// an unknown path.
    Rejected,
    /// Failed on purpose: a scripted error status or fault.
    Failed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Done => "done",
            State::Aborted => "aborted",
            State::Broken => "broken",
            State::Rejected => "rejected",
            State::Failed => "failed",
        }
    }
}

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Its rank among the requests received, from 0.
    pub seq: usize,
    /// `openai`, `anthropic` or `responses` (by path).
    pub api: &'static str,
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: Option<String>,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The parsed JSON body (`Null` when there is none or it is not JSON).
    pub body: Value,
    /// The body as text when it is not JSON.
    pub raw_body: Option<String>,
    /// Whether the answer is a stream.
    pub stream: bool,
    /// How many pieces the answer has, and how many were produced so far.
    pub pieces: usize,
    pub sent: usize,
    pub state: State,
    /// The status answered (once known; none for a fault).
    pub status: Option<u16>,
}

impl Recorded {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn to_json(&self) -> Value {
        let mut headers = Map::new();
        for (name, value) in &self.headers {
            match headers.get_mut(name) {
                Some(Value::String(joined)) => {
                    joined.push_str(", ");
                    joined.push_str(value);
                }
                _ => {
                    headers.insert(name.clone(), Value::String(value.clone()));
                }
            }
        }
        let mut out = json!({
            "seq": self.seq,
            "api": self.api,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": headers,
            "body": self.body,
            "stream": self.stream,
            "pieces": self.pieces,
            "sent": self.sent,
            "state": self.state.name(),
            "status": self.status,
        });
        if let Some(raw) = &self.raw_body {
            out["raw_body"] = Value::String(raw.clone());
        }
        out
    }
}

/// The log of requests, shared by the server and its handle.
#[derive(Default)]
pub struct Recorder {
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    entries: Vec<Recorded>,
    /// Requests cleared from the log so far (`seq` keeps counting).
    cleared: usize,
}

impl Recorder {
    fn log(&self) -> MutexGuard<'_, Log> {
        // A panic elsewhere must not hide what was recorded.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a request; returns its `seq`.
    pub fn add(&self, mut entry: Recorded) -> usize {
        let mut log = self.log();
        entry.seq = log.cleared + log.entries.len();
        let seq = entry.seq;
        log.entries.push(entry);
        seq
    }

    /// Changes the entry `seq` (if it is still in the log).
    pub fn update(&self, seq: usize, change: impl FnOnce(&mut Recorded)) {
        let mut log = self.log();
        let Some(i) = seq.checked_sub(log.cleared) else {
            return;
        };
        if let Some(entry) = log.entries.get_mut(i) {
            change(entry);
        }
    }

    pub fn snapshot(&self) -> Vec<Recorded> {
        self.log().entries.clone()
    }

    /// Forgets every request recorded so far.
    pub fn clear(&self) {
        let mut log = self.log();
        log.cleared += log.entries.len();
        log.entries.clear();
    }
}

/// Follows one request's answer in the log: pieces produced, and its end.
/// Dropped before [`Tracker::finish`]: the client went away (`aborted`).
pub struct Tracker {
    entry: Option<(Arc<Recorder>, usize)>,
    finished: bool,
}

impl Tracker {
    pub fn new(recorder: Option<&Arc<Recorder>>, seq: Option<usize>) -> Tracker {
        Tracker {
            entry: recorder.cloned().zip(seq),
            finished: false,
        }
    }

    pub fn update(&self, change: impl FnOnce(&mut Recorded)) {
        if let Some((recorder, seq)) = &self.entry {
            recorder.update(*seq, change);
        }
    }

    /// One more piece produced.
    pub fn produced(&self) {
        self.update(|e| e.sent += 1);
    }

    /// The answer ended in `state`.
    pub fn finish(&mut self, state: State) {
        self.finished = true;
        self.update(|e| e.state = state);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if !self.finished {
            self.update(|e| {
                if e.state == State::Running {
                    e.state = State::Aborted;
                }
            });
        }
    }
}

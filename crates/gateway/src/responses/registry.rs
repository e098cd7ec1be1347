//! Runs in progress, so that a client can follow one it is not connected to
//! (a background response streamed from a cursor) or cancel it.
//!
//! A run's events are kept in memory while it runs; when it ends they are
//! stored with the response, and the run leaves the registry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

/// What followers of a run can see: how many events exist, and whether more may come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub events: usize,
    pub done: bool,
}

/// One run in progress.
pub struct Run {
    pub user_id: i64,
    events: Mutex<Vec<Bytes>>,
    progress: watch::Sender<Progress>,
    cancel: watch::Sender<bool>,
}

impl Run {
    fn new(user_id: i64) -> Run {
        Run {
            user_id,
            events: Mutex::new(Vec::new()),
            progress: watch::Sender::new(Progress::default()),
            cancel: watch::Sender::new(false),
        }
    }

    pub fn append(&self, frames: &[Bytes]) {
        if frames.is_empty() {
            return;
        }
        let count = {
            let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
            events.extend_from_slice(frames);
            events.len()
        };
        self.progress.send_modify(|p| p.events = count);
    }

    pub fn close(&self) {
        self.progress.send_modify(|p| p.done = true);
    }

    /// Events from index `from` on.
    pub fn events_from(&self, from: usize) -> Vec<Bytes> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events
            .get(from..)
            .map(<[Bytes]>::to_vec)
            .unwrap_or_default()
    }

    /// All events, as text for storage.
    pub fn events_text(&self) -> Vec<String> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events
            .iter()
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect()
    }

    pub fn follow(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    pub fn request_cancel(&self) {
        self.cancel.send_replace(true);
    }

    pub fn cancelled(&self) -> watch::Receiver<bool> {
        self.cancel.subscribe()
    }
}

/// The runs of this instance, by response id.
#[derive(Default)]
pub struct Registry {
    runs: Mutex<HashMap<String, Arc<Run>>>,
}

impl Registry {
    pub fn register(&self, id: &str, user_id: i64) -> Arc<Run> {
        let run = Arc::new(Run::new(user_id));
        self.lock().insert(id.to_string(), run.clone());
        run
    }

    /// The user's run `id`, if it is running here.
    pub fn get(&self, id: &str, user_id: i64) -> Option<Arc<Run>> {
        self.lock()
            .get(id)
            .filter(|run| run.user_id == user_id)
            .cloned()
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Run>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

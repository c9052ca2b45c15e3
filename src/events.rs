//! What the engine reports while it works. Nothing inside planning, applying
//! or building prints: it emits events, and the command line renders them
//! (as text for people, JSON lines for machines).

use std::sync::Arc;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A step starts: `verb` is creating, updating (with the properties),
    /// destroying or destroying-replaced.
    Started {
        id: String,
        verb: String,
        detail: Option<String>,
    },
    /// A step finished: `verb` is created, adopted, updated, destroyed.
    Finished {
        id: String,
        verb: String,
        physical_id: Option<String>,
        seconds: f64,
    },
    Failed {
        id: String,
        message: String,
    },
    /// A wait on AWS (an instance starting, a function updating) goes on.
    Waiting {
        what: String,
        seconds: f64,
    },
    /// A Lambda build started, and each line cargo printed.
    Building {
        crate_dir: String,
        target: String,
    },
    BuildOutput {
        line: String,
    },
    /// The first interrupt: calls in flight finish, no new one starts.
    Interrupted {
        in_flight: usize,
    },
    /// The second: the waits stop.
    Aborting {
        in_flight: usize,
    },
}

pub trait Events: Send + Sync {
    fn emit(&self, event: Event);
}

/// Reports nothing (tests, and commands that only read).
pub struct Silent;

impl Events for Silent {
    fn emit(&self, _: Event) {}
}

pub fn silent() -> Arc<dyn Events> {
    Arc::new(Silent)
}

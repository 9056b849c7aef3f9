//! Pause, resume and cancel a running job from the outside (a button in the app, Ctrl-C in a
//! shell). The job looks at its [`Control`] between steps: paused, it waits without spinning until
//! it is resumed; cancelled, it stops with [`PipelineError::Cancelled`] and keeps what it wrote
//! (a training run keeps its last checkpoint). No thread is involved: the waiting is a future
//! that the resume wakes.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::error::PipelineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Paused,
    Cancelled,
}

#[derive(Debug)]
struct Shared {
    state: RunState,
    waiting: Vec<Waker>,
}

/// A handle shared by the job and whoever steers it (clones share the same state).
#[derive(Debug, Clone)]
pub struct Control(Rc<RefCell<Shared>>);

impl Default for Control {
    fn default() -> Self {
        Control(Rc::new(RefCell::new(Shared {
            state: RunState::Running,
            waiting: Vec::new(),
        })))
    }
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }

    pub fn state(&self) -> RunState {
        self.0.borrow().state
    }

    /// Stops the job at its next step boundary until [`Control::resume`].
    pub fn pause(&self) {
        let mut s = self.0.borrow_mut();
        if s.state == RunState::Running {
            s.state = RunState::Paused;
        }
    }

    pub fn resume(&self) {
        self.set(RunState::Running);
    }

    /// Ends the job at its next step boundary (a paused job ends at once).
    pub fn cancel(&self) {
        self.set(RunState::Cancelled);
    }

    fn set(&self, state: RunState) {
        let wakers = {
            let mut s = self.0.borrow_mut();
            if s.state == RunState::Cancelled {
                return;
            }
            s.state = state;
            std::mem::take(&mut s.waiting)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Between two steps: returns at once when running, waits while paused, and fails with
    /// [`PipelineError::Cancelled`] once cancelled.
    pub fn between_steps(&self) -> impl Future<Output = Result<(), PipelineError>> + '_ {
        Gate(self)
    }
}

struct Gate<'a>(&'a Control);

impl Future for Gate<'_> {
    type Output = Result<(), PipelineError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.0.0.borrow_mut();
        match s.state {
            RunState::Running => Poll::Ready(Ok(())),
            RunState::Cancelled => Poll::Ready(Err(PipelineError::Cancelled)),
            RunState::Paused => {
                s.waiting.push(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

//! smol, async-std or any executor as a [`ws_async::Runtime`], with
//! async-io's timers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Timer as IoTimer;
use ws_async::{BoxFuture, Runtime, Timer};

type Spawner = Arc<dyn Fn(BoxFuture<()>) + Send + Sync>;

/// Where connection tasks run. Timers and sockets come from async-io, which
/// smol and async-std share, so any executor works.
///
/// Default: smol's global executor ([`smol::spawn`]).
#[derive(Clone, Default)]
pub struct SmolRuntime {
    spawner: Option<Spawner>,
}

impl SmolRuntime {
    /// Spawns on smol's global executor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns with `spawn`, for example `|task| { async_std::task::spawn(task); }`
    /// or onto your own `async_executor::Executor`. The spawned task must
    /// run to completion: dropping it cancels the connection.
    pub fn with_spawner(spawn: impl Fn(BoxFuture<()>) + Send + Sync + 'static) -> Self {
        Self {
            spawner: Some(Arc::new(spawn)),
        }
    }
}

impl fmt::Debug for SmolRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmolRuntime")
            .field(
                "spawner",
                &if self.spawner.is_some() {
                    "custom"
                } else {
                    "smol"
                },
            )
            .finish()
    }
}

impl Runtime for SmolRuntime {
    fn spawn(&self, future: BoxFuture<()>) {
        match &self.spawner {
            Some(spawn) => spawn(future),
            None => smol::spawn(future).detach(),
        }
    }

    fn timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        Box::pin(SmolTimer(IoTimer::at(deadline)))
    }
}

struct SmolTimer(IoTimer);

impl Timer for SmolTimer {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        self.get_mut().0.set_at(deadline);
    }

    fn poll_fired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().0).poll(cx).map(|_| ())
    }
}

//! Handlers that speak [`Envelope`]s: JSON commands in, responses and
//! events out.

use std::future::Future;

use ws_core::envelope::{Envelope, EnvelopeError};
use ws_core::policy::Violation;
use ws_core::{Closed, Message};

use crate::handler::{Ctx, Handler};

/// A handler of envelopes rather than raw messages; wrap it in
/// [`Envelopes`] to serve it on an endpoint. Besides `on_envelope` and
/// `on_malformed` it has every other callback of a [`Handler`], with the
/// same defaults, and [`Envelopes`] passes each one on.
pub trait EnvelopeHandler: Send + 'static {
    /// A well-formed envelope arrived.
    fn on_envelope(&mut self, ctx: &mut Ctx, envelope: Envelope)
    -> impl Future<Output = ()> + Send;

    /// A message was not a valid envelope. By default it is dropped, or,
    /// where [`reply_to_malformed`](Self::reply_to_malformed) opts in,
    /// answered with [`Envelope::error_reply`].
    fn on_malformed(
        &mut self,
        ctx: &mut Ctx,
        error: EnvelopeError,
    ) -> impl Future<Output = ()> + Send {
        let reply = self
            .reply_to_malformed()
            .then(|| Envelope::error_reply(None, &error));
        async move {
            if let Some(reply) = reply {
                let _ = ctx.send_envelope(&reply).await;
            }
        }
    }

    /// Whether malformed messages get an error envelope back. Default:
    /// `false` (a peer sending garbage gets no help probing the parser).
    fn reply_to_malformed(&self) -> bool {
        false
    }

    /// See [`Handler::on_open`].
    fn on_open(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// See [`Handler::on_timer`].
    fn on_timer(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// See [`Handler::on_policy_violation`].
    fn on_policy_violation(
        &mut self,
        ctx: &mut Ctx,
        violation: &Violation,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, violation);
        async {}
    }

    /// See [`Handler::on_shutdown`].
    fn on_shutdown(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// See [`Handler::on_close`].
    fn on_close(&mut self, ctx: &mut Ctx, closed: &Closed) -> impl Future<Output = ()> + Send {
        let _ = (ctx, closed);
        async {}
    }
}

/// Serves an [`EnvelopeHandler`] as a [`Handler`]: parses every message
/// and routes it to `on_envelope` or `on_malformed`; every other callback
/// goes to the envelope handler's own.
#[derive(Debug)]
pub struct Envelopes<H>(pub H);

impl<H: EnvelopeHandler> Handler for Envelopes<H> {
    fn on_open(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        self.0.on_open(ctx)
    }

    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        match Envelope::from_message(&message) {
            Ok(envelope) => self.0.on_envelope(ctx, envelope).await,
            Err(error) => self.0.on_malformed(ctx, error).await,
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        self.0.on_timer(ctx)
    }

    fn on_policy_violation(
        &mut self,
        ctx: &mut Ctx,
        violation: &Violation,
    ) -> impl Future<Output = ()> + Send {
        self.0.on_policy_violation(ctx, violation)
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        self.0.on_shutdown(ctx)
    }

    fn on_close(&mut self, ctx: &mut Ctx, closed: &Closed) -> impl Future<Output = ()> + Send {
        self.0.on_close(ctx, closed)
    }
}

//! Handlers that speak [`Envelope`]s: JSON commands in, responses and
//! events out.

use std::future::Future;

use ws_core::envelope::{Envelope, EnvelopeError};
use ws_core::{Closed, Message};

use crate::driver::{Ctx, Handler};
use crate::error::SendError;

/// A handler of envelopes rather than raw messages; wrap it in
/// [`Envelopes`] to serve it on an endpoint.
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
                let _ = ctx.send_envelope_wait(&reply).await;
            }
        }
    }

    /// Whether malformed messages get an error envelope back. Default:
    /// `false` (a peer sending garbage gets no help probing the parser).
    fn reply_to_malformed(&self) -> bool {
        false
    }

    /// The connection is open.
    fn on_open(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// The connection closed.
    fn on_close(&mut self, ctx: &mut Ctx, closed: &Closed) -> impl Future<Output = ()> + Send {
        let _ = (ctx, closed);
        async {}
    }
}

/// Serves an [`EnvelopeHandler`] as a [`Handler`]: parses every message
/// and routes it to `on_envelope` or `on_malformed`.
#[derive(Debug)]
pub struct Envelopes<H>(pub H);

impl<H: EnvelopeHandler> Handler for Envelopes<H> {
    async fn on_open(&mut self, ctx: &mut Ctx) {
        self.0.on_open(ctx).await;
    }

    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        match Envelope::from_message(&message) {
            Ok(envelope) => self.0.on_envelope(ctx, envelope).await,
            Err(error) => self.0.on_malformed(ctx, error).await,
        }
    }

    async fn on_close(&mut self, ctx: &mut Ctx, closed: &Closed) {
        self.0.on_close(ctx, closed).await;
    }
}

impl Ctx {
    /// Queues an envelope as a JSON text message; see [`Ctx::send`].
    pub fn send_envelope(&self, envelope: &Envelope) -> Result<(), SendError> {
        self.send(envelope.to_message())
    }

    /// Queues an envelope, waiting for room; see [`Ctx::send_wait`].
    pub async fn send_envelope_wait(&self, envelope: &Envelope) -> Result<(), SendError> {
        self.send_wait(envelope.to_message()).await
    }
}

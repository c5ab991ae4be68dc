//! A command server speaking JSON envelopes, behind bearer-JWT
//! authentication and per-connection rate limits, with acknowledged events.
//!
//! ```sh
//! cargo run --release -p ws-tokio --example commands               # ws://127.0.0.1:9003/commands
//! cargo run --release -p ws-tokio --example commands -- token alice  # prints a token for alice
//! ```
//!
//! Connect with `Authorization: Bearer <token>` (the secret is
//! `$WS_JWT_SECRET`, default `change-me`), then send commands:
//!
//! ```json
//! {"type":"command","id":"1","action":"echo","data":{"any":"thing"}}
//! {"type":"command","id":"2","action":"whoami"}
//! {"type":"command","id":"3","action":"subscribe"}
//! ```
//!
//! `subscribe` starts `tick` events, one per second, each with an id. An
//! event is resent every 3 s until the client answers
//! `{"type":"ack","id":"<its id>"}`, and given up after 15 s. More than 20
//! messages a second closes the connection with 1008; messages over 64 KiB
//! are dropped with an error envelope.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use ws_tokio::auth::BearerJwt;
use ws_tokio::envelope::{EnvelopeHandler, Envelopes};
use ws_tokio::ws_core::ack::{AckConfig, AckSender};
use ws_tokio::ws_core::envelope::{Envelope, Kind};
use ws_tokio::ws_core::policy::{
    MaxMessagesPerSecond, MaxPayloadBytes, OnViolation, PolicySet, Violation,
};
use ws_tokio::{Ctx, Endpoint, Handler, Layer, Layered, OriginPolicy};

/// One client's session. Everything runs on the connection's own task:
/// the acknowledged-delivery state machine is driven by the connection's
/// timer (`on_timer`), no lock and no spawned task.
struct Session {
    acks: AckSender,
    /// When the next tick is due, once subscribed.
    next_tick: Option<Instant>,
    ticks: u64,
}

impl Session {
    fn new() -> Self {
        let mut config = AckConfig::default();
        config.resend_after = Duration::from_secs(3);
        config.expire_after = Duration::from_secs(15);
        Self {
            acks: AckSender::new(config),
            next_tick: None,
            ticks: 0,
        }
    }

    /// The connection's timer: the next tick or the next resend or expiry,
    /// whichever comes first.
    fn arm(&self, ctx: &mut Ctx) {
        match [self.next_tick, self.acks.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        {
            Some(at) => ctx.set_timer(at),
            None => ctx.clear_timer(),
        }
    }
}

impl EnvelopeHandler for Session {
    async fn on_envelope(&mut self, ctx: &mut Ctx, envelope: Envelope) {
        let reply = match (envelope.kind, envelope.action.as_deref()) {
            (Some(Kind::Ack), _) => {
                self.acks
                    .acknowledge(envelope.id.as_deref().unwrap_or_default());
                self.arm(ctx);
                return;
            }
            (Some(Kind::Command), Some("echo")) => {
                envelope.response(envelope.data.clone().unwrap_or_default())
            }
            (Some(Kind::Command), Some("whoami")) => {
                let who = ctx.identity().map(|i| i.subject.clone());
                envelope.response(json!({ "subject": who }))
            }
            (Some(Kind::Command), Some("subscribe")) => {
                if self.next_tick.is_none() {
                    self.next_tick = Some(ctx.now());
                    self.arm(ctx);
                }
                envelope.response(json!({ "subscribed": true }))
            }
            _ => envelope.response(json!({ "error": "unknown command" })),
        };
        let _ = ctx.send_envelope(&reply).await;
    }

    fn reply_to_malformed(&self) -> bool {
        true
    }

    /// Sends a `tick` event every second, and resends or expires what the
    /// client has not acknowledged.
    async fn on_timer(&mut self, ctx: &mut Ctx) {
        let now = ctx.now();
        self.acks.handle_timeout(now);
        while let Some(resend) = self.acks.poll_resend() {
            let _ = ctx.send(resend).await;
        }
        while let Some(id) = self.acks.poll_expired() {
            println!("event {id} expired unacknowledged");
        }
        if self.next_tick.is_some_and(|at| now >= at) {
            self.ticks += 1;
            let id = format!("tick-{}", self.ticks);
            let event = Envelope::event("tick", json!({ "n": self.ticks })).with_id(&id);
            // A client that acknowledges nothing fills its window; then new
            // events wait until old ones are acknowledged or expire.
            if self.acks.track(&id, event.to_message(), now).is_ok() {
                let _ = ctx.send_envelope(&event).await;
            }
            self.next_tick = Some(now + Duration::from_secs(1));
        }
        self.arm(ctx);
    }
}

/// Tells the client about dropped messages, as an error envelope; every
/// other callback goes to the session unchanged.
struct Reporting;

impl<H: Handler> Layer<H> for Reporting {
    async fn on_policy_violation(&mut self, _inner: &mut H, ctx: &mut Ctx, violation: &Violation) {
        let reply = Envelope {
            kind: Some(Kind::Response),
            action: Some("error".into()),
            data: Some(json!({ "error": violation.to_string() })),
            ..Envelope::default()
        };
        let _ = ctx.send_envelope(&reply).await;
    }
}

fn secret() -> Vec<u8> {
    std::env::var("WS_JWT_SECRET")
        .unwrap_or_else(|_| "change-me".into())
        .into_bytes()
}

fn print_token(subject: &str) {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 3600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": subject, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(&secret()),
    )
    .expect("HS256 signing");
    println!("{token}");
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [command, subject] = args.as_slice()
        && command == "token"
    {
        print_token(subject);
        return Ok(());
    }
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9003".into());
    let endpoint = Endpoint::new(|_| Layered::new(Reporting, Envelopes(Session::new())))
        .origin(OriginPolicy::AllowAnyOriginDangerously)
        .authenticator(BearerJwt::hs256(&secret()))
        .policies(|| {
            PolicySet::new()
                .with(MaxMessagesPerSecond::new(20), OnViolation::Close)
                .with(MaxPayloadBytes::new(64 * 1024), OnViolation::Drop)
        });
    let server = ws_tokio::server().route("/commands", endpoint).build();
    let listener = ws_tokio::bind(&addr).await?;
    println!("command server on ws://{}/commands", listener.local_addr()?);
    server.serve(listener).await
}

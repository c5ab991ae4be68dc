//! The handler seam: wrappers pass on every callback they do not change,
//! and a handler runs its own timer on its connection's task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::rt::{self, ws};

use super::common::{eventually, masked_frame, request, serve};
use ws::envelope::{EnvelopeHandler, Envelopes};
use ws::ws_core::envelope::Envelope;
use ws::ws_core::policy::{MaxPayloadBytes, OnViolation, PolicySet, Violation};
use ws::{Closed, Ctx, Endpoint, Handler, Layer, Layered, Message};

/// Every callback a handler has. A test below drives a connection through
/// all of them; a wrapper that loses one fails it.
const CALLBACKS: [&str; 6] = [
    "open",
    "message",
    "timer",
    "policy_violation",
    "shutdown",
    "close",
];

type Seen = Arc<Mutex<Vec<&'static str>>>;

/// Records each callback; arms its timer when the connection opens.
struct Record(Seen);

impl Record {
    fn saw(&self, callback: &'static str) {
        self.0.lock().unwrap().push(callback);
    }
}

impl Handler for Record {
    async fn on_open(&mut self, ctx: &mut Ctx) {
        self.saw("open");
        let soon = ctx.now() + Duration::from_millis(50);
        ctx.set_timer(soon);
    }
    async fn on_message(&mut self, _: &mut Ctx, _: Message) {
        self.saw("message");
    }
    async fn on_timer(&mut self, _: &mut Ctx) {
        self.saw("timer");
    }
    async fn on_policy_violation(&mut self, _: &mut Ctx, _: &Violation) {
        self.saw("policy_violation");
    }
    async fn on_shutdown(&mut self, _: &mut Ctx) {
        self.saw("shutdown");
    }
    async fn on_close(&mut self, _: &mut Ctx, _: &Closed) {
        self.saw("close");
    }
}

/// The same, as an envelope handler (a message is an envelope here).
struct RecordEnvelopes(Record);

impl EnvelopeHandler for RecordEnvelopes {
    async fn on_envelope(&mut self, ctx: &mut Ctx, _: Envelope) {
        self.0.on_message(ctx, Message::text("")).await;
    }
    async fn on_open(&mut self, ctx: &mut Ctx) {
        self.0.on_open(ctx).await;
    }
    async fn on_timer(&mut self, ctx: &mut Ctx) {
        self.0.on_timer(ctx).await;
    }
    async fn on_policy_violation(&mut self, ctx: &mut Ctx, violation: &Violation) {
        self.0.on_policy_violation(ctx, violation).await;
    }
    async fn on_shutdown(&mut self, ctx: &mut Ctx) {
        self.0.on_shutdown(ctx).await;
    }
    async fn on_close(&mut self, ctx: &mut Ctx, closed: &Closed) {
        self.0.on_close(ctx, closed).await;
    }
}

/// A layer that changes nothing: everything must reach the inner handler.
struct Nothing;

impl<H: Handler> Layer<H> for Nothing {}

/// A layer that counts messages and passes them on.
struct Counting(Arc<Mutex<u32>>);

impl<H: Handler> Layer<H> for Counting {
    async fn on_message(&mut self, inner: &mut H, ctx: &mut Ctx, message: Message) {
        *self.0.lock().unwrap() += 1;
        inner.on_message(ctx, message).await;
    }
}

/// Drives one connection on `endpoint` through every callback and returns
/// the callbacks its recorder saw.
async fn every_callback<H: Handler>(
    make: impl Fn(Seen) -> H + Send + Sync + 'static,
) -> Vec<&'static str> {
    let seen: Seen = Arc::default();
    let recorder = seen.clone();
    let server = serve(
        ws::server()
            .route(
                "/",
                Endpoint::new(move |_| make(recorder.clone())).policies(|| {
                    PolicySet::new().with(MaxPayloadBytes::new(100), OnViolation::Drop)
                }),
            )
            .build(),
    )
    .await;
    let (mut socket, _) = ws::connect(&server.url("/")).await.unwrap();
    socket
        .send(r#"{"type":"command","id":"1","action":"ping"}"#)
        .await
        .unwrap();
    socket.send("x".repeat(200)).await.unwrap();
    let has = |what: &'static str| {
        let seen = seen.clone();
        move || seen.lock().unwrap().contains(&what)
    };
    eventually(has("policy_violation"), "the policy violation").await;
    eventually(has("timer"), "the timer").await;
    // Shutdown ends when the last connection has, not at its deadline.
    rt::timeout(
        Duration::from_secs(5),
        server.handle.shutdown(Duration::from_secs(30)),
    )
    .await
    .expect("shutdown returns once every connection has closed");
    assert!(socket.recv().await.is_none());
    eventually(has("close"), "on_close").await;

    seen.lock().unwrap().clone()
}

fn assert_every_callback(seen: &[&str], wrapper: &str) {
    for callback in CALLBACKS {
        assert!(
            seen.contains(&callback),
            "{wrapper} did not pass on {callback}: {seen:?}"
        );
    }
}

// Wrappers cannot forget a callback: a layer that overrides nothing, a
// layer that overrides one, and the envelope adapter all pass every one on.
async fn wrappers_pass_on_every_callback() {
    assert_every_callback(&every_callback(Record).await, "the plain handler");
    assert_every_callback(
        &every_callback(|seen| Layered::new(Nothing, Record(seen))).await,
        "an empty layer",
    );
    let count = Arc::new(Mutex::new(0));
    let counter = count.clone();
    assert_every_callback(
        &every_callback(move |seen| Layered::new(Counting(counter.clone()), Record(seen))).await,
        "a counting layer",
    );
    assert_eq!(
        *count.lock().unwrap(),
        1,
        "the oversized message was dropped"
    );
    assert_every_callback(
        &every_callback(|seen| Envelopes(RecordEnvelopes(Record(seen)))).await,
        "Envelopes",
    );
}

// A handler drives a timer on its own task: `set_timer` in one callback,
// `on_timer` when it is due, re-armed from there; `clear_timer` stops it.
async fn handlers_run_their_own_timers() {
    struct Ticker {
        ticks: u32,
    }
    impl Handler for Ticker {
        async fn on_open(&mut self, ctx: &mut Ctx) {
            let next = ctx.now() + Duration::from_millis(20);
            ctx.set_timer(next);
        }
        async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
            if message.as_bytes() == b"stop" {
                ctx.clear_timer();
                let _ = ctx.send("stopped").await;
            }
        }
        async fn on_timer(&mut self, ctx: &mut Ctx) {
            assert!(ctx.timer().is_none(), "cleared before on_timer runs");
            self.ticks += 1;
            let _ = ctx.send(format!("tick {}", self.ticks)).await;
            let next = ctx.now() + Duration::from_millis(20);
            ctx.set_timer(next);
        }
    }
    let server = serve(
        ws::server()
            .route("/", Endpoint::new(|_| Ticker { ticks: 0 }))
            .build(),
    )
    .await;
    let (mut socket, _) = ws::connect(&server.url("/")).await.unwrap();
    for n in 1..=3 {
        assert_eq!(
            socket.recv().await.unwrap().unwrap(),
            Message::text(format!("tick {n}"))
        );
    }
    socket.send("stop").await.unwrap();
    loop {
        let message = socket.recv().await.unwrap().unwrap();
        if message == Message::text("stopped") {
            break;
        }
    }
    let after = rt::timeout(Duration::from_millis(200), socket.recv()).await;
    assert!(after.is_err(), "no tick after clear_timer: {after:?}");
}

// A peer that keeps sending does not hold off the handler's timer. The
// flood comes from a thread writing as fast as the kernel takes it. (The
// driver looks at its timers when a pass finds nothing to do, and every
// 16th pass of a stretch that never runs dry; this flood leaves the socket
// empty often enough that the first rule alone passes it.)
async fn timers_fire_while_a_peer_floods() {
    use std::io::{Read, Write};
    struct Deadline;
    impl Handler for Deadline {
        async fn on_open(&mut self, ctx: &mut Ctx) {
            let at = ctx.now() + Duration::from_millis(100);
            ctx.set_timer(at);
        }
        async fn on_message(&mut self, _: &mut Ctx, _: Message) {}
        async fn on_timer(&mut self, ctx: &mut Ctx) {
            let _ = ctx.send("tick").await;
        }
    }
    let server = serve(ws::server().route("/", Endpoint::new(|_| Deadline)).build()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ticked = Arc::new(AtomicBool::new(false));
    let upgraded = Arc::new(AtomicBool::new(false));
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let control = stream.try_clone().unwrap();
    let flood = std::thread::spawn({
        let (stop, upgraded) = (stop.clone(), upgraded.clone());
        move || {
            writer.write_all(request("/", &[]).as_bytes()).unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && writer.read_exact(&mut byte).is_ok() {
                head.push(byte[0]);
            }
            assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
            upgraded.store(true, Ordering::Relaxed);
            let frame = masked_frame(1, true, &[b'x'; 64]);
            let batch = frame.repeat(256);
            while !stop.load(Ordering::Relaxed) && writer.write_all(&batch).is_ok() {}
        }
    });
    let reader = std::thread::spawn({
        let (stop, ticked, upgraded) = (stop.clone(), ticked.clone(), upgraded.clone());
        move || {
            while !upgraded.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            stream
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                match stream.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => seen.extend_from_slice(&chunk[..n]),
                    Err(_) => continue,
                }
                if seen.windows(6).any(|w| w == b"\x81\x04tick") {
                    ticked.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    });
    let started = std::time::Instant::now();
    while !ticked.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(5) {
        rt::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let fired = ticked.load(Ordering::Relaxed);
    // Unblocks the flood's write wherever the server is.
    let _ = control.shutdown(std::net::Shutdown::Both);
    drop(server);
    let _ = reader.join();
    let _ = flood.join();
    assert!(fired, "the timer did not fire during the flood");
}

adapter_tests!(
    wrappers_pass_on_every_callback,
    handlers_run_their_own_timers,
    timers_fire_while_a_peer_floods
);

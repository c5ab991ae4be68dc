//! Bodies of ws-async's cargo-fuzz targets, kept in the library so the
//! targets are one line each and the bodies compile (and are linted) with
//! the crate. Enabled by the `fuzzing` feature; not part of the public API.
//!
//! [`driver`] runs a whole connection task, handshake included, as a
//! server or a client, over a transport whose every read and write the
//! fuzzer scripts (short reads and writes, `Pending`, errors, end of
//! stream), on a virtual clock, with the application's sends, fragmented
//! sends, closes and receives cancelled after fuzzer-chosen numbers of
//! polls. It checks that everything written is a valid HTTP head followed
//! by valid frames, that nothing panics, and that the task ends once the
//! script is over (no hang).

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ws_core::frame::{FrameDecoder, HeaderRules, OpCode, RSV1, encode_frame};
use ws_core::handshake::{Accept, ClientRequest, ServerHandshake};
use ws_core::{CloseCode, HandshakeLimits, Message};

use crate::runtime::{BoxFuture, Runtime, Timer, Transport};
use crate::{ClientConfig, Ctx, Endpoint, Handler, ServerBuilder, ServerConfig};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads a script out of fuzz input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn arg(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head.to_vec()
    }
}

// ---- a virtual runtime --------------------------------------------------

#[derive(Debug)]
struct Clock {
    now: Instant,
    /// The earliest deadline of a timer that was polled and had not fired.
    next: Option<Instant>,
}

/// A runtime whose clock moves only when the fuzz loop moves it, and
/// whose spawned tasks the fuzz loop polls.
#[derive(Clone)]
struct Virtual {
    clock: Arc<Mutex<Clock>>,
    spawned: Arc<Mutex<Vec<BoxFuture<()>>>>,
}

impl std::fmt::Debug for Virtual {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Virtual")
            .field("clock", &self.clock)
            .finish()
    }
}

impl Virtual {
    fn new() -> Self {
        Self {
            clock: Arc::new(Mutex::new(Clock {
                now: Instant::now(),
                next: None,
            })),
            spawned: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn advance(&self, by: Duration) {
        let mut clock = lock(&self.clock);
        clock.now += by;
    }

    /// Moves the clock to the earliest timer seen waiting, if any.
    fn jump_to_next_timer(&self) -> bool {
        let mut clock = lock(&self.clock);
        match clock.next.take() {
            Some(next) if next > clock.now => {
                clock.now = next;
                true
            }
            Some(_) => true,
            None => false,
        }
    }
}

impl std::fmt::Debug for Sleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

struct Sleep {
    clock: Arc<Mutex<Clock>>,
    deadline: Instant,
}

impl Timer for Sleep {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.deadline = deadline;
    }

    fn poll_fired(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let mut clock = lock(&self.clock);
        if clock.now >= self.deadline {
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        clock.next = Some(clock.next.map_or(deadline, |next| next.min(deadline)));
        Poll::Pending
    }
}

impl Runtime for Virtual {
    fn spawn(&self, future: BoxFuture<()>) {
        lock(&self.spawned).push(future);
    }

    fn timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        Box::pin(Sleep {
            clock: self.clock.clone(),
            deadline,
        })
    }

    fn now(&self) -> Instant {
        lock(&self.clock).now
    }
}

// ---- a scripted transport -----------------------------------------------

#[derive(Debug)]
enum ReadStep {
    Data(Vec<u8>),
    Pending,
    Error,
    Eof,
}

#[derive(Debug, Clone, Copy)]
enum WriteStep {
    Accept(usize),
    Pending,
    Error,
}

#[derive(Debug, Default)]
struct Wire {
    reads: VecDeque<ReadStep>,
    writes: VecDeque<WriteStep>,
    /// Largest piece of data one read returns.
    chunk: usize,
    written: Vec<u8>,
    /// As a client's server: the 101 is computed from the request once it
    /// has been written, and read before anything else.
    answer_request: bool,
    ended: bool,
}

impl Wire {
    fn answer(&mut self) {
        if !self.answer_request {
            return;
        }
        let Some(end) = self.written.windows(4).position(|w| w == b"\r\n\r\n") else {
            return;
        };
        self.answer_request = false;
        let mut handshake = ServerHandshake::new(HandshakeLimits::default(), Instant::now());
        let head = &self.written[..end + 4];
        if let Ok(Some(upgrade)) = handshake.handle_input(head) {
            let accepted = upgrade.accept(Accept::new()).expect("no subprotocol");
            self.reads
                .push_front(ReadStep::Data(accepted.to_bytes().to_vec()));
        }
    }
}

#[derive(Debug, Clone)]
struct Scripted(Arc<Mutex<Wire>>);

impl Transport for Scripted {
    fn poll_read_buf(
        &mut self,
        _: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        let mut wire = lock(&self.0);
        let chunk = wire.chunk.max(1);
        match wire.reads.pop_front() {
            None | Some(ReadStep::Eof) => {
                wire.ended = true;
                Poll::Ready(Ok(0))
            }
            Some(ReadStep::Pending) => Poll::Pending,
            Some(ReadStep::Error) => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
            Some(ReadStep::Data(mut data)) => {
                // At most the spare capacity, as a real read; the rest
                // stays first in line.
                let room = (buf.capacity() - buf.len()).max(1);
                let n = data.len().min(chunk).min(room);
                buf.extend_from_slice(&data[..n]);
                if n < data.len() {
                    wire.reads.push_front(ReadStep::Data(data.split_off(n)));
                }
                Poll::Ready(Ok(n))
            }
        }
    }

    fn poll_write_vectored(
        &mut self,
        _: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut wire = lock(&self.0);
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let allowed = match wire.writes.pop_front() {
            None => total,
            Some(WriteStep::Accept(n)) => n.min(total),
            Some(WriteStep::Pending) => return Poll::Pending,
            Some(WriteStep::Error) => {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
        };
        let mut left = allowed;
        for buf in bufs {
            let take = buf.len().min(left);
            wire.written.extend_from_slice(&buf[..take]);
            left -= take;
        }
        wire.answer();
        Poll::Ready(Ok(allowed))
    }

    fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

// ---- the application's side -------------------------------------------

#[derive(Debug, Clone)]
enum AppStep {
    Send(Message),
    TrySend(Message),
    /// A piece of a fragmented message; its send is dropped after `polls`
    /// polls if it has not finished.
    Fragment {
        data: Message,
        last: bool,
        polls: u8,
    },
    Close(u16, usize),
    Ping(usize),
    /// Client: a receive dropped after `polls` polls. Server: a pause.
    Recv {
        polls: u8,
    },
    Sleep(Duration),
}

/// Polls `future` at most `polls` times, then drops it: a cancellation at a
/// fuzzer-chosen point.
async fn cancel_after<F: Future>(future: F, polls: u8) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut left = polls;
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending if left == 0 => Poll::Ready(None),
        Poll::Pending => {
            left -= 1;
            Poll::Pending
        }
    })
    .await
}

type Steps = Arc<Mutex<VecDeque<AppStep>>>;

fn next_step(steps: &Steps) -> Option<AppStep> {
    lock(steps).pop_front()
}

async fn sleep(runtime: &Virtual, duration: Duration) {
    let deadline = runtime.now() + duration;
    let mut timer = runtime.timer(deadline);
    std::future::poll_fn(|cx| timer.as_mut().poll_fired(cx)).await;
}

/// The server's handler: a few of the application's steps per callback.
struct App {
    steps: Steps,
    runtime: Virtual,
}

impl App {
    async fn run(&mut self, ctx: &mut Ctx) {
        for _ in 0..4 {
            let Some(step) = next_step(&self.steps) else {
                return;
            };
            let handle = ctx.handle();
            match step {
                AppStep::Send(message) => {
                    let _ = cancel_after(handle.send(message), 8).await;
                }
                AppStep::TrySend(message) => {
                    let _ = ctx.try_send(message);
                }
                AppStep::Fragment { data, last, polls } => {
                    let _ = cancel_after(handle.send_fragment(data, last), polls).await;
                }
                AppStep::Close(code, reason) => {
                    let _ =
                        cancel_after(ctx.close(CloseCode::new(code), &"r".repeat(reason)), 4).await;
                }
                AppStep::Ping(len) => {
                    let _ = handle.try_ping(vec![1; len]);
                }
                AppStep::Recv { polls } => {
                    sleep(&self.runtime, Duration::from_millis(u64::from(polls) * 50)).await;
                }
                AppStep::Sleep(duration) => sleep(&self.runtime, duration).await,
            }
        }
    }
}

impl Handler for App {
    async fn on_open(&mut self, ctx: &mut Ctx) {
        self.run(ctx).await;
    }

    async fn on_message(&mut self, ctx: &mut Ctx, _message: Message) {
        self.run(ctx).await;
    }

    async fn on_close(&mut self, ctx: &mut Ctx, _closed: &ws_core::Closed) {
        self.run(ctx).await;
    }
}

/// The client application: every step in turn, then it lets go.
async fn client_app(socket: crate::WebSocket, steps: Steps, runtime: Virtual) {
    let (sender, mut receiver) = socket.split();
    while let Some(step) = next_step(&steps) {
        match step {
            AppStep::Send(message) => {
                let _ = cancel_after(sender.send(message), 8).await;
            }
            AppStep::TrySend(message) => {
                let _ = sender.try_send(message);
            }
            AppStep::Fragment { data, last, polls } => {
                let _ = cancel_after(sender.send_fragment(data, last), polls).await;
            }
            AppStep::Close(code, reason) => {
                let close = sender.close(CloseCode::new(code), &"r".repeat(reason));
                let _ = cancel_after(close, 4).await;
            }
            AppStep::Ping(len) => {
                let _ = cancel_after(sender.ping(vec![1; len]), 4).await;
            }
            AppStep::Recv { polls } => {
                if let Some(Some(Ok(message))) = cancel_after(receiver.recv(), polls).await {
                    assert!(message.len() <= 64 * 1024, "a message past the limit");
                }
            }
            AppStep::Sleep(duration) => sleep(&runtime, duration).await,
        }
    }
}

// ---- the checks -----------------------------------------------------------

/// Everything one side wrote: an HTTP head, then (after a 101) frames that
/// the other side's strict decoder accepts, nothing after a close frame.
fn check_written(written: &[u8], server: bool, deflate: bool) {
    let Some(end) = written.windows(4).position(|w| w == b"\r\n\r\n") else {
        // The head was cut short by a failing transport.
        return;
    };
    let head = std::str::from_utf8(&written[..end]).expect("an ASCII head");
    if server {
        assert!(head.starts_with("HTTP/1.1 "), "{head}");
        if !head.starts_with("HTTP/1.1 101 ") {
            return;
        }
    } else {
        assert!(head.starts_with("GET "), "{head}");
    }
    let mut decoder = FrameDecoder::new(HeaderRules {
        expect_masked: !server,
        expect_unmasked: server,
        max_payload: usize::MAX,
        allowed_rsv: if deflate { RSV1 } else { 0 },
        reject_non_minimal: true,
    });
    let mut buf = BytesMut::from(&written[end + 4..]);
    let mut closed = false;
    while let Some(frame) = decoder.decode(&mut buf).expect("a valid frame") {
        assert!(!closed, "a frame after the close frame");
        if frame.header.opcode.is_control() {
            assert!(frame.header.fin && frame.payload.len() <= 125);
        }
        if frame.header.opcode == OpCode::Close {
            closed = true;
            ws_core::CloseFrame::parse(&frame.payload).expect("a valid close frame");
        }
    }
}

// ---- the target -------------------------------------------------------------

/// A message of the kind and size `arg` picks.
fn message(arg: u8, input: &mut Input<'_>) -> Message {
    let data = input.take(usize::from(arg % 32) * 16);
    if arg & 0x80 != 0 {
        Message::text(String::from_utf8_lossy(&data).into_owned())
    } else {
        Message::binary(data)
    }
}

/// A frame as the peer sends it: masked towards a server.
fn peer_frame(arg: u8, input: &mut Input<'_>, to_server: bool) -> Vec<u8> {
    let opcode = [
        OpCode::Text,
        OpCode::Binary,
        OpCode::Continuation,
        OpCode::Ping,
        OpCode::Pong,
        OpCode::Close,
    ][usize::from(arg % 6)];
    let fin = arg & 0x40 == 0;
    let payload = match opcode {
        OpCode::Close => {
            let mut close = 1000u16
                .wrapping_add(u16::from(input.arg() % 16))
                .to_be_bytes()
                .to_vec();
            close.extend(input.take(usize::from(arg >> 6)));
            close
        }
        _ => {
            let len = usize::from(input.arg()) * 4;
            input.take(len)
        }
    };
    let mut wire = BytesMut::new();
    let mask = to_server.then_some([0x12, 0x34, 0x56, 0x78]);
    encode_frame(&mut wire, opcode, fin, 0, &payload, mask);
    wire.to_vec()
}

/// The whole connection task over a scripted transport; see the module
/// docs.
pub fn driver(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.arg();
    let server = flags & 1 == 0;
    let deflate = flags & 2 != 0;
    let runtime = Virtual::new();
    let wire = Arc::new(Mutex::new(Wire {
        chunk: usize::from(flags >> 2) * 8 + 1,
        answer_request: !server,
        ..Wire::default()
    }));
    let steps: Steps = Arc::default();
    let mut cancel_at: Option<usize> = None;
    let mut to_read = Vec::new();
    if server {
        let request = "GET / HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        to_read.extend_from_slice(request.as_bytes());
        if deflate {
            to_read.extend_from_slice(b"Sec-WebSocket-Extensions: permessage-deflate\r\n");
        }
        to_read.extend_from_slice(b"\r\n");
    }
    {
        let mut script = lock(&wire);
        // The request on its own: a client waits for the 101 before it
        // sends frames (bytes behind the request are refused with 400).
        if !to_read.is_empty() {
            script
                .reads
                .push_back(ReadStep::Data(std::mem::take(&mut to_read)));
        }
        let flush = |script: &mut Wire, to_read: &mut Vec<u8>| {
            if !to_read.is_empty() {
                script
                    .reads
                    .push_back(ReadStep::Data(std::mem::take(to_read)));
            }
        };
        while let Some(op) = input.byte() {
            let arg = input.arg();
            match op % 16 {
                0 | 1 => to_read.extend(peer_frame(arg, &mut input, server)),
                2 => to_read.extend(input.take(usize::from(arg % 64))),
                3 => {
                    flush(&mut script, &mut to_read);
                    script.reads.push_back(ReadStep::Pending);
                }
                4 => {
                    flush(&mut script, &mut to_read);
                    script.reads.push_back(if arg & 1 == 0 {
                        ReadStep::Error
                    } else {
                        ReadStep::Eof
                    });
                }
                5 => script.writes.push_back(WriteStep::Accept(usize::from(arg))),
                6 => script.writes.push_back(WriteStep::Pending),
                7 => script.writes.push_back(WriteStep::Error),
                8 => lock(&steps).push_back(AppStep::Send(message(arg, &mut input))),
                9 => lock(&steps).push_back(AppStep::TrySend(message(arg, &mut input))),
                10 => lock(&steps).push_back(AppStep::Fragment {
                    data: message(arg, &mut input),
                    last: arg & 0x40 != 0,
                    polls: input.arg() % 4,
                }),
                11 => lock(&steps).push_back(AppStep::Close(
                    u16::from(arg) * 16,
                    usize::from(input.arg()),
                )),
                12 => lock(&steps).push_back(AppStep::Ping(usize::from(arg))),
                13 => lock(&steps).push_back(AppStep::Recv { polls: arg % 8 }),
                14 => lock(&steps)
                    .push_back(AppStep::Sleep(Duration::from_millis(u64::from(arg) * 100))),
                _ => cancel_at = Some(usize::from(arg) * 4),
            }
        }
        flush(&mut script, &mut to_read);
    }

    let io = Scripted(wire.clone());
    let mut config = ServerConfig::default();
    config.connection = config.connection.with_max_message_size(64 * 1024);
    config.connection.max_outgoing_buffer = 16 * 1024;
    config.connection.ping_interval = Some(Duration::from_secs(5));
    config.send_queue = 16 * 1024;
    if deflate {
        config.deflate = Some(ws_core::deflate::DeflateConfig::default());
    }
    let main: BoxFuture<()> = if server {
        let app_steps = steps.clone();
        let app_runtime = runtime.clone();
        let server = ServerBuilder::new(runtime.clone())
            .config(config)
            .route(
                "/",
                Endpoint::new(move |_| App {
                    steps: app_steps.clone(),
                    runtime: app_runtime.clone(),
                }),
            )
            .build();
        Box::pin(async move { server.accept(io, None).await })
    } else {
        let mut client = ClientConfig::default();
        client.connection = client.connection.with_max_message_size(64 * 1024);
        client.connection.max_outgoing_buffer = 16 * 1024;
        client.connection.ping_interval = Some(Duration::from_secs(5));
        client.send_queue = 16 * 1024;
        client.read_ahead = usize::from(flags >> 6);
        if deflate {
            client.deflate = Some(ws_core::deflate::DeflateConfig::default());
        }
        let request = ClientRequest::new("ws://fuzz/").expect("a valid URI");
        let app_runtime = runtime.clone();
        let steps = steps.clone();
        Box::pin(async move {
            let connect = crate::connect_with(app_runtime.clone(), io, &request, &client);
            if let Ok((socket, _)) = connect.await {
                client_app(socket, steps, app_runtime).await;
            }
        })
    };

    // Poll everything each round; when nothing is left to script, move the
    // clock to the next timer. A connection must end within the bound.
    let mut tasks: Vec<BoxFuture<()>> = vec![main];
    let mut cx = Context::from_waker(Waker::noop());
    for round in 0..50_000usize {
        if cancel_at == Some(round) && !tasks.is_empty() {
            // The connection's future dropped mid-flight.
            drop(tasks.remove(0));
            cancel_at = None;
        }
        tasks.extend(lock(&runtime.spawned).drain(..));
        tasks.retain_mut(|task| task.as_mut().poll(&mut cx).is_pending());
        if tasks.is_empty() && lock(&runtime.spawned).is_empty() {
            let wire = lock(&wire);
            check_written(&wire.written, server, deflate);
            return;
        }
        let script_over = {
            let wire = lock(&wire);
            wire.reads.is_empty() && wire.writes.is_empty()
        } && lock(&steps).is_empty();
        if (round % 8 == 7 || script_over) && !runtime.jump_to_next_timer() {
            runtime.advance(Duration::from_millis(100));
        }
    }
    panic!("the connection did not end");
}

// ---- origins and credentials -----------------------------------------------

/// Origin checks on arbitrary `Origin` and `Host` values: never a panic,
/// an absent `Origin` always allowed, a same-origin request allowed
/// whatever its case, and an allow-list never admitting what it was not
/// given.
pub fn origin(data: &[u8]) {
    use crate::OriginPolicy;
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let origin = parts.next().unwrap_or_default();
    let host = parts.next().unwrap_or_default();
    let allowed = parts.next().unwrap_or_default();
    let mut headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_str(host) {
        headers.insert(http::header::HOST, value);
    }
    for policy in [
        OriginPolicy::SameOrigin,
        OriginPolicy::allow(allowed.split(',')),
        OriginPolicy::AllowAnyOriginDangerously,
    ] {
        let _ = policy.allows(Some(origin), &headers);
        assert!(policy.allows(None, &headers));
    }
    if headers.contains_key(http::header::HOST) && !host.is_empty() && !host.contains(['/', '@']) {
        let same = format!("http://{host}");
        let upper = same.to_ascii_uppercase().replacen("HTTP", "http", 1);
        let verdict = OriginPolicy::SameOrigin.allows(Some(&same), &headers);
        assert_eq!(
            verdict,
            OriginPolicy::SameOrigin.allows(Some(&upper), &headers),
            "case changed the verdict for {same:?}"
        );
    }
    let list = OriginPolicy::allow(Vec::<String>::new());
    assert!(
        !list.allows(Some(origin), &headers),
        "an empty list allowed {origin:?}"
    );
}

/// `Authorization` parsing by the built-in authenticators: never a panic,
/// and a refusal never echoes what the client sent.
pub fn credentials(data: &[u8]) {
    use crate::auth::{BearerJwt, KeyAuth};
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let request = http::Request::builder()
        .uri("/")
        .header(http::header::AUTHORIZATION, value)
        .body(())
        .expect("a valid request")
        .into_parts()
        .0;
    let keys = KeyAuth::new().key("right key", "someone");
    let jwt = BearerJwt::hs256(b"fuzz secret");
    let secret = String::from_utf8_lossy(data);
    for refusal in [keys.check(&request).err(), jwt.check(&request).err()]
        .into_iter()
        .flatten()
    {
        assert!(matches!(refusal.status().as_u16(), 401 | 403));
        if secret.len() >= 12 {
            let shown = String::from_utf8_lossy(&refusal.to_bytes()).into_owned();
            let credential = secret.split_once(' ').map_or(&*secret, |(_, c)| c).trim();
            if credential.len() >= 12 {
                assert!(
                    !shown.contains(credential),
                    "a refusal echoed the credential"
                );
            }
        }
    }
}

//! The servers the load client drives, each run in its own process
//! (`--serve NAME`): ws-tokio (with and without timers, with deflate),
//! ws-smol, tokio-tungstenite, fastwebsockets, ws-core's engine under the
//! plainest loop, and `minimal`, the bound.

use super::*;

mod servers {
    use futures_util::{StreamExt, TryStreamExt};
    use tokio::net::TcpListener;

    pub(crate) async fn ws_tokio(
        listener: TcpListener,
        deflate: Option<ws_core::deflate::DeflateConfig>,
        timers: bool,
    ) {
        struct Echo;
        impl ws_tokio::Handler for Echo {
            async fn on_message(&mut self, ctx: &mut ws_tokio::Ctx, message: ws_tokio::Message) {
                let _ = ctx.send(message).await;
            }
        }
        let mut config = ws_tokio::ServerConfig::default();
        config.deflate = deflate;
        if !timers {
            config.connection.ping_interval = None;
            config.connection.idle_timeout = None;
            config.shrink_idle_buffers = false;
        }
        let server = ws_tokio::server()
            .config(config)
            .route("/", ws_tokio::Endpoint::new(|_| Echo))
            .build();
        let _ = server
            .serve(ws_tokio::TokioListener::from_tcp(listener))
            .await;
    }

    /// tokio-tungstenite's own echo server example.
    pub(crate) async fn tokio_tungstenite(listener: TcpListener) {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (write, read) = ws.split();
                let _ = read
                    .try_filter(|m| std::future::ready(m.is_text() || m.is_binary()))
                    .forward(write)
                    .await;
            });
        }
    }

    /// fastwebsockets' own echo server example (hyper upgrade,
    /// FragmentCollector, unconstrained task).
    pub(crate) async fn fastwebsockets(listener: TcpListener) {
        use fastwebsockets::{OpCode, upgrade};
        use http_body_util::Empty;
        use hyper::body::{Bytes, Incoming};
        use hyper::{Request, Response};

        async fn client(fut: upgrade::UpgradeFut) -> Result<(), fastwebsockets::WebSocketError> {
            let mut ws = fastwebsockets::FragmentCollector::new(fut.await?);
            loop {
                let frame = ws.read_frame().await?;
                match frame.opcode {
                    OpCode::Close => break,
                    OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
                    _ => {}
                }
            }
            Ok(())
        }
        async fn upgrade(
            mut req: Request<Incoming>,
        ) -> Result<Response<Empty<Bytes>>, fastwebsockets::WebSocketError> {
            let (response, fut) = upgrade::upgrade(&mut req)?;
            tokio::spawn(async move {
                let _ = tokio::task::unconstrained(client(fut)).await;
            });
            Ok(response)
        }
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, hyper::service::service_fn(upgrade))
                    .with_upgrades()
                    .await;
            });
        }
    }
}

/// Accepts connections (TCP_NODELAY on) and runs `connection` on each in
/// a task of its own.
async fn serve_each<F, C>(listener: tokio::net::TcpListener, connection: C)
where
    C: Fn(TcpStream) -> F,
    F: Future<Output = io::Result<()>> + Send + 'static,
{
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream));
    }
}

/// Not a library: the least work a WebSocket echo server can do, as a
/// bound on what any server can reach on this machine with this load
/// client. One read, every complete frame unmasked in place, one vectored
/// write of the unmasked headers and the payloads; no UTF-8,
/// fragmentation, control-frame or limit checks, no allocation per
/// message.
mod minimal {
    use std::io::IoSlice;

    use bytes::{Buf, BytesMut};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use ws_core::frame::apply_mask;
    use ws_core::handshake::{Accept, ServerHandshake};

    pub(crate) async fn serve(listener: TcpListener) {
        super::serve_each(listener, connection).await
    }

    /// Accepts the opening handshake on `stream`; `false` if the client
    /// left first. `input` is the read buffer, left empty (the client
    /// sends nothing before the response).
    pub(crate) async fn handshake(
        stream: &mut TcpStream,
        input: &mut BytesMut,
    ) -> std::io::Result<bool> {
        let mut handshake = ServerHandshake::new(Default::default(), std::time::Instant::now());
        let upgrade = loop {
            input.clear();
            if stream.read_buf(input).await? == 0 {
                return Ok(false);
            }
            if let Some(upgrade) = handshake
                .handle_input(input)
                .map_err(std::io::Error::other)?
            {
                break upgrade;
            }
        };
        let accepted = upgrade
            .accept(Accept::new())
            .map_err(std::io::Error::other)?;
        stream.write_all(&accepted.to_bytes()).await?;
        input.clear();
        Ok(true)
    }

    async fn connection(mut stream: TcpStream) -> std::io::Result<()> {
        let mut input = BytesMut::with_capacity(64 * 1024);
        if !handshake(&mut stream, &mut input).await? {
            return Ok(());
        }
        let mut frames = Vec::new();
        loop {
            let consumed = unmask_frames(&mut input, &mut frames);
            write_echoes(&mut stream, &input, &frames).await?;
            frames.clear();
            input.advance(consumed);
            input.reserve(256 * 1024);
            if stream.read_buf(&mut input).await? == 0 {
                return Ok(());
            }
        }
    }

    /// A frame to echo: its header as sent back (no mask) and where its
    /// unmasked payload lies in the input.
    struct Echo {
        header: [u8; 10],
        header_len: usize,
        payload: std::ops::Range<usize>,
    }

    /// Unmasks every complete frame in `input` in place; returns the bytes
    /// they take.
    fn unmask_frames(input: &mut [u8], frames: &mut Vec<Echo>) -> usize {
        let mut at = 0;
        loop {
            let frame = &mut input[at..];
            let Some((len, header_len)) = ws_benches::frame_lengths(frame) else {
                return at;
            };
            let total = len.saturating_add(header_len + 4);
            if frame.len() < total {
                return at;
            }
            let mut header = [0; 10];
            header[..header_len].copy_from_slice(&frame[..header_len]);
            header[1] &= 0x7f;
            let key = [
                frame[header_len],
                frame[header_len + 1],
                frame[header_len + 2],
                frame[header_len + 3],
            ];
            apply_mask(&mut frame[header_len + 4..total], key, 0);
            frames.push(Echo {
                header,
                header_len,
                payload: at + header_len + 4..at + total,
            });
            at += total;
        }
    }

    /// Writes every echo with vectored writes, payloads straight from the
    /// input buffer.
    async fn write_echoes(
        stream: &mut TcpStream,
        input: &[u8],
        frames: &[Echo],
    ) -> std::io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = frames
            .iter()
            .flat_map(|f| {
                [
                    IoSlice::new(&f.header[..f.header_len]),
                    IoSlice::new(&input[f.payload.clone()]),
                ]
            })
            .collect();
        let mut pending = &mut slices[..];
        while !pending.is_empty() {
            // IOV_MAX is 1024 on Linux.
            let batch = pending.len().min(1024);
            let written = stream.write_vectored(&pending[..batch]).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut pending, written);
        }
        Ok(())
    }
}

/// ws-core's engine driven by the plainest loop over a tokio socket: no
/// handler, send queue, shutdown, panic isolation or timers (keepalive
/// and idle timeout off, as fastwebsockets has none). Not a server anyone
/// should run (it ignores deadlines), but the least a driver of ws-core as
/// it is can cost: between it and `ws-tokio+no-timers` is the driver's
/// share, between it and `minimal` the engine's.
mod ws_core_loop {
    use std::io::IoSlice;
    use std::time::Instant;

    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use ws_core::{Config, Connection, Event};

    pub(crate) async fn serve(listener: TcpListener) {
        super::serve_each(listener, connection).await
    }

    async fn connection(mut stream: TcpStream) -> std::io::Result<()> {
        let mut input = BytesMut::new();
        if !super::minimal::handshake(&mut stream, &mut input).await? {
            return Ok(());
        }
        let mut config = Config::server();
        config.ping_interval = None;
        config.idle_timeout = None;
        let mut conn = Connection::server(config, Instant::now());
        loop {
            while let Some(event) = conn.poll_event() {
                match event {
                    // A refused echo would leave the load client waiting.
                    Event::Message(message) => conn.send(message).map_err(std::io::Error::other)?,
                    Event::Closed(_) => return Ok(()),
                    _ => {}
                }
            }
            while conn.transmit_len() > 0 {
                let mut slices = [IoSlice::new(&[]); 16];
                let n = conn.transmit_slices(&mut slices);
                let written = stream.write_vectored(&slices[..n]).await?;
                if written == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                conn.advance_transmit(written);
            }
            if stream.read_buf(conn.recv_buf()).await? == 0 {
                conn.handle_transport_closed(Instant::now());
            } else {
                conn.handle_received(Instant::now());
            }
        }
    }
}

/// ws-smol on one thread: a single async-executor run by async-io's
/// `block_on`, which also drives the reactor when the executor is idle,
/// the counterpart of tokio's one worker.
fn serve_smol() -> io::Result<()> {
    struct Echo;
    impl ws_smol::Handler for Echo {
        async fn on_message(&mut self, ctx: &mut ws_smol::Ctx, message: Message) {
            let _ = ctx.send(message).await;
        }
    }
    let executor = Arc::new(smol::Executor::new());
    let spawner = executor.clone();
    let runtime = ws_smol::SmolRuntime::with_spawner(move |task| spawner.spawn(task).detach());
    let server = ws_smol::ServerBuilder::new(runtime)
        .route("/", ws_smol::Endpoint::new(|_| Echo))
        .build();
    let listener = smol::block_on(ws_smol::bind("127.0.0.1:0"))?;
    println!("{}", listener.local_addr()?.port());
    smol::block_on(executor.run(server.serve(listener)))
}

pub(super) fn serve(name: &str) -> io::Result<()> {
    if name == "ws-smol" {
        return serve_smol();
    }
    one_worker_runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?.port());
        match name {
            ws if ws == "ws-tokio"
                || ws == "ws-tokio+no-timers"
                || ws.starts_with("ws-tokio+deflate") =>
            {
                servers::ws_tokio(listener, deflate_setting(ws), !timers_off(ws)).await
            }
            "tokio-tungstenite" => servers::tokio_tungstenite(listener).await,
            "fastwebsockets" => servers::fastwebsockets(listener).await,
            "minimal" => minimal::serve(listener).await,
            "ws-core" => ws_core_loop::serve(listener).await,
            other => panic!("unknown server {other}"),
        }
        Ok(())
    })
}

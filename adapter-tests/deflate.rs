//! permessage-deflate through a real server and client: negotiation per
//! server and per endpoint, compressed frames on the wire, the inflated
//! size limit and corrupt data at the socket, per-message opt-out.

use crate::rt::{self, ws};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::common::{Echo, Raw, echo_server, masked_frame_with_rsv, request, serve};
use ws::ws_core::deflate::{Compression, DeflateConfig, DeflateParams, Deflater, Inflater};
use ws::{ClientConfig, Ctx, Endpoint, Handler, Message, ServerConfig};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits";

fn deflate_on() -> DeflateConfig {
    let mut config = DeflateConfig::default();
    config.threshold = 0;
    config
}

fn compressing_server() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.deflate = Some(deflate_on());
    config
}

fn compressing_client() -> ClientConfig {
    let mut config = ClientConfig::default();
    config.deflate = Some(deflate_on());
    config
}

fn json(n: usize) -> String {
    (0..)
        .map(|i| format!(r#"{{"seq":{i},"topic":"sensors/{}","ok":true}}"#, i % 9))
        .take_while({
            let mut total = 0;
            move |s: &String| {
                total += s.len();
                total <= n
            }
        })
        .collect()
}

/// Opens a raw connection offering permessage-deflate; returns it and the
/// response head.
async fn raw_offering(addr: std::net::SocketAddr, path: &str) -> (Raw, String) {
    let mut raw = Raw::connect(addr).await;
    raw.send(request(path, &[OFFER]).as_bytes()).await;
    let (status, head) = raw.read_head().await;
    assert_eq!(status, 101, "{head}");
    (raw, head.to_ascii_lowercase())
}

async fn off_by_default_on_the_server() {
    let server = echo_server(ServerConfig::default()).await;
    let (mut raw, head) = raw_offering(server.addr, "/echo").await;
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
    // RSV1 without the extension is a protocol error.
    raw.send(&masked_frame_with_rsv(
        1,
        true,
        0b100,
        b"\xf2H\xcd\xc9\xc9\x07\x00",
    ))
    .await;
    assert_eq!(raw.read_close_code().await, Some(1002));
}

async fn compressed_frames_on_the_wire_both_ways() {
    let server = echo_server(compressing_server()).await;
    let (mut raw, head) = raw_offering(server.addr, "/echo").await;
    assert!(
        head.contains("sec-websocket-extensions: permessage-deflate\r\n"),
        "{head}"
    );
    let text = json(20_000);
    let mut deflater = Deflater::new(15, false, Compression::fast());
    let mut inflater = Inflater::new(15, false);
    for _ in 0..3 {
        let mut wire = Vec::new();
        deflater.compress(text.as_bytes(), true, &mut wire);
        raw.send(&masked_frame_with_rsv(1, true, 0b100, &wire))
            .await;
        let (first, payload) = rt::timeout(Duration::from_secs(5), raw.read_frame_raw())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first, 0x80 | 0x40 | 1, "FIN, RSV1, text");
        assert!(payload.len() < text.len() / 4, "{} bytes", payload.len());
        let mut back = Vec::new();
        inflater
            .inflate(&payload, true, 1 << 20, &mut back)
            .unwrap();
        assert_eq!(back, text.as_bytes());
    }
}

/// Records what each connection negotiated and echoes.
struct Recording(Arc<Mutex<Vec<Option<DeflateParams>>>>);

impl Handler for Recording {
    async fn on_open(&mut self, ctx: &mut Ctx) {
        self.0.lock().unwrap().push(ctx.info().deflate);
    }
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        let _ = ctx.send(message).await;
    }
}

async fn our_client_and_server_agree_and_echo_large_messages() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let mut config = compressing_server();
    config.connection = config.connection.with_max_message_size(8 << 20);
    let mut deflate = deflate_on();
    deflate.server_max_window_bits = 11;
    deflate.client_no_context_takeover = true;
    config.deflate = Some(deflate);
    let server = serve(
        ws::server()
            .config(config)
            .route("/echo", Endpoint::new(move |_| Recording(record.clone())))
            .build(),
    )
    .await;
    let (mut socket, response) = ws::client(server.url("/echo"))
        .unwrap()
        .config(compressing_client())
        .connect()
        .await
        .unwrap();
    let answer = response.headers()["sec-websocket-extensions"]
        .to_str()
        .unwrap();
    assert_eq!(
        answer,
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=11"
    );
    let agreed = socket.info().deflate.expect("negotiated");
    assert_eq!(
        (
            agreed.server_max_window_bits,
            agreed.client_no_context_takeover
        ),
        (11, true)
    );
    let big = json(6 << 20);
    let messages = [
        Message::text(big.as_str()),
        Message::binary(vec![7u8; 100_000]),
        Message::text(""),
        Message::text("small"),
    ];
    for message in &messages {
        socket.send(message.clone()).await.unwrap();
    }
    socket
        .send_uncompressed(Message::text("not compressed"))
        .await
        .unwrap();
    socket.send_fragment("frag", false).await.unwrap();
    socket.send_fragment("mented", true).await.unwrap();
    for message in messages {
        assert_eq!(socket.recv().await.unwrap().unwrap(), message);
    }
    assert_eq!(
        socket.recv().await.unwrap().unwrap(),
        Message::text("not compressed")
    );
    assert_eq!(
        socket.recv().await.unwrap().unwrap(),
        Message::text("fragmented")
    );
    assert_eq!(*seen.lock().unwrap(), [Some(agreed)]);
}

async fn endpoints_override_the_server_setting() {
    let server = serve(
        ws::server()
            .config(compressing_server())
            .route("/on", Endpoint::new(|_| Echo))
            .route("/off", Endpoint::new(|_| Echo).deflate(None))
            .build(),
    )
    .await;
    let (_, head) = raw_offering(server.addr, "/on").await;
    assert!(head.contains("permessage-deflate"), "{head}");
    let (_, head) = raw_offering(server.addr, "/off").await;
    assert!(!head.contains("permessage-deflate"), "{head}");
    let plain = serve(
        ws::server()
            .route("/on", Endpoint::new(|_| Echo).deflate(Some(deflate_on())))
            .build(),
    )
    .await;
    let (_, head) = raw_offering(plain.addr, "/on").await;
    assert!(head.contains("permessage-deflate"), "{head}");
    // A client that offers nothing gets nothing.
    let (socket, response) = ws::connect(&server.url("/on")).await.unwrap();
    assert!(!response.headers().contains_key("sec-websocket-extensions"));
    assert_eq!(socket.info().deflate, None);
}

async fn a_compressed_bomb_at_the_socket_closes_with_1009() {
    let server = echo_server(compressing_server()).await;
    let (mut raw, _) = raw_offering(server.addr, "/echo").await;
    // 16 MiB of zeros against the default 1 MiB limit, in 64 fragments.
    let mut wire = Vec::new();
    Deflater::new(15, false, Compression::best()).compress(&vec![0; 16 << 20], true, &mut wire);
    assert!(wire.len() < 100_000);
    let pieces: Vec<&[u8]> = wire.chunks(wire.len() / 64 + 1).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let (opcode, rsv) = if i == 0 { (2, 0b100) } else { (0, 0) };
        raw.send(&masked_frame_with_rsv(
            opcode,
            i + 1 == pieces.len(),
            rsv,
            piece,
        ))
        .await;
    }
    assert_eq!(raw.read_close_code().await, Some(1009));
}

async fn corrupt_compressed_data_at_the_socket_closes_with_1007() {
    let server = echo_server(compressing_server()).await;
    let (mut raw, _) = raw_offering(server.addr, "/echo").await;
    raw.send(&masked_frame_with_rsv(1, true, 0b100, &[0xff, 0xff, 0xff]))
        .await;
    assert_eq!(raw.read_close_code().await, Some(1007));
}

async fn hostile_offers_are_declined_and_the_connection_proceeds() {
    let server = echo_server(compressing_server()).await;
    for offer in [
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=99",
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "Sec-WebSocket-Extensions: permessage-deflate; x=\"\\\\\\\\\\",
    ] {
        let mut raw = Raw::connect(server.addr).await;
        raw.send(request("/echo", &[offer]).as_bytes()).await;
        let (status, head) = raw.read_head().await;
        assert_eq!(status, 101, "{offer}: {head}");
        assert!(!head.to_ascii_lowercase().contains("extensions"), "{offer}");
        raw.frame(1, true, b"plain").await;
        let (opcode, _, payload) = raw.read_frame().await.unwrap();
        assert_eq!((opcode, &payload[..]), (1, &b"plain"[..]));
    }
}

adapter_tests!(
    off_by_default_on_the_server,
    compressed_frames_on_the_wire_both_ways,
    our_client_and_server_agree_and_echo_large_messages,
    endpoints_override_the_server_setting,
    a_compressed_bomb_at_the_socket_closes_with_1009,
    corrupt_compressed_data_at_the_socket_closes_with_1007,
    hostile_offers_are_declined_and_the_connection_proceeds,
);

//! ws-core next to tungstenite, in the same run, on the same bytes.
//!
//! - `decode/*`: a server reads masked client frames: header parse, unmask,
//!   UTF-8 validation (text), message out. ws-core is fed the bytes with
//!   `handle_read`; tungstenite reads them from an in-memory stream. Each
//!   side copies the input once into its own read buffer.
//! - `encode/*`: a server (unmasked) and a client (masked) write messages
//!   into a sink; ws-core's queued bytes are drained as a vectored write.
//!
//! Run: `cargo bench -p ws-benches --bench codec`

use std::hint::black_box;
use std::io::{self, IoSlice, Read, Write};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use tungstenite::protocol::{Role as TRole, WebSocket, WebSocketConfig};
use ws_core::frame::{OpCode, encode_frame};
use ws_core::{Config, Connection, Event, Message};

const SIZES: [(usize, &str); 4] = [
    (16, "16B"),
    (1024, "1KiB"),
    (64 * 1024, "64KiB"),
    (1024 * 1024, "1MiB"),
];
/// Each iteration decodes at least this much payload (and one message).
const BATCH_BYTES: usize = 256 * 1024;

/// An in-memory stream: reads replay `input` from `pos`, writes count bytes.
struct MemStream {
    input: Bytes,
    pos: usize,
    written: usize,
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn payload(size: usize, text: bool) -> Vec<u8> {
    if text {
        // Mostly ASCII with some multi-byte code points, as chat text is.
        "The quick brown fox jumps over the lazy dog — κόσμε 😀 "
            .bytes()
            .cycle()
            .take(size)
            .collect::<Vec<_>>()
            .utf8_prefix()
    } else {
        (0..=255u8).cycle().take(size).collect()
    }
}

trait Utf8Prefix {
    fn utf8_prefix(self) -> Vec<u8>;
}

impl Utf8Prefix for Vec<u8> {
    /// Pads a cut-off code point at the end with spaces so the length stays.
    fn utf8_prefix(mut self) -> Vec<u8> {
        let valid = match std::str::from_utf8(&self) {
            Ok(_) => self.len(),
            Err(e) => e.valid_up_to(),
        };
        for byte in &mut self[valid..] {
            *byte = b' ';
        }
        self
    }
}

/// `count` masked client frames carrying `payload`.
fn client_wire(payload: &[u8], text: bool, count: usize) -> Bytes {
    let opcode = if text { OpCode::Text } else { OpCode::Binary };
    let mut wire = BytesMut::new();
    let mut key = 0x1234_5678u32;
    for _ in 0..count {
        key = key.wrapping_mul(0x9E37_79B9).wrapping_add(1);
        let key = key.to_be_bytes();
        encode_frame(&mut wire, opcode, true, 0, payload, Some(key));
    }
    wire.freeze()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for text in [false, true] {
        for (size, label) in SIZES {
            let data = payload(size, text);
            let count = (BATCH_BYTES / size).max(1);
            let wire = client_wire(&data, text, count);
            group.throughput(Throughput::Bytes((size * count) as u64));
            let kind = if text { "text" } else { "binary" };

            let mut config = Config::server().with_max_message_size(16 << 20);
            config.ping_interval = None;
            let mut conn = Connection::server(config, Instant::now());
            group.bench_function(BenchmarkId::new(format!("ws-core/{kind}"), label), |b| {
                b.iter(|| {
                    conn.handle_read(&wire, Instant::now());
                    let mut n = 0;
                    while let Some(event) = conn.poll_event() {
                        match event {
                            Event::Message(m) => {
                                black_box(&m);
                                n += 1;
                            }
                            other => panic!("{other:?}"),
                        }
                    }
                    assert_eq!(n, count);
                });
            });

            let stream = MemStream {
                input: wire.clone(),
                pos: 0,
                written: 0,
            };
            let mut ws =
                WebSocket::from_raw_socket(stream, TRole::Server, Some(WebSocketConfig::default()));
            group.bench_function(
                BenchmarkId::new(format!("tungstenite/{kind}"), label),
                |b| {
                    b.iter(|| {
                        ws.get_mut().pos = 0;
                        for _ in 0..count {
                            let message = ws.read().expect("a message");
                            black_box(&message);
                        }
                    });
                },
            );
        }
    }
    group.finish();
}

fn drain(conn: &mut Connection) -> usize {
    let mut total = 0;
    loop {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = conn.transmit_slices(&mut slices);
        if n == 0 {
            return total;
        }
        let written: usize = slices[..n].iter().map(|s| black_box(s.len())).sum();
        conn.advance_transmit(written);
        total += written;
    }
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for client in [false, true] {
        let role = if client { "client" } else { "server" };
        for (size, label) in SIZES {
            let data = Bytes::from(payload(size, false));
            let count = (BATCH_BYTES / size).max(1);
            group.throughput(Throughput::Bytes((size * count) as u64));

            let mut config = Config::server();
            config.max_outgoing_buffer = usize::MAX;
            let mut conn = if client {
                Connection::client(config, Instant::now(), [1; 32])
            } else {
                Connection::server(config, Instant::now())
            };
            group.bench_function(BenchmarkId::new(format!("ws-core/{role}"), label), |b| {
                b.iter(|| {
                    for _ in 0..count {
                        conn.send(Message::Binary(data.clone())).unwrap();
                    }
                    black_box(drain(&mut conn));
                });
            });

            let stream = MemStream {
                input: Bytes::new(),
                pos: 0,
                written: 0,
            };
            let t_role = if client { TRole::Client } else { TRole::Server };
            let mut ws =
                WebSocket::from_raw_socket(stream, t_role, Some(WebSocketConfig::default()));
            group.bench_function(
                BenchmarkId::new(format!("tungstenite/{role}"), label),
                |b| {
                    b.iter(|| {
                        for _ in 0..count {
                            ws.write(tungstenite::Message::Binary(data.clone()))
                                .unwrap();
                        }
                        ws.flush().unwrap();
                        black_box(ws.get_ref().written);
                    });
                },
            );
        }
    }
    group.finish();
}

// The macro generates an undocumented public function.
mod harness {
    #![allow(missing_docs, unreachable_pub)]
    criterion::criterion_group!(benches, super::decode, super::encode);
}
criterion_main!(harness::benches);

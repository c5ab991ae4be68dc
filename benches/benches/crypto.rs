//! What encryption adds per message, sans-IO (no sockets, so the figures
//! are the crypto alone):
//!
//! - `session/*`: an encrypted session's record layer, one message sealed
//!   by the sender and opened by the receiver (what each side adds per
//!   message it sends or receives), AES-256-GCM and ChaCha20-Poly1305.
//! - `setup/*`: a session's key agreement (both sides).
//!
//! It also prints the bytes on the wire with and without encryption.
//! End-to-end encrypted channels (MLS) have their own bench, `mls`.
//!
//! Run: `cargo bench -p ws-benches --bench crypto`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use ws_crypto::session::{ClientHandshake, Kind, ServerHandshake};
use ws_crypto::{KeyPair, Suite};

const SIZES: [(usize, &str); 3] = [(16, "16B"), (1024, "1KiB"), (64 * 1024, "64KiB")];

fn session_pair(suite: Suite) -> (ws_crypto::session::Session, ws_crypto::session::Session) {
    let server = ServerHandshake::new(Some(KeyPair::generate())).suites(&[suite]);
    let client = ClientHandshake::with_suites(server.public_key(), &[suite]);
    let (at_server, accept) = server.accept(client.hello()).unwrap();
    (client.finish(&accept).unwrap(), at_server)
}

fn print_sizes() {
    println!("bytes on the wire per message (payload: plain -> encrypted session)");
    for (size, name) in SIZES {
        let session = size + ws_crypto::session::RECORD_OVERHEAD;
        println!("  {name:>6}: {size} -> {session} (+{})", session - size);
    }
}

fn session(c: &mut Criterion) {
    let mut group = c.benchmark_group("session");
    for suite in [Suite::Aes256Gcm, Suite::ChaCha20Poly1305] {
        let name = match suite {
            Suite::Aes256Gcm => "aes256gcm",
            Suite::ChaCha20Poly1305 => "chacha20poly1305",
        };
        for (size, label) in SIZES {
            let message = vec![7u8; size];
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("seal+open/{name}"), label),
                &message,
                |b, message| {
                    let (mut client, mut server) = session_pair(suite);
                    b.iter(|| {
                        let record = client
                            .sealer
                            .seal(Kind::Binary, black_box(message))
                            .unwrap();
                        black_box(server.opener.open(&record).unwrap());
                    });
                },
            );
        }
    }
    group.finish();
}

fn setup(c: &mut Criterion) {
    let mut group = c.benchmark_group("setup");
    let server = ServerHandshake::new(Some(KeyPair::generate()));
    group.bench_function("session_handshake", |b| {
        b.iter(|| {
            let client = ClientHandshake::new(server.public_key());
            let (_, accept) = server.accept(client.hello()).unwrap();
            black_box(client.finish(&accept).unwrap());
        });
    });
    group.finish();
}

fn benches() {
    print_sizes();
    let mut criterion = Criterion::default().configure_from_args();
    session(&mut criterion);
    setup(&mut criterion);
}

criterion_main!(benches);

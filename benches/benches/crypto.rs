//! What encryption adds per message, sans-IO (no sockets, so the figures
//! are the crypto alone):
//!
//! - `session/*`: an encrypted session's record layer, one message sealed
//!   by the sender and opened by the receiver (what each side adds per
//!   message it sends or receives), AES-256-GCM and ChaCha20-Poly1305.
//! - `channel/*`: an end-to-end channel message sealed into its JSON
//!   envelope by the publisher, opened from it by a member, and the shape
//!   check the server makes on an encrypted channel's publication.
//! - `setup/*`: a session's key agreement (both sides), and wrapping one
//!   epoch key for one member.
//!
//! It also prints the bytes on the wire with and without encryption.
//!
//! Run: `cargo bench -p ws-benches --bench crypto`

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use ws_channels::Payload;
use ws_crypto::channel::{E2eData, Keyring};
use ws_crypto::session::{ClientHandshake, Kind, ServerHandshake};
use ws_crypto::{KeyPair, Suite};

const SIZES: [(usize, &str); 3] = [(16, "16B"), (1024, "1KiB"), (64 * 1024, "64KiB")];

fn session_pair(suite: Suite) -> (ws_crypto::session::Session, ws_crypto::session::Session) {
    let server = ServerHandshake::new(Some(KeyPair::generate())).suites(&[suite]);
    let client = ClientHandshake::with_suites(server.public_key(), &[suite]);
    let (at_server, accept) = server.accept(client.hello()).unwrap();
    (client.finish(&accept).unwrap(), at_server)
}

/// An owner and a member sharing epoch 1 of `room`.
fn channel_pair() -> (Keyring, Keyring) {
    let owner_key = KeyPair::generate();
    let member_key = KeyPair::generate();
    let mut owner = Keyring::new("room");
    owner.rotate();
    let keys = owner
        .wrap_current(&owner_key, [("000000000000000b", &member_key.public())])
        .unwrap();
    let mut member = Keyring::new("room");
    member
        .accept_keys(&member_key, &owner_key.public(), "000000000000000b", &keys)
        .unwrap();
    (owner, member)
}

fn print_sizes() {
    println!("bytes on the wire per message (payload: plain -> encrypted)");
    let (mut owner, _) = channel_pair();
    for (size, name) in SIZES {
        let session = size + ws_crypto::session::RECORD_OVERHEAD;
        // The channel publication's `data`: a JSON string of the text, or
        // the end-to-end envelope of the same bytes.
        let plain_json = serde_json::to_string(&"x".repeat(size)).unwrap().len();
        let sealed = owner.seal("000000000000000a", &vec![b'x'; size]).unwrap();
        let sealed_json = serde_json::to_string(&sealed).unwrap().len();
        println!(
            "  {name:>6}: session {size} -> {session} (+{}); channel data {plain_json} -> {sealed_json} (+{:.0}%)",
            session - size,
            (sealed_json as f64 / plain_json as f64 - 1.0) * 100.0
        );
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

fn channel(c: &mut Criterion) {
    let mut group = c.benchmark_group("channel");
    for (size, label) in SIZES {
        let message = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", label), &message, |b, message| {
            let (mut owner, _) = channel_pair();
            b.iter(|| {
                let sealed = owner.seal("000000000000000a", black_box(message)).unwrap();
                black_box(serde_json::to_string(&sealed).unwrap());
            });
        });
        group.bench_with_input(BenchmarkId::new("open", label), &message, |b, message| {
            // Each sequence number opens once: seal `iters` ahead, untimed.
            b.iter_custom(|iters| {
                let (mut owner, mut member) = channel_pair();
                let texts: Vec<String> = (0..iters)
                    .map(|_| {
                        serde_json::to_string(&owner.seal("000000000000000a", message).unwrap())
                            .unwrap()
                    })
                    .collect();
                let start = Instant::now();
                for text in &texts {
                    let data: E2eData = serde_json::from_str(text).unwrap();
                    black_box(member.open("000000000000000a", &data).unwrap());
                }
                start.elapsed()
            });
        });
        let sealed = {
            let (mut owner, _) = channel_pair();
            serde_json::to_value(owner.seal("000000000000000a", &message).unwrap()).unwrap()
        };
        group.bench_with_input(
            BenchmarkId::new("server_check", label),
            &sealed,
            |b, sealed| {
                let payload = Payload::new(sealed);
                b.iter(|| black_box(payload.is_e2e_envelope()));
            },
        );
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
    let owner_key = KeyPair::generate();
    let member = KeyPair::generate().public();
    let mut ring = Keyring::new("room");
    ring.rotate();
    group.bench_function("wrap_epoch_key_for_one_member", |b| {
        b.iter(|| {
            black_box(
                ring.wrap_current(&owner_key, [("000000000000000b", &member)])
                    .unwrap(),
            )
        });
    });
    group.finish();
}

fn benches() {
    print_sizes();
    let mut criterion = Criterion::default().configure_from_args();
    session(&mut criterion);
    channel(&mut criterion);
    setup(&mut criterion);
}

criterion_main!(benches);

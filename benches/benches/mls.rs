//! What MLS groups (`ws_crypto::mls`, on mls-rs) cost, sans-IO:
//!
//! - `mls/commit/add/N` and `mls/commit/remove/N`: a member's commit that
//!   adds one device to a group of N members, or removes one, and the
//!   group moving to its epoch (N = 10, 100, 1,000);
//! - `mls/message/encrypt` and `mls/message/decrypt`: one application
//!   message of 16 bytes and of 1 KiB, next to
//!   `mls/message/plain_publish_payload`,
//!   what a plain channel publish does to its data (the JSON payload made
//!   once for every member).
//!
//! It prints first the sizes on the wire: commits, Welcomes and the
//! GroupInfo a commit gives the server at each N,
//! and an application message against its plaintext.
//!
//! Run: `cargo bench -p ws-benches --bench mls`

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use ws_channels::Payload;
use ws_crypto::mls::{DeliveryService, Device, Group};

const SIZES: [usize; 3] = [10, 100, 1000];

/// A group of `n` members created by "owner", its other members added in
/// one commit, and the Delivery Service following it.
fn group_of(n: usize) -> (Device, Group, DeliveryService) {
    let mut service = DeliveryService::new("ws serve").unwrap();
    let owner = Device::new("owner").unwrap();
    let mut group = owner
        .create_group("room", &service.external_sender().unwrap())
        .unwrap();
    service.follow(&group.group_info().unwrap()).unwrap();
    let packages: Vec<Vec<u8>> = (1..n)
        .map(|i| {
            Device::new(&format!("m{i}"))
                .unwrap()
                .key_package()
                .unwrap()
        })
        .collect();
    if !packages.is_empty() {
        let add = group.add(&packages).unwrap();
        service.accept(&add.commit).unwrap();
        group.confirm().unwrap();
    }
    (owner, group, service)
}

fn print_sizes() {
    println!("MLS sizes on the wire (ciphersuite 1):");
    for n in SIZES {
        let (_, mut group, _) = group_of(n);
        let newcomer = Device::new("newcomer").unwrap();
        let add = group.add(&[newcomer.key_package().unwrap()]).unwrap();
        group.confirm().unwrap();
        let remove = group.remove("m1").unwrap();
        group.confirm().unwrap();
        println!(
            "  {n:>5} members: add one: commit {} B, Welcome {} B, GroupInfo {} B; \
             remove one: commit {} B, GroupInfo {} B",
            add.commit.len(),
            add.welcome.as_ref().map_or(0, Vec::len),
            add.group_info.as_ref().map_or(0, Vec::len),
            remove.commit.len(),
            remove.group_info.as_ref().map_or(0, Vec::len),
        );
    }
    let (_, mut group, _) = group_of(2);
    for size in [16, 1024] {
        let message = group.encrypt(&vec![7u8; size]).unwrap();
        println!(
            "  a {size} B application message: {} B ({} B more)",
            message.len(),
            message.len() - size
        );
    }
}

fn commits(c: &mut Criterion) {
    let mut group = c.benchmark_group("mls/commit");
    group.sample_size(10);
    for n in SIZES {
        group.bench_with_input(BenchmarkId::new("add", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let (_, mut members, _) = group_of(n);
                    let package = Device::new("newcomer").unwrap().key_package().unwrap();
                    let start = Instant::now();
                    let add = members.add(&[package]).unwrap();
                    members.confirm().unwrap();
                    spent += start.elapsed();
                    black_box(add);
                }
                spent
            });
        });
        group.bench_with_input(BenchmarkId::new("remove", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let (_, mut members, _) = group_of(n.max(2));
                    let start = Instant::now();
                    let remove = members.remove("m1").unwrap();
                    members.confirm().unwrap();
                    spent += start.elapsed();
                    black_box(remove);
                }
                spent
            });
        });
    }
    group.finish();
}

/// The sender and one receiver of a two-member group.
fn pair() -> (Group, Group) {
    let service = DeliveryService::new("ws serve").unwrap();
    let (owner, other) = (Device::new("owner").unwrap(), Device::new("other").unwrap());
    let mut sender = owner
        .create_group("room", &service.external_sender().unwrap())
        .unwrap();
    let add = sender.add(&[other.key_package().unwrap()]).unwrap();
    sender.confirm().unwrap();
    let receiver = other.join(add.welcome.as_ref().unwrap()).unwrap();
    (sender, receiver)
}

fn messages(c: &mut Criterion) {
    let mut group = c.benchmark_group("mls/message");
    for size in [16usize, 1024] {
        let data = vec![7u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        let (mut sender, _) = pair();
        group.bench_with_input(BenchmarkId::new("encrypt", size), &data, |b, data| {
            b.iter(|| black_box(sender.encrypt(data).unwrap()));
        });
        // A pair of its own: the sender above ran far ahead of any receiver.
        let (mut sender, mut receiver) = pair();
        group.bench_with_input(BenchmarkId::new("decrypt", size), &data, |b, data| {
            b.iter_custom(|iters| {
                let sealed: Vec<Vec<u8>> =
                    (0..iters).map(|_| sender.encrypt(data).unwrap()).collect();
                let start = Instant::now();
                for message in &sealed {
                    black_box(receiver.receive(message).unwrap());
                }
                start.elapsed()
            });
        });
        let text = serde_json::Value::String("x".repeat(size));
        group.bench_with_input(
            BenchmarkId::new("plain_publish_payload", size),
            &text,
            |b, text| {
                b.iter(|| black_box(Payload::new(text)));
            },
        );
    }
    group.finish();
}

fn benches() {
    print_sizes();
    let mut criterion = Criterion::default().configure_from_args();
    commits(&mut criterion);
    messages(&mut criterion);
}

criterion_main!(benches);

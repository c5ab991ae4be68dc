//! permessage-deflate throughput: ws-core's `Deflater`/`Inflater` (flate2
//! on the pure-Rust zlib-rs backend) next to miniz_oxide, flate2's other
//! pure-Rust backend, on the same messages in the same run: JSON-like
//! text that compresses about 5:1, per message size.
//!
//! Run: `cargo bench -p ws-benches --bench deflate`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use ws_core::deflate::{Compression, Deflater, Inflater};

const SIZES: [(usize, &str); 4] = [
    (256, "256B"),
    (4 * 1024, "4KiB"),
    (64 * 1024, "64KiB"),
    (1024 * 1024, "1MiB"),
];

/// JSON-ish records with varying numbers: realistic, not degenerate.
fn message(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 64);
    let mut x = 7u32;
    while out.len() < size {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let record = format!(
            r#"{{"type":"event","id":"e-{}","channel":"print","data":{{"temp":{},"ok":true}}}},"#,
            x % 100_000,
            x % 300
        );
        out.extend_from_slice(record.as_bytes());
    }
    out.truncate(size);
    out
}

fn compress(c: &mut Criterion) {
    let mut group = c.benchmark_group("compress");
    for (size, label) in SIZES {
        let data = message(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("zlib-rs", label), &data, |b, data| {
            // No context takeover, so every iteration does the same work.
            let mut deflater = Deflater::new(15, true, Compression::fast());
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                deflater.compress(black_box(data), true, &mut out);
                black_box(out.len())
            });
        });
        group.bench_with_input(BenchmarkId::new("miniz_oxide", label), &data, |b, data| {
            b.iter(|| black_box(miniz_oxide::deflate::compress_to_vec(black_box(data), 1).len()));
        });
    }
    group.finish();
}

fn decompress(c: &mut Criterion) {
    let mut group = c.benchmark_group("decompress");
    for (size, label) in SIZES {
        let data = message(size);
        let mut wire = Vec::new();
        Deflater::new(15, true, Compression::fast()).compress(&data, true, &mut wire);
        let whole = miniz_oxide::deflate::compress_to_vec(&data, 1);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("zlib-rs", label), &wire, |b, wire| {
            let mut inflater = Inflater::new(15, true);
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                inflater
                    .inflate(black_box(wire), true, size, &mut out)
                    .expect("valid");
                black_box(out.len())
            });
        });
        group.bench_with_input(
            BenchmarkId::new("miniz_oxide", label),
            &whole,
            |b, whole| {
                b.iter(|| {
                    let out =
                        miniz_oxide::inflate::decompress_to_vec_with_limit(black_box(whole), size)
                            .expect("valid");
                    black_box(out.len())
                });
            },
        );
    }
    group.finish();
}

mod harness {
    criterion::criterion_group!(benches, super::compress, super::decompress);
}
criterion_main!(harness::benches);

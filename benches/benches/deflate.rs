//! permessage-deflate throughput: ws-core's `Deflater`/`Inflater` (flate2
//! on the pure-Rust zlib-rs backend) next to miniz_oxide, flate2's other
//! pure-Rust backend, on the same messages in the same run: JSON-like
//! text, per message size, each side keeping its state between messages
//! as a connection does (context reset per message, level 1). The sizes
//! each produces are printed before the timings.
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

/// miniz_oxide's raw deflate with its state kept between messages, the
/// way a connection would use it: level 1, a 32 KiB window (the only one
/// its compressor has), a sync flush per message.
struct MinizDeflater {
    state: Box<miniz_oxide::deflate::core::CompressorOxide>,
    out: Vec<u8>,
}

impl MinizDeflater {
    fn new() -> Self {
        use miniz_oxide::deflate::core::{CompressorOxide, create_comp_flags_from_zip_params};
        let flags = create_comp_flags_from_zip_params(1, -15, 0);
        Self {
            state: Box::new(CompressorOxide::new(flags)),
            out: Vec::new(),
        }
    }

    /// One message, context reset first (no context takeover).
    fn compress(&mut self, data: &[u8]) -> usize {
        use miniz_oxide::deflate::core::{TDEFLFlush, compress};
        self.state.reset();
        self.out.clear();
        self.out.resize(data.len() + data.len() / 8 + 64, 0);
        let (_, _, written) = compress(&mut self.state, data, &mut self.out, TDEFLFlush::Sync);
        written
    }
}

/// miniz_oxide's raw inflate with its state kept between messages.
struct MinizInflater {
    state: Box<miniz_oxide::inflate::stream::InflateState>,
    out: Vec<u8>,
}

impl MinizInflater {
    fn new(limit: usize) -> Self {
        use miniz_oxide::DataFormat;
        use miniz_oxide::inflate::stream::InflateState;
        Self {
            state: InflateState::new_boxed(DataFormat::Raw),
            out: vec![0; limit + 1],
        }
    }

    /// One message (the tail appended as permessage-deflate does).
    fn inflate(&mut self, wire: &[u8]) -> usize {
        use miniz_oxide::inflate::stream::inflate;
        use miniz_oxide::{DataFormat, MZFlush};
        self.state.reset(DataFormat::Raw);
        let first = inflate(&mut self.state, wire, &mut self.out, MZFlush::Sync);
        let tail = inflate(
            &mut self.state,
            &[0, 0, 0xff, 0xff],
            &mut self.out[first.bytes_written..],
            MZFlush::Sync,
        );
        first.bytes_written + tail.bytes_written
    }
}

fn compress(c: &mut Criterion) {
    let mut group = c.benchmark_group("compress");
    for (size, label) in SIZES {
        let data = message(size);
        let mut ours = Vec::new();
        Deflater::new(15, true, Compression::fast()).compress(&data, true, &mut ours);
        let theirs = MinizDeflater::new().compress(&data);
        eprintln!(
            "compressed {label}: zlib-rs {} bytes ({:.1}x), miniz_oxide {theirs} bytes ({:.1}x)",
            ours.len(),
            size as f64 / ours.len() as f64,
            size as f64 / theirs as f64
        );
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
            let mut deflater = MinizDeflater::new();
            b.iter(|| black_box(deflater.compress(black_box(data))));
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
        assert_eq!(MinizInflater::new(size).inflate(&wire), size);
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
        group.bench_with_input(BenchmarkId::new("miniz_oxide", label), &wire, |b, wire| {
            let mut inflater = MinizInflater::new(size);
            b.iter(|| black_box(inflater.inflate(black_box(wire))));
        });
    }
    group.finish();
}

mod harness {
    criterion::criterion_group!(benches, super::compress, super::decompress);
}
criterion_main!(harness::benches);

//! The memory each permessage-deflate setting costs per connection, as
//! `DeflateConfig`'s documentation states it (measured: about 370, 260 and
//! 245 KiB for a compressor with a 15-, 12- or 9-bit window; 46 KiB for a
//! decompressor at any window), checked with a counting allocator so the
//! documented figures cannot silently stop being true.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ws_core::deflate::{Compression, Deflater, Inflater};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Tests share the counter: one measures at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

// SAFETY: forwards to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's layout obligations are passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above; `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes still allocated after `make` returns its value (kept alive).
fn retained<T>(make: impl FnOnce() -> T) -> (usize, T) {
    let before = LIVE.load(Ordering::Relaxed);
    let value = make();
    (LIVE.load(Ordering::Relaxed).saturating_sub(before), value)
}

fn message() -> Vec<u8> {
    (0..4096u32)
        .map(|i| b"{\"seq\":1,\"ok\":true}"[(i % 19) as usize])
        .collect()
}

#[test]
fn compressor_memory_per_window() {
    let _one = ONE_AT_A_TIME.lock().unwrap();
    for (bits, max_kib) in [(15u8, 400usize), (12, 285), (9, 270)] {
        let (bytes, deflater) = retained(|| {
            let mut deflater = Deflater::new(bits, false, Compression::fast());
            let mut out = Vec::new();
            deflater.compress(&message(), true, &mut out);
            deflater
        });
        println!("compressor, {bits} bits: {} KiB", bytes / 1024);
        assert!(bytes <= max_kib * 1024, "{bits} bits: {bytes} bytes");
        drop(deflater);
    }
}

#[test]
fn decompressor_memory_per_window() {
    let _one = ONE_AT_A_TIME.lock().unwrap();
    let mut wire = Vec::new();
    Deflater::new(9, false, Compression::fast()).compress(&message(), true, &mut wire);
    for (bits, max_kib) in [(15u8, 50usize), (12, 50), (9, 50)] {
        let (bytes, inflater) = retained(|| {
            let mut inflater = Inflater::new(bits, false);
            let mut out = Vec::with_capacity(8192);
            inflater.inflate(&wire, true, 8192, &mut out).unwrap();
            drop(out);
            inflater
        });
        println!("decompressor, {bits} bits: {} KiB", bytes / 1024);
        assert!(bytes <= max_kib * 1024, "{bits} bits: {bytes} bytes");
        drop(inflater);
    }
}

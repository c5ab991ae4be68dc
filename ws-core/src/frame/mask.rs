//! Payload masking (RFC 6455 §5.3), wide enough to run near memory speed.

use std::mem::MaybeUninit;

use bytes::BytesMut;

/// XORs `data` with `key`, where `data` starts `offset` bytes into the
/// payload (so a payload can be unmasked piecewise as it arrives).
///
/// Works on 32-byte blocks that the compiler turns into vector XORs; on
/// x86-64 CPUs with AVX2 the same code is compiled a second time for AVX2
/// and picked at run time.
#[inline]
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    if data.len() < 64 {
        mask_words(data, key);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the running CPU supports AVX2, as checked just above; the
        // function only differs from `mask_blocks` in the instructions the
        // compiler may use.
        unsafe { mask_blocks_avx2(data, key) };
        return;
    }
    mask_blocks(data, key);
}

/// Appends `src` to `dst` XORed with `key`, where `src` starts `offset`
/// bytes into the payload: copying and masking in one pass over memory,
/// instead of a copy followed by [`apply_mask`] in place.
pub fn extend_masked(dst: &mut BytesMut, src: &[u8], key: [u8; 4], offset: usize) {
    dst.reserve(src.len());
    let len = dst.len();
    copy_masked_dispatch(&mut dst.spare_capacity_mut()[..src.len()], src, key, offset);
    // SAFETY: `copy_masked_dispatch` wrote every one of the first
    // `src.len()` bytes of the spare capacity, which `reserve` made at least
    // that long.
    unsafe { dst.set_len(len + src.len()) };
}

/// [`extend_masked`] into a `Vec`.
pub(crate) fn extend_masked_vec(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], offset: usize) {
    dst.reserve(src.len());
    let len = dst.len();
    copy_masked_dispatch(&mut dst.spare_capacity_mut()[..src.len()], src, key, offset);
    // SAFETY: as in `extend_masked`.
    unsafe { dst.set_len(len + src.len()) };
}

/// Writes `src ^ key` (starting `offset` bytes into the key) into `dst`,
/// which is exactly as long as `src`, with AVX2 where the CPU has it.
fn copy_masked_dispatch(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    #[cfg(target_arch = "x86_64")]
    if src.len() >= 64 && std::is_x86_feature_detected!("avx2") {
        // SAFETY: the running CPU supports AVX2, as checked just above.
        unsafe { copy_masked_avx2(dst, src, key) };
        return;
    }
    copy_masked(dst, src, key);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn copy_masked_avx2(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4]) {
    copy_masked(dst, src, key);
}

/// Writes `src ^ key` into `dst`, which is exactly as long as `src`.
#[inline(always)]
fn copy_masked(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4]) {
    const BLOCK: usize = 32;
    let wide = widen(key);
    let mut src_blocks = src.chunks_exact(BLOCK);
    let mut dst_blocks = dst.chunks_exact_mut(BLOCK);
    for (d, s) in (&mut dst_blocks).zip(&mut src_blocks) {
        for ((d, s), k) in d.iter_mut().zip(s).zip(&wide) {
            d.write(s ^ k);
        }
    }
    let tail = src_blocks.remainder();
    for (i, (d, s)) in dst_blocks.into_remainder().iter_mut().zip(tail).enumerate() {
        d.write(s ^ key[i & 3]);
    }
}

fn widen(key: [u8; 4]) -> [u8; 32] {
    let mut wide = [0u8; 32];
    for (i, byte) in wide.iter_mut().enumerate() {
        *byte = key[i & 3];
    }
    wide
}

/// Four bytes at a time: for short payloads, where setting up wide blocks
/// costs more than it saves.
#[inline(always)]
fn mask_words(data: &mut [u8], key: [u8; 4]) {
    let word = u32::from_ne_bytes(key);
    let mut words = data.chunks_exact_mut(4);
    for chunk in &mut words {
        let masked = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&masked.to_ne_bytes());
    }
    for (byte, k) in words.into_remainder().iter_mut().zip(key) {
        *byte ^= k;
    }
}

#[inline(always)]
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let r = offset & 3;
    [key[r], key[(r + 1) & 3], key[(r + 2) & 3], key[(r + 3) & 3]]
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mask_blocks_avx2(data: &mut [u8], key: [u8; 4]) {
    mask_blocks(data, key);
}

#[inline(always)]
fn mask_blocks(data: &mut [u8], key: [u8; 4]) {
    const BLOCK: usize = 32;
    let wide = widen(key);
    let mut blocks = data.chunks_exact_mut(BLOCK);
    for block in &mut blocks {
        for (byte, k) in block.iter_mut().zip(wide.iter()) {
            *byte ^= k;
        }
    }
    // Every block is a multiple of four bytes long, so the key phase of the
    // tail is the same as at the start.
    for (i, byte) in blocks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte ^= key[(i + offset) & 3];
        }
    }

    #[test]
    fn matches_naive_for_all_lengths_offsets_and_alignments() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let source: Vec<u8> = (0..=255u8)
            .cycle()
            .map(|i| i.wrapping_mul(7).wrapping_add(3))
            .take(600)
            .collect();
        for start in 0..8 {
            for len in [0, 1, 3, 4, 5, 31, 32, 33, 63, 64, 65, 127, 128, 200, 511] {
                for offset in 0..5 {
                    let mut fast = source[start..start + len].to_vec();
                    let mut slow = fast.clone();
                    apply_mask(&mut fast, key, offset);
                    naive(&mut slow, key, offset);
                    assert_eq!(fast, slow, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn extend_masked_matches_copy_then_mask() {
        let key = [0xa1, 0xb2, 0xc3, 0xd4];
        let source: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        for len in [0, 1, 5, 31, 32, 33, 64, 65, 100, 700] {
            for offset in 0..4 {
                let mut fused = BytesMut::from(&b"head"[..]);
                extend_masked(&mut fused, &source[..len], key, offset);
                let mut slow = b"head".to_vec();
                slow.extend_from_slice(&source[..len]);
                naive(&mut slow[4..], key, offset);
                assert_eq!(&fused[..], &slow[..], "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn piecewise_masking_equals_whole() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data.clone();
        let mut at = 0;
        for step in [1, 7, 64, 3, 100, 250, 575] {
            apply_mask(&mut pieces[at..at + step], key, at);
            at += step;
        }
        assert_eq!(at, data.len());
        assert_eq!(pieces, whole);
        // Masking is its own inverse.
        apply_mask(&mut whole, key, 0);
        assert_eq!(whole, data);
    }
}

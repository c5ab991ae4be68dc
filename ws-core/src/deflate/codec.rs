//! The compressor and decompressor of permessage-deflate (RFC 7692
//! section 7.2), on flate2 with the pure-Rust zlib-rs backend.
//!
//! Memory per instance: see
//! [`DeflateConfig`](super::DeflateConfig), which gives the measured
//! figures per window size. With `no_context_takeover` the state is reset
//! after every message but stays allocated; a
//! [`Connection`](crate::Connection) releases it when idle.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::negotiation::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};

/// The bytes a sync flush ends with, which the wire format leaves out.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output the inflater may produce per step beyond what is already kept.
const INFLATE_CHUNK: usize = 16 * 1024;

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InflateError {
    /// The message inflates to more than the limit (close with 1009).
    #[error("the message inflates to more than {limit} bytes")]
    TooBig {
        /// The limit in bytes.
        limit: usize,
    },
    /// Not a valid DEFLATE stream (close with 1007).
    #[error("invalid compressed data")]
    Corrupt,
}

/// Compresses the messages of one direction of a connection.
#[derive(Debug)]
pub struct Deflater {
    inner: Compress,
    no_context_takeover: bool,
    /// The previous piece of this message ended with a sync flush whose
    /// tail was held back: it goes out in front of the next piece, so the
    /// message's last piece ends without it even if that piece adds nothing.
    held_tail: bool,
}

impl Deflater {
    /// A compressor with an LZ77 window of `window_bits` (clamped to 9-15),
    /// resetting its context after every message when `no_context_takeover`.
    pub fn new(window_bits: u8, no_context_takeover: bool, level: Compression) -> Self {
        let bits = window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        Self {
            inner: Compress::new_with_window_bits(level, false, bits),
            no_context_takeover,
            held_tail: false,
        }
    }

    /// Appends the compressed form of `payload` to `out`, as it goes on the
    /// wire (the frame's RSV1 set). With `fin` the message ends here: its
    /// sync-flush tail is removed and, under `no_context_takeover`, the
    /// context reset. Without it, `payload` is one piece of a message sent
    /// in fragments; everything in it can be inflated as soon as it arrives.
    pub fn compress(&mut self, payload: &[u8], fin: bool, out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(payload.len() / 2 + 64);
        if std::mem::take(&mut self.held_tail) {
            out.extend_from_slice(&TAIL);
        }
        let mut input = payload;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.inner.total_in();
            self.inner
                .compress_vec(input, out, FlushCompress::Sync)
                .expect("raw deflate on an in-memory buffer cannot fail");
            let consumed = usize::try_from(self.inner.total_in() - before)
                .expect("consumed no more than the input's length");
            input = &input[consumed..];
            // A sync flush is complete once zlib stops with room to spare.
            if input.is_empty() && out.capacity() > out.len() {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
            self.held_tail = !fin;
        } else if fin && out.len() == start {
            // zlib flushes nothing when nothing came in since its last
            // flush (an empty message after another). The receiver appends
            // the tail to whatever we send, so send the first byte of an
            // empty stored block: with the tail it is that whole block.
            out.push(0x00);
        }
        if fin && self.no_context_takeover {
            self.inner.reset();
        }
    }
}

/// Inflates the messages of one direction of a connection, in bounded
/// steps, never holding more than the limit plus one step of output.
#[derive(Debug)]
pub struct Inflater {
    inner: Decompress,
    window_bits: u8,
    no_context_takeover: bool,
}

impl Inflater {
    /// A decompressor for a peer compressing with at most `window_bits`
    /// (clamped to 9-15); the peer resets its context after every message
    /// when `no_context_takeover`.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        let window_bits = window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        Self {
            inner: Decompress::new_with_window_bits(false, window_bits),
            window_bits,
            no_context_takeover,
        }
    }

    /// Inflates `input`, the next piece of a compressed message, appending
    /// to `out`, which must stay within `limit` bytes (the message so far
    /// counts). With `fin` the message ends here. After an error the
    /// inflater is reset and the connection should close.
    pub fn inflate(
        &mut self,
        input: &[u8],
        fin: bool,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let result = self.feed(input, limit, out).and_then(|()| {
            if fin {
                self.feed(&TAIL, limit, out)
            } else {
                Ok(())
            }
        });
        if result.is_err() || (fin && self.no_context_takeover) {
            self.reset();
        }
        result
    }

    fn reset(&mut self) {
        self.inner = Decompress::new_with_window_bits(false, self.window_bits);
    }

    fn feed(
        &mut self,
        mut input: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        loop {
            let kept = out.len();
            if kept > limit {
                return Err(InflateError::TooBig { limit });
            }
            // One byte past the limit tells "exactly full" from "more".
            // Saturating: `usize::MAX` is a valid limit (no bound at all).
            let room = (limit - kept).saturating_add(1).min(INFLATE_CHUNK);
            // Grow by doubling, but never past the limit: the buffer stays
            // within limit + 1 bytes whatever the input claims.
            if out.capacity() < kept + room {
                let target = out
                    .capacity()
                    .saturating_mul(2)
                    .clamp(kept + room, limit.saturating_add(1));
                out.reserve_exact(target - kept);
            }
            out.resize(kept + room, 0);
            let (in_before, out_before) = (self.inner.total_in(), self.inner.total_out());
            let status = self
                .inner
                .decompress(input, &mut out[kept..], FlushDecompress::Sync);
            let consumed = usize::try_from(self.inner.total_in() - in_before)
                .expect("consumed no more than the input's length");
            let produced = usize::try_from(self.inner.total_out() - out_before)
                .expect("produced no more than the room given");
            out.truncate(kept + produced);
            input = &input[consumed..];
            match status {
                Err(_) => return Err(InflateError::Corrupt),
                // A final block ends this stream; whatever follows starts
                // a new one.
                Ok(Status::StreamEnd) => self.reset(),
                Ok(Status::Ok | Status::BufError) => {}
            }
            if out.len() > limit {
                return Err(InflateError::TooBig { limit });
            }
            let filled = produced == room;
            if input.is_empty() && !filled {
                return Ok(());
            }
            if consumed == 0 && produced == 0 && !matches!(status, Ok(Status::StreamEnd)) {
                return Err(InflateError::Corrupt);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"the quick brown fox "[i % 20]).collect()
    }

    fn round_trip(bits: u8, reset: bool, payloads: &[Vec<u8>]) {
        let mut deflater = Deflater::new(bits, reset, Compression::fast());
        let mut inflater = Inflater::new(bits, reset);
        for payload in payloads {
            let mut wire = Vec::new();
            deflater.compress(payload, true, &mut wire);
            assert!(!wire.ends_with(&TAIL));
            let mut back = Vec::new();
            inflater
                .inflate(&wire, true, payload.len(), &mut back)
                .unwrap();
            assert_eq!(&back, payload, "bits {bits}, reset {reset}");
        }
    }

    #[test]
    fn round_trips_every_window_and_mode() {
        let payloads = vec![
            Vec::new(),
            b"a".to_vec(),
            text(1000),
            text(100_000),
            (0..70_000u32)
                .map(|i| i.wrapping_mul(2_654_435_761).to_be_bytes()[1])
                .collect(),
        ];
        for bits in MIN_WINDOW_BITS..=MAX_WINDOW_BITS {
            round_trip(bits, false, &payloads);
            round_trip(bits, true, &payloads);
        }
    }

    #[test]
    fn context_takeover_shrinks_repeats_and_its_absence_does_not() {
        // Little repetition inside the message, all of it across messages.
        let mut x = 1u32;
        let message: Vec<u8> = (0..2000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                b'a' + x.to_be_bytes()[1] % 26
            })
            .collect();
        let sizes = |reset| {
            let mut deflater = Deflater::new(15, reset, Compression::default());
            let mut first = Vec::new();
            deflater.compress(&message, true, &mut first);
            let mut second = Vec::new();
            deflater.compress(&message, true, &mut second);
            (first.len(), second.len())
        };
        let (first, second) = sizes(false);
        assert!(second < first / 2, "{first} then {second}");
        let (first, second) = sizes(true);
        assert_eq!(first, second);
    }

    #[test]
    fn empty_messages_and_pieces_keep_the_stream_in_step() {
        // zlib emits nothing for a flush with no new input, which would
        // leave the receiver's appended tail dangling mid-block.
        for reset in [false, true] {
            let mut deflater = Deflater::new(15, reset, Compression::fast());
            let mut inflater = Inflater::new(15, reset);
            let messages: [&[&[u8]]; 6] = [
                &[b"first"],
                &[b""],
                &[b"", b""],
                &[b"abc", b"", b""],
                &[b"", b"", b"xyz"],
                &[b"last"],
            ];
            for pieces in messages {
                let mut back = Vec::new();
                for (i, piece) in pieces.iter().enumerate() {
                    let fin = i + 1 == pieces.len();
                    let mut wire = Vec::new();
                    deflater.compress(piece, fin, &mut wire);
                    inflater.inflate(&wire, fin, 1000, &mut back).unwrap();
                }
                assert_eq!(back, pieces.concat(), "{pieces:?}, reset {reset}");
            }
        }
    }

    #[test]
    fn pieces_inflate_as_they_arrive() {
        let mut deflater = Deflater::new(15, false, Compression::fast());
        let mut inflater = Inflater::new(15, false);
        let mut back = Vec::new();
        for piece in [&b"one "[..], b"two ", b"three"] {
            let mut wire = Vec::new();
            deflater.compress(piece, false, &mut wire);
            let before = back.len();
            inflater.inflate(&wire, false, 1000, &mut back).unwrap();
            assert_eq!(&back[before..], piece);
        }
        let mut wire = Vec::new();
        deflater.compress(b"", true, &mut wire);
        inflater.inflate(&wire, true, 1000, &mut back).unwrap();
        assert_eq!(back, b"one two three");
    }

    #[test]
    fn fragments_inflate_like_the_whole() {
        let message = text(50_000);
        let mut wire = Vec::new();
        Deflater::new(15, false, Compression::fast()).compress(&message, true, &mut wire);
        for piece in [1, 7, 100, 4096] {
            let mut inflater = Inflater::new(15, false);
            let mut back = Vec::new();
            let chunks: Vec<_> = wire.chunks(piece).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                let fin = i + 1 == chunks.len();
                inflater
                    .inflate(chunk, fin, message.len(), &mut back)
                    .unwrap();
            }
            assert_eq!(back, message, "pieces of {piece}");
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        // 16 MiB of zeros is a few KiB compressed.
        let bomb = vec![0u8; 16 << 20];
        let mut wire = Vec::new();
        Deflater::new(15, false, Compression::best()).compress(&bomb, true, &mut wire);
        assert!(wire.len() < 100_000);
        let limit = 1 << 20;
        let mut inflater = Inflater::new(15, false);
        let mut out = Vec::new();
        assert_eq!(
            inflater.inflate(&wire, true, limit, &mut out),
            Err(InflateError::TooBig { limit })
        );
        assert!(out.len() <= limit + 1);
        assert!(
            out.capacity() <= limit + INFLATE_CHUNK + 1,
            "{}",
            out.capacity()
        );
        // Spread over fragments, the limit holds for the whole message.
        let mut inflater = Inflater::new(15, false);
        let mut out = Vec::new();
        let mut result = Ok(());
        for chunk in wire.chunks(64) {
            result = inflater.inflate(chunk, false, limit, &mut out);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(InflateError::TooBig { limit }));
        assert!(out.len() <= limit + 1);
    }

    // `usize::MAX` is how a caller says "no bound": no arithmetic on it may
    // overflow (a panic in debug builds, every message corrupt in release).
    #[test]
    fn an_unbounded_limit_inflates_normally() {
        let text = text(50_000);
        let mut deflater = Deflater::new(15, false, Compression::fast());
        let mut wire = Vec::new();
        deflater.compress(&text, true, &mut wire);
        let mut inflater = Inflater::new(15, false);
        let mut out = Vec::new();
        inflater.inflate(&wire, true, usize::MAX, &mut out).unwrap();
        assert_eq!(out, text);
    }

    #[test]
    fn exactly_the_limit_is_allowed() {
        let message = text(10_000);
        let mut wire = Vec::new();
        Deflater::new(15, false, Compression::fast()).compress(&message, true, &mut wire);
        let mut out = Vec::new();
        Inflater::new(15, false)
            .inflate(&wire, true, 10_000, &mut out)
            .unwrap();
        assert_eq!(out.len(), 10_000);
        let mut out = Vec::new();
        assert_eq!(
            Inflater::new(15, false).inflate(&wire, true, 9_999, &mut out),
            Err(InflateError::TooBig { limit: 9_999 })
        );
    }

    #[test]
    fn corrupt_input_is_an_error_and_the_inflater_recovers() {
        let mut inflater = Inflater::new(15, false);
        let mut out = Vec::new();
        // Block type 3 is reserved.
        assert_eq!(
            inflater.inflate(&[0xff, 0xff, 0xff], true, 1000, &mut out),
            Err(InflateError::Corrupt)
        );
        let mut wire = Vec::new();
        Deflater::new(15, false, Compression::fast()).compress(b"fine", true, &mut wire);
        let mut out = Vec::new();
        inflater.inflate(&wire, true, 1000, &mut out).unwrap();
        assert_eq!(out, b"fine");
    }

    #[test]
    fn a_final_block_ends_the_stream_cleanly() {
        // A sender may end a message with BFINAL set: a whole raw stream.
        let mut raw = Compress::new(Compression::fast(), false);
        let mut wire = Vec::with_capacity(1024);
        raw.compress_vec(b"last words", &mut wire, FlushCompress::Finish)
            .unwrap();
        let mut inflater = Inflater::new(15, false);
        let mut out = Vec::new();
        inflater.inflate(&wire, true, 1000, &mut out).unwrap();
        assert_eq!(out, b"last words");
    }
}

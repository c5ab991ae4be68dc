//! The frame decoder: whole frames out of arbitrarily chunked bytes.

use std::ops::Range;

use bytes::{Buf, BytesMut};

use super::header::{FrameHeader, HeaderRules};
use super::mask::{apply_mask, extend_masked};
use crate::error::ProtocolError;

/// Payloads at least this long are unmasked while being copied in by
/// [`FrameDecoder::append`]; shorter ones are unmasked in place later.
const FUSE_MIN: u64 = 256;

/// A complete, unmasked frame split off the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame's header (its `mask` is the key that was removed).
    pub header: FrameHeader,
    /// The unmasked payload.
    pub payload: BytesMut,
}

/// One step of decoding; see [`FrameDecoder::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing more can be decoded until more bytes arrive.
    NeedMore,
    /// The header of a new frame was parsed. Its payload may not be here yet.
    Header(FrameHeader),
    /// Payload bytes of the current, still incomplete, frame arrived and are
    /// unmasked: `buf[range]`. They stay in the buffer until the frame is
    /// complete.
    Payload(Range<usize>),
    /// The current frame is complete and unmasked at `buf[payload]`; the
    /// bytes at `buf[fresh]` (the end of the payload) were not reported by a
    /// `Payload` step. Take the payload with
    /// [`FrameDecoder::take_payload`], or read it in place and let the next
    /// `step` discard the frame.
    Complete {
        /// The frame's header.
        header: FrameHeader,
        /// Where the payload sits in the buffer.
        payload: Range<usize>,
        /// The part of `payload` not reported before.
        fresh: Range<usize>,
    },
}

#[derive(Debug, Clone)]
struct InProgress {
    header: FrameHeader,
    header_len: usize,
    payload_len: usize,
    /// Payload bytes unmasked and reported so far.
    reported: usize,
    /// `Complete` was returned; the frame leaves the buffer on the next call.
    complete: bool,
}

/// Decodes frames from a buffer the caller appends to.
///
/// A frame is only removed from the buffer once all of it is there, so
/// chunking never loses or misreads bytes; between calls the decoder keeps
/// the parsed header and how much of the payload it has unmasked. Payload
/// is unmasked as it arrives (each byte once), which lets a caller inspect a
/// partial frame, for instance to fail fast on bad UTF-8. Nothing is
/// allocated from a declared length: the buffer only grows by what the
/// caller appends.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    rules: HeaderRules,
    current: Option<InProgress>,
    /// Buffer offset below which [`append`](Self::append) has already
    /// unmasked every payload byte.
    unmasked_upto: usize,
}

/// Where the next appended byte lands, when the decoder knows.
enum Position {
    /// At the start of a frame header.
    Boundary,
    /// Inside a payload: bytes left, mask key, bytes of the payload before.
    Payload(u64, Option<[u8; 4]>, usize),
}

impl FrameDecoder {
    /// A decoder enforcing `rules`.
    pub fn new(rules: HeaderRules) -> Self {
        Self {
            rules,
            current: None,
            unmasked_upto: 0,
        }
    }

    /// Changes which reserved bits data frames may carry (RSV1 once
    /// permessage-deflate is negotiated).
    pub fn set_allowed_rsv(&mut self, rsv: u8) {
        self.rules.allowed_rsv = rsv;
    }

    /// The header of the frame in progress, if its header has been parsed.
    pub fn current(&self) -> Option<&FrameHeader> {
        self.current
            .as_ref()
            .filter(|c| !c.complete)
            .map(|c| &c.header)
    }

    /// Forgets the frame in progress; for when the caller discards its
    /// buffer.
    pub fn reset(&mut self) {
        self.current = None;
        self.unmasked_upto = 0;
    }

    /// Bytes of `buf` not yet reported as part of a complete frame.
    pub fn undecoded(&self, buf: &[u8]) -> usize {
        match &self.current {
            Some(c) if c.complete => buf.len().saturating_sub(c.header_len + c.payload_len),
            _ => buf.len(),
        }
    }

    /// Bytes still to arrive before the frame in progress is complete, once
    /// its header has been parsed; 0 otherwise.
    pub fn missing(&self, buf: &[u8]) -> usize {
        match &self.current {
            Some(c) if !c.complete => (c.header_len + c.payload_len).saturating_sub(buf.len()),
            _ => 0,
        }
    }

    /// The opcode nibble of the next frame to be reported, if its first
    /// byte is in `buf`: the frame in progress, or the one after a frame
    /// just completed.
    pub fn next_opcode(&self, buf: &[u8]) -> Option<u8> {
        match &self.current {
            Some(c) if !c.complete => Some(c.header.opcode.as_u8()),
            Some(c) => buf.get(c.header_len + c.payload_len).map(|b| b & 0x0F),
            None => buf.first().map(|b| b & 0x0F),
        }
    }

    /// Appends `data` to `buf`.
    ///
    /// Equivalent to `buf.extend_from_slice(data)`, but when the decoder has
    /// caught up with `buf` (every frame before the end of `buf` was stepped
    /// through), large payloads are unmasked while they are copied: one pass
    /// over memory instead of two.
    pub fn append(&mut self, buf: &mut BytesMut, mut data: &[u8]) {
        let mut position = match &self.current {
            None if buf.is_empty() => Position::Boundary,
            Some(c) if !c.complete && buf.len() == c.header_len + c.reported => Position::Payload(
                (c.payload_len - c.reported) as u64,
                c.header.mask,
                c.reported,
            ),
            _ => {
                buf.extend_from_slice(data);
                return;
            }
        };
        while !data.is_empty() {
            match position {
                Position::Payload(remaining, key, offset) => {
                    let n = data
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    match key {
                        Some(key) => extend_masked(buf, &data[..n], key, offset),
                        None => buf.extend_from_slice(&data[..n]),
                    }
                    self.unmasked_upto = buf.len();
                    data = &data[n..];
                    position = if remaining == n as u64 {
                        Position::Boundary
                    } else {
                        Position::Payload(remaining - n as u64, key, offset + n)
                    };
                }
                Position::Boundary => {
                    // Only the framing matters here; the rules are enforced
                    // when the frame is stepped through.
                    let lenient = HeaderRules {
                        expect_masked: false,
                        expect_unmasked: false,
                        max_payload: usize::MAX,
                        allowed_rsv: 0b111,
                        reject_non_minimal: false,
                    };
                    match FrameHeader::parse(data, &lenient) {
                        Ok(Some((header, header_len))) if header.payload_len >= FUSE_MIN => {
                            buf.extend_from_slice(&data[..header_len]);
                            data = &data[header_len..];
                            position = Position::Payload(header.payload_len, header.mask, 0);
                        }
                        _ => break,
                    }
                }
            }
        }
        buf.extend_from_slice(data);
    }

    /// Advances decoding by one step. Call until [`Step::NeedMore`].
    ///
    /// For each frame the sequence is `Header`, zero or more `Payload`, then
    /// `Complete`. An error leaves the decoder unusable: the connection must
    /// be failed.
    #[inline]
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        if self.current.as_ref().is_some_and(|c| c.complete) {
            self.discard(buf);
        }
        let Some(current) = &mut self.current else {
            let Some((header, header_len)) = FrameHeader::parse(buf, &self.rules)? else {
                return Ok(Step::NeedMore);
            };
            // The parser bounded the length by `max_payload`, a usize.
            let payload_len =
                usize::try_from(header.payload_len).map_err(|_| ProtocolError::FrameTooLarge {
                    len: header.payload_len,
                    max: self.rules.max_payload,
                })?;
            self.current = Some(InProgress {
                header,
                header_len,
                payload_len,
                reported: 0,
                complete: false,
            });
            return Ok(Step::Header(header));
        };

        let start = current.header_len;
        let available = (buf.len() - start).min(current.payload_len);
        let fresh = start + current.reported..start + available;
        if let Some(key) = current.header.mask {
            let from = fresh.start.max(self.unmasked_upto).min(fresh.end);
            apply_mask(&mut buf[from..fresh.end], key, from - start);
        }
        current.reported = available;
        if available < current.payload_len {
            return Ok(if fresh.is_empty() {
                Step::NeedMore
            } else {
                Step::Payload(fresh)
            });
        }
        current.complete = true;
        Ok(Step::Complete {
            header: current.header,
            payload: start..start + current.payload_len,
            fresh,
        })
    }

    /// After [`Step::Complete`]: removes the frame from the buffer and
    /// returns its payload without copying.
    ///
    /// # Panics
    ///
    /// If the last step was not `Complete`.
    pub fn take_payload(&mut self, buf: &mut BytesMut) -> BytesMut {
        let current = self
            .current
            .take()
            .expect("take_payload after Step::Complete");
        assert!(current.complete, "take_payload after Step::Complete");
        buf.advance(current.header_len);
        self.unmasked_upto = self
            .unmasked_upto
            .saturating_sub(current.header_len + current.payload_len);
        buf.split_to(current.payload_len)
    }

    /// After [`Step::Complete`]: removes the frame from the buffer, for a
    /// caller that copied its payload out. (Otherwise the next step does
    /// it.)
    pub fn discard_complete(&mut self, buf: &mut BytesMut) {
        if self.current.as_ref().is_some_and(|c| c.complete) {
            self.discard(buf);
        }
    }

    fn discard(&mut self, buf: &mut BytesMut) {
        if let Some(current) = self.current.take() {
            let len = current.header_len + current.payload_len;
            buf.advance(len);
            self.unmasked_upto = self.unmasked_upto.saturating_sub(len);
        }
    }

    /// Steps until a whole frame is decoded or more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        loop {
            match self.step(buf)? {
                Step::NeedMore => return Ok(None),
                Step::Complete { header, .. } => {
                    let payload = self.take_payload(buf);
                    return Ok(Some(Frame { header, payload }));
                }
                Step::Header(_) | Step::Payload(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode::encode_frame;
    use crate::frame::header::OpCode;

    fn server_rules() -> HeaderRules {
        HeaderRules {
            expect_masked: true,
            expect_unmasked: false,
            max_payload: 1 << 20,
            allowed_rsv: 0,
            reject_non_minimal: false,
        }
    }

    fn sample_wire() -> BytesMut {
        let mut wire = BytesMut::new();
        encode_frame(
            &mut wire,
            OpCode::Text,
            true,
            0,
            b"hello world",
            Some([1, 2, 3, 4]),
        );
        encode_frame(&mut wire, OpCode::Ping, true, 0, b"", Some([5, 6, 7, 8]));
        let big: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        encode_frame(
            &mut wire,
            OpCode::Binary,
            false,
            0,
            &big,
            Some([9, 10, 11, 12]),
        );
        encode_frame(
            &mut wire,
            OpCode::Continuation,
            true,
            0,
            &big[..300],
            Some([13, 14, 15, 16]),
        );
        wire
    }

    fn check_frames(frames: &[Frame]) {
        let big: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        assert_eq!(frames.len(), 4);
        assert_eq!(&frames[0].payload[..], b"hello world");
        assert_eq!(frames[1].header.opcode, OpCode::Ping);
        assert_eq!(&frames[2].payload[..], &big[..]);
        assert_eq!(&frames[3].payload[..], &big[..300]);
    }

    #[test]
    fn decodes_under_every_split_point_and_leaves_following_bytes() {
        let wire = sample_wire().freeze();
        for split in 0..=wire.len() {
            let mut decoder = FrameDecoder::new(server_rules());
            let mut buf = BytesMut::from(&wire[..split]);
            let mut frames = Vec::new();
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
            buf.extend_from_slice(&wire[split..]);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
            check_frames(&frames);
            assert!(buf.is_empty());
        }
    }

    // `append` unmasks large payloads while copying; whatever the chunking
    // and however stepping interleaves with appending, each byte is unmasked
    // exactly once.
    #[test]
    fn append_gives_the_same_frames_under_any_chunking() {
        let wire = sample_wire().freeze();
        for chunk in [1, 2, 3, 7, 64, 255, 256, 257, 1000, 4096] {
            for drain_between in [true, false] {
                let mut decoder = FrameDecoder::new(server_rules());
                let mut buf = BytesMut::new();
                let mut frames = Vec::new();
                for piece in wire.chunks(chunk) {
                    decoder.append(&mut buf, piece);
                    if drain_between {
                        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                            frames.push(frame);
                        }
                    }
                }
                while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                    frames.push(frame);
                }
                check_frames(&frames);
            }
        }
    }

    #[test]
    fn payload_steps_report_each_byte_once_unmasked() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let mut wire = BytesMut::new();
        encode_frame(
            &mut wire,
            OpCode::Binary,
            true,
            0,
            &payload,
            Some([9, 8, 7, 6]),
        );
        for use_append in [false, true] {
            let mut decoder = FrameDecoder::new(server_rules());
            let mut buf = BytesMut::new();
            let mut seen = Vec::new();
            let mut frame = None;
            for chunk in wire.chunks(17) {
                if use_append {
                    decoder.append(&mut buf, chunk);
                } else {
                    buf.extend_from_slice(chunk);
                }
                loop {
                    match decoder.step(&mut buf).unwrap() {
                        Step::NeedMore => break,
                        Step::Header(h) => assert_eq!(h.payload_len, 300),
                        Step::Payload(range) => seen.extend_from_slice(&buf[range]),
                        Step::Complete { fresh, .. } => {
                            seen.extend_from_slice(&buf[fresh]);
                            frame = Some(decoder.take_payload(&mut buf));
                        }
                    }
                }
            }
            assert_eq!(seen, payload);
            assert_eq!(&frame.unwrap()[..], &payload[..]);
        }
    }

    #[test]
    fn untaken_frames_are_discarded_by_the_next_step() {
        let mut wire = BytesMut::new();
        encode_frame(&mut wire, OpCode::Text, true, 0, b"one", Some([1, 1, 1, 1]));
        encode_frame(&mut wire, OpCode::Text, true, 0, b"two", Some([2, 2, 2, 2]));
        let mut decoder = FrameDecoder::new(server_rules());
        let mut seen = Vec::new();
        loop {
            match decoder.step(&mut wire).unwrap() {
                Step::NeedMore => break,
                Step::Complete { payload, .. } => seen.push(wire[payload].to_vec()),
                _ => {}
            }
        }
        assert_eq!(seen, [b"one".to_vec(), b"two".to_vec()]);
        assert!(wire.is_empty());
    }

    // ROBUSTNESS 13: a huge declared length allocates nothing and fails from
    // the header; a legal but large one only grows with what arrives.
    #[test]
    fn declared_length_never_allocates() {
        let mut decoder = FrameDecoder::new(server_rules());
        let mut buf = BytesMut::from(&[0x82u8, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0][..]);
        assert_eq!(
            decoder.step(&mut buf),
            Err(ProtocolError::FrameTooLarge {
                len: 1 << 32,
                max: 1 << 20
            })
        );
        let mut decoder = FrameDecoder::new(server_rules());
        let mut buf = BytesMut::with_capacity(16);
        decoder.append(
            &mut buf,
            &[0x82, 0xFF, 0, 0, 0, 0, 0, 0x0F, 0, 0, 1, 2, 3, 4],
        );
        assert!(matches!(decoder.step(&mut buf), Ok(Step::Header(_))));
        assert_eq!(decoder.step(&mut buf), Ok(Step::NeedMore));
        assert!(buf.capacity() < 64, "capacity grew to {}", buf.capacity());
    }
}

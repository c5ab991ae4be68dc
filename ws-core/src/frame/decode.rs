//! The frame decoder: whole frames out of arbitrarily chunked bytes.

use std::ops::Range;

use bytes::{Buf, BytesMut};

use super::header::{FrameHeader, HeaderRules};
use super::mask::apply_mask;
use crate::error::ProtocolError;

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
    /// Payload bytes of the current frame arrived and were unmasked in place:
    /// `buf[range]`. They stay in the buffer until the frame is complete.
    Payload(Range<usize>),
    /// The current frame is complete and was split off the front of the
    /// buffer.
    Frame(Frame),
}

#[derive(Debug, Clone)]
struct InProgress {
    header: FrameHeader,
    header_len: usize,
    payload_len: usize,
    unmasked: usize,
}

/// Decodes frames from a buffer the caller appends to.
///
/// A frame is only removed from the buffer once all of it is there, so
/// chunking never loses or misreads bytes; what the decoder remembers between
/// calls is the parsed header and how much of the payload it has unmasked.
/// Payload is unmasked as it arrives (each byte once), which lets a caller
/// inspect a partial frame, for instance to fail fast on bad UTF-8. Nothing
/// is allocated from a declared length: the buffer only grows by what the
/// caller appends.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    rules: HeaderRules,
    current: Option<InProgress>,
}

impl FrameDecoder {
    /// A decoder enforcing `rules`.
    pub fn new(rules: HeaderRules) -> Self {
        Self {
            rules,
            current: None,
        }
    }

    /// The header of the frame in progress, if its header has been parsed.
    pub fn current(&self) -> Option<&FrameHeader> {
        self.current.as_ref().map(|c| &c.header)
    }

    /// Bytes the buffer must still receive to complete the frame in
    /// progress, or `None` while no header has been parsed.
    pub fn bytes_needed(&self, buffered: usize) -> Option<usize> {
        self.current
            .as_ref()
            .map(|c| (c.header_len + c.payload_len).saturating_sub(buffered))
    }

    /// Advances decoding by one step. Call until [`Step::NeedMore`].
    ///
    /// For each frame the sequence is `Header`, zero or more `Payload`, then
    /// `Frame`. An error leaves the decoder unusable: the connection must be
    /// failed.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
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
                unmasked: 0,
            });
            return Ok(Step::Header(header));
        };

        let available = (buf.len() - current.header_len).min(current.payload_len);
        if available > current.unmasked {
            let range = current.header_len + current.unmasked..current.header_len + available;
            if let Some(key) = current.header.mask {
                apply_mask(&mut buf[range.clone()], key, current.unmasked);
            }
            current.unmasked = available;
            return Ok(Step::Payload(range));
        }
        if current.unmasked < current.payload_len {
            return Ok(Step::NeedMore);
        }
        let InProgress {
            header,
            header_len,
            payload_len,
            ..
        } = self.current.take().expect("checked above");
        buf.advance(header_len);
        let payload = buf.split_to(payload_len);
        Ok(Step::Frame(Frame { header, payload }))
    }

    /// Steps until a whole frame is decoded or more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        loop {
            match self.step(buf)? {
                Step::NeedMore => return Ok(None),
                Step::Frame(frame) => return Ok(Some(frame)),
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

    #[test]
    fn decodes_under_every_split_point_and_leaves_following_bytes() {
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
        let wire = wire.freeze();
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
            assert_eq!(frames.len(), 2, "split {split}");
            assert_eq!(&frames[0].payload[..], b"hello world");
            assert_eq!(frames[1].header.opcode, OpCode::Ping);
            assert!(buf.is_empty());
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
        let mut decoder = FrameDecoder::new(server_rules());
        let mut buf = BytesMut::new();
        let mut seen = Vec::new();
        let mut frame = None;
        for chunk in wire.chunks(17) {
            buf.extend_from_slice(chunk);
            loop {
                match decoder.step(&mut buf).unwrap() {
                    Step::NeedMore => break,
                    Step::Header(h) => assert_eq!(h.payload_len, 300),
                    Step::Payload(range) => seen.extend_from_slice(&buf[range]),
                    Step::Frame(f) => frame = Some(f),
                }
            }
        }
        assert_eq!(seen, payload);
        assert_eq!(&frame.unwrap().payload[..], &payload[..]);
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
        buf.extend_from_slice(&[0x82, 0xFF, 0, 0, 0, 0, 0, 0x0F, 0, 0, 1, 2, 3, 4]);
        assert!(matches!(decoder.step(&mut buf), Ok(Step::Header(_))));
        assert_eq!(decoder.step(&mut buf), Ok(Step::NeedMore));
        assert!(buf.capacity() < 64, "capacity grew to {}", buf.capacity());
        assert_eq!(decoder.bytes_needed(buf.len()), Some(0x0F_0000));
    }
}

//! Frame headers: opcodes, parsing with every RFC 6455 §5.2 rule checked as
//! soon as the bytes that carry it arrive, and minimal encoding.

use crate::error::ProtocolError;

/// Longest possible header: 2 bytes, 8 bytes of length, 4 bytes of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// Largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// RSV1, the bit permessage-deflate uses.
pub const RSV1: u8 = 0b100;

/// A frame opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: first frame of a text message.
    Text,
    /// 0x2: first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Decodes the low nibble of the first header byte; `None` for the
    /// reserved opcodes 3-7 and 11-15.
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The wire value.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    pub const fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last frame of its message.
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (RSV1 = `0b100`).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on frames sent by clients.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// What the header parser enforces beyond RFC 6455's fixed rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRules {
    /// Frames must be masked (we are a server).
    pub expect_masked: bool,
    /// Frames must be unmasked (we are a client).
    pub expect_unmasked: bool,
    /// Largest payload accepted.
    pub max_payload: usize,
    /// RSV bits a negotiated extension allows on the first frame of a data
    /// message; RSV bits anywhere else are always an error.
    pub allowed_rsv: u8,
    /// Reject non-minimal length encodings.
    pub reject_non_minimal: bool,
}

impl FrameHeader {
    /// Parses a header at the start of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed; nothing is consumed in
    /// any case. Each rule is checked as soon as its bytes are present, so a
    /// reserved opcode fails on the first byte and an oversized length fails
    /// before any payload arrives.
    #[inline]
    pub fn parse(buf: &[u8], rules: &HeaderRules) -> Result<Option<(Self, usize)>, ProtocolError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0b111;
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0F))?;
        let rsv_allowed = match opcode {
            OpCode::Text | OpCode::Binary => rules.allowed_rsv,
            _ => 0,
        };
        if rsv & !rsv_allowed != 0 {
            return Err(ProtocolError::ReservedBits(rsv));
        }
        if opcode.is_control() && !fin {
            return Err(ProtocolError::FragmentedControlFrame);
        }

        let Some(&b1) = buf.get(1) else {
            return Ok(None);
        };
        let masked = b1 & 0x80 != 0;
        if masked && rules.expect_unmasked {
            return Err(ProtocolError::MaskedFrame);
        }
        if !masked && rules.expect_masked {
            return Err(ProtocolError::UnmaskedFrame);
        }
        let len7 = b1 & 0x7F;
        if opcode.is_control() && usize::from(len7) > MAX_CONTROL_PAYLOAD {
            // A 126/127 marker on a control frame; the true length does not
            // matter, it is too large either way.
            return Err(ProtocolError::ControlFrameTooLarge(u64::from(len7)));
        }

        let (payload_len, mut pos) = match len7 {
            126 => {
                let Some(bytes) = buf.get(2..4) else {
                    return Ok(None);
                };
                let len = u64::from(u16::from_be_bytes([bytes[0], bytes[1]]));
                if rules.reject_non_minimal && len < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 4)
            }
            127 => {
                let Some(&msb) = buf.get(2) else {
                    return Ok(None);
                };
                if msb & 0x80 != 0 {
                    return Err(ProtocolError::InvalidPayloadLength);
                }
                let Some(bytes) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut raw = [0; 8];
                raw.copy_from_slice(bytes);
                let len = u64::from_be_bytes(raw);
                if rules.reject_non_minimal && len <= 0xFFFF {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 10)
            }
            small => (u64::from(small), 2),
        };
        if payload_len > rules.max_payload as u64 {
            return Err(ProtocolError::FrameTooLarge {
                len: payload_len,
                max: rules.max_payload,
            });
        }

        let mask = if masked {
            let Some(key) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some([key[0], key[1], key[2], key[3]])
        } else {
            None
        };
        Ok(Some((
            Self {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            },
            pos,
        )))
    }

    /// Writes this header with the minimal length encoding and returns the
    /// number of bytes written.
    #[allow(clippy::cast_possible_truncation)] // each cast is range-checked by its match arm
    pub fn encode(&self, dst: &mut [u8; MAX_HEADER_LEN]) -> usize {
        dst[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0b111) << 4) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut pos = match self.payload_len {
            len @ 0..=125 => {
                dst[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xFFFF => {
                dst[1] = mask_bit | 126;
                dst[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                dst[1] = mask_bit | 127;
                dst[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            dst[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> HeaderRules {
        HeaderRules {
            expect_masked: false,
            expect_unmasked: false,
            max_payload: usize::MAX,
            allowed_rsv: 0,
            reject_non_minimal: false,
        }
    }

    fn encoded(header: FrameHeader) -> Vec<u8> {
        let mut buf = [0; MAX_HEADER_LEN];
        let n = header.encode(&mut buf);
        buf[..n].to_vec()
    }

    fn header(opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask,
            payload_len: len,
        }
    }

    #[test]
    fn encode_uses_minimal_lengths_and_parse_round_trips() {
        for (len, header_len) in [
            (0u64, 2usize),
            (125, 2),
            (126, 4),
            (0xFFFF, 4),
            (0x1_0000, 10),
            (u64::MAX >> 1, 10),
        ] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = header(OpCode::Binary, len, mask);
                let bytes = encoded(h);
                let expected = header_len + if mask.is_some() { 4 } else { 0 };
                assert_eq!(bytes.len(), expected, "len {len}");
                let mut strict = rules();
                strict.reject_non_minimal = true;
                assert_eq!(FrameHeader::parse(&bytes, &strict), Ok(Some((h, expected))));
            }
        }
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        let bytes = encoded(header(OpCode::Text, 70_000, Some([9, 9, 9, 9])));
        for end in 0..bytes.len() {
            assert_eq!(FrameHeader::parse(&bytes[..end], &rules()), Ok(None));
        }
    }

    // ROBUSTNESS 11: 64-bit length with the MSB set fails before the other
    // seven length bytes arrive.
    #[test]
    fn msb_of_64_bit_length_is_rejected_immediately() {
        assert_eq!(
            FrameHeader::parse(&[0x82, 127, 0x80], &rules()),
            Err(ProtocolError::InvalidPayloadLength)
        );
        assert_eq!(
            FrameHeader::parse(
                &[0x82, 127, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                &rules()
            ),
            Err(ProtocolError::InvalidPayloadLength)
        );
    }

    // ROBUSTNESS 13: declared length above the limit fails from the header.
    #[test]
    fn length_above_limit_fails_from_header() {
        let mut r = rules();
        r.max_payload = 1000;
        assert_eq!(
            FrameHeader::parse(&[0x82, 126, 0x03, 0xE9], &r),
            Err(ProtocolError::FrameTooLarge {
                len: 1001,
                max: 1000
            })
        );
        assert!(
            FrameHeader::parse(&[0x82, 126, 0x03, 0xE8], &r)
                .unwrap()
                .is_some()
        );
    }

    // ROBUSTNESS 14: reserved opcodes fail on the first byte, whatever the length.
    #[test]
    fn reserved_opcodes_fail_on_first_byte() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op], &rules()),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
    }

    // ROBUSTNESS 15: RSV bits without an extension; RSV1 only on data frames
    // even when an extension allows it.
    #[test]
    fn reserved_bits() {
        for rsv in 1u8..8 {
            assert_eq!(
                FrameHeader::parse(&[0x81 | (rsv << 4)], &rules()),
                Err(ProtocolError::ReservedBits(rsv))
            );
        }
        let mut r = rules();
        r.allowed_rsv = RSV1;
        assert!(FrameHeader::parse(&[0xC1, 0], &r).unwrap().is_some());
        assert_eq!(
            FrameHeader::parse(&[0xC0], &r),
            Err(ProtocolError::ReservedBits(RSV1))
        );
        assert_eq!(
            FrameHeader::parse(&[0xC9], &r),
            Err(ProtocolError::ReservedBits(RSV1))
        );
        assert_eq!(
            FrameHeader::parse(&[0xE1], &r),
            Err(ProtocolError::ReservedBits(0b110))
        );
    }

    // ROBUSTNESS 16: control frames are never fragmented and never exceed 125.
    #[test]
    fn control_frame_rules() {
        assert_eq!(
            FrameHeader::parse(&[0x09], &rules()),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            FrameHeader::parse(&[0x89, 126], &rules()),
            Err(ProtocolError::ControlFrameTooLarge(126))
        );
        assert!(
            FrameHeader::parse(&[0x89, 125], &rules())
                .unwrap()
                .is_some()
        );
    }

    // ROBUSTNESS 17: masking by role.
    #[test]
    fn masking_rules() {
        let mut server = rules();
        server.expect_masked = true;
        assert_eq!(
            FrameHeader::parse(&[0x81, 0x00], &server),
            Err(ProtocolError::UnmaskedFrame)
        );
        let mut client = rules();
        client.expect_unmasked = true;
        assert_eq!(
            FrameHeader::parse(&[0x81, 0x80], &client),
            Err(ProtocolError::MaskedFrame)
        );
    }

    // ROBUSTNESS 19: non-minimal lengths are accepted by default and parsed
    // correctly, and rejected when configured.
    #[test]
    fn non_minimal_lengths_both_ways() {
        let sixteen = [0x82, 126, 0x00, 0x05];
        let sixty_four = [0x82, 127, 0, 0, 0, 0, 0, 0, 0x01, 0x00];
        let (h, n) = FrameHeader::parse(&sixteen, &rules()).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (5, 4));
        let (h, n) = FrameHeader::parse(&sixty_four, &rules()).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (256, 10));
        let mut strict = rules();
        strict.reject_non_minimal = true;
        assert_eq!(
            FrameHeader::parse(&sixteen, &strict),
            Err(ProtocolError::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::parse(&sixty_four, &strict),
            Err(ProtocolError::NonMinimalLength)
        );
    }
}

//! Frame encoding into a caller's buffer.

use bytes::BytesMut;

use super::header::{FrameHeader, MAX_HEADER_LEN, OpCode};
use super::mask::apply_mask;

/// Appends one frame to `dst`: the header with the minimal length encoding,
/// then `payload`, masked with `mask` when one is given.
pub fn encode_frame(
    dst: &mut BytesMut,
    opcode: OpCode,
    fin: bool,
    rsv: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let mut header = [0; MAX_HEADER_LEN];
    let header_len = FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    }
    .encode(&mut header);
    dst.reserve(header_len + payload.len());
    dst.extend_from_slice(&header[..header_len]);
    let start = dst.len();
    dst.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut dst[start..], key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6455 §5.7 examples.
    #[test]
    fn rfc_examples() {
        let mut dst = BytesMut::new();
        encode_frame(&mut dst, OpCode::Text, true, 0, b"Hello", None);
        assert_eq!(&dst[..], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);

        let mut dst = BytesMut::new();
        encode_frame(
            &mut dst,
            OpCode::Text,
            true,
            0,
            b"Hello",
            Some([0x37, 0xfa, 0x21, 0x3d]),
        );
        assert_eq!(
            &dst[..],
            &[
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );

        let mut dst = BytesMut::new();
        encode_frame(&mut dst, OpCode::Text, false, 0, b"Hel", None);
        encode_frame(&mut dst, OpCode::Continuation, true, 0, b"lo", None);
        assert_eq!(
            &dst[..],
            &[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]
        );

        let mut dst = BytesMut::new();
        encode_frame(&mut dst, OpCode::Binary, true, 0, &[0; 256], None);
        assert_eq!(&dst[..4], &[0x82, 0x7E, 0x01, 0x00]);
        let mut dst = BytesMut::new();
        encode_frame(&mut dst, OpCode::Binary, true, 0, &vec![0; 65536], None);
        assert_eq!(&dst[..10], &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
}

//! The frame layer (RFC 6455 §5): headers, masking, decoding and encoding.

mod decode;
mod encode;
mod header;
mod mask;

pub use decode::{Frame, FrameDecoder, Step};
pub use encode::encode_frame;
pub use header::{FrameHeader, HeaderRules, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, RSV1};
pub(crate) use mask::extend_masked_vec;
pub use mask::{apply_mask, extend_masked};

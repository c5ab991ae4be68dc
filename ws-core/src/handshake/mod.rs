//! The opening handshake (RFC 6455 §4), both halves, over HTTP/1.1.
//!
//! Heads are collected incrementally in linear time under
//! [`HandshakeLimits`](crate::HandshakeLimits), then parsed once with
//! `httparse` into the `http` crate's types, so a request that a hyper or
//! axum server already parsed can be validated with
//! [`UpgradeRequest::from_request`].

mod client;
mod head;
mod headers;
mod key;
mod server;

use bytes::{BufMut, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

pub use client::{ClientHandshake, ClientRequest, MAX_REFUSAL_BODY, ResponseError, ServerResponse};
pub use head::HeadError;
pub use server::{Accept, Accepted, Rejection, RequestError, ServerHandshake, UpgradeRequest};

/// Writes a start line and headers, ending with the empty line.
fn encode_head(start_line: &str, headers: &HeaderMap) -> BytesMut {
    let size = start_line.len()
        + 4
        + headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    let mut wire = BytesMut::with_capacity(size);
    wire.put_slice(start_line.as_bytes());
    wire.put_slice(b"\r\n");
    for (name, value) in headers {
        wire.put_slice(name.as_str().as_bytes());
        wire.put_slice(b": ");
        wire.put_slice(value.as_bytes());
        wire.put_slice(b"\r\n");
    }
    wire.put_slice(b"\r\n");
    wire
}

/// Converts httparse's headers, refusing names or values `http` rejects.
fn parse_headers(parsed: &[httparse::Header<'_>]) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::with_capacity(parsed.len());
    for header in parsed {
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_bytes(header.value).map_err(|e| e.to_string())?;
        headers.append(name, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests;

//! Collecting an HTTP/1.1 head from arbitrarily chunked bytes, with limits
//! checked as each byte arrives.

use bytes::{Bytes, BytesMut};

use crate::config::HandshakeLimits;

/// Why a head was refused while it was still arriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The first line was longer than `max_line_size`.
    #[error("request or status line longer than {0} bytes")]
    StartLineTooLong(usize),
    /// A header line was longer than `max_line_size`.
    #[error("header line longer than {0} bytes")]
    HeaderLineTooLong(usize),
    /// More than `max_headers` header lines.
    #[error("more than {0} header lines")]
    TooManyHeaders(usize),
    /// The head was larger than `max_head_size`.
    #[error("head larger than {0} bytes")]
    TooLarge(usize),
    /// The first line holds bytes no HTTP start line has (control
    /// characters, non-ASCII): not HTTP at all, for example a TLS handshake
    /// sent to a plain `ws://` port. Caught at the first such byte, so the
    /// other side learns at once rather than at the deadline.
    #[error("not HTTP: byte {0:#04x} in the first line (TLS on a plain port?)")]
    NotHttp(u8),
}

/// Accumulates a head until the empty line that ends it.
///
/// Each byte is examined once (the scan resumes where it stopped), so a head
/// dribbled one byte at a time costs the same CPU per byte as one that
/// arrives whole, and the limits fail the head as soon as they are crossed.
#[derive(Debug)]
pub(crate) struct HeadReader {
    limits: HandshakeLimits,
    buf: BytesMut,
    scanned: usize,
    line_len: usize,
    lines: usize,
}

/// A complete head and whatever arrived after it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) head: Bytes,
    pub(crate) rest: Bytes,
    pub(crate) lines: usize,
}

impl HeadReader {
    pub(crate) fn new(limits: HandshakeLimits) -> Self {
        Self {
            limits,
            buf: BytesMut::new(),
            scanned: 0,
            line_len: 0,
            lines: 0,
        }
    }

    pub(crate) fn limits(&self) -> &HandshakeLimits {
        &self.limits
    }

    /// Adds bytes; returns the head once its terminating empty line arrived.
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<Option<Head>, HeadError> {
        // Only the part of `data` that can still belong to the head is
        // copied; the end of the head is found within it or the limit trips.
        let room = self.limits.max_head_size + 1 - self.buf.len();
        let take = data.len().min(room);
        self.buf.extend_from_slice(&data[..take]);
        while self.scanned < self.buf.len() {
            let byte = self.buf[self.scanned];
            self.scanned += 1;
            match byte {
                b'\n' => {
                    if self.line_len == 0 {
                        return Ok(Some(self.finish(&data[take..])));
                    }
                    self.lines += 1;
                    self.line_len = 0;
                    // The first line is the request or status line.
                    if self.lines > self.limits.max_headers + 1 {
                        return Err(HeadError::TooManyHeaders(self.limits.max_headers));
                    }
                }
                b'\r' => {}
                // Visible ASCII, space and tab are all a start line may hold.
                other if self.lines == 0 && !matches!(other, b' ' | b'\t' | 0x21..=0x7e) => {
                    return Err(HeadError::NotHttp(other));
                }
                _ => {
                    self.line_len += 1;
                    if self.line_len > self.limits.max_line_size {
                        return Err(if self.lines == 0 {
                            HeadError::StartLineTooLong(self.limits.max_line_size)
                        } else {
                            HeadError::HeaderLineTooLong(self.limits.max_line_size)
                        });
                    }
                }
            }
            if self.scanned > self.limits.max_head_size {
                return Err(if self.lines == 0 {
                    HeadError::StartLineTooLong(self.limits.max_line_size)
                } else {
                    HeadError::TooLarge(self.limits.max_head_size)
                });
            }
        }
        Ok(None)
    }

    fn finish(&mut self, unbuffered: &[u8]) -> Head {
        let mut buf = std::mem::take(&mut self.buf);
        let rest_in_buf = buf.split_off(self.scanned);
        let rest = if unbuffered.is_empty() {
            rest_in_buf.freeze()
        } else {
            let mut rest = rest_in_buf;
            rest.extend_from_slice(unbuffered);
            rest.freeze()
        };
        Head {
            head: buf.freeze(),
            rest,
            lines: self.lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(head: usize, line: usize, headers: usize) -> HandshakeLimits {
        HandshakeLimits {
            max_head_size: head,
            max_line_size: line,
            max_headers: headers,
            ..HandshakeLimits::default()
        }
    }

    // A TLS ClientHello (or any binary) is refused at its first byte.
    #[test]
    fn binary_start_lines_are_refused_at_once() {
        let mut reader = HeadReader::new(HandshakeLimits::default());
        assert_eq!(
            reader.push(&[0x16, 0x03, 0x01, 0x02, 0x00]),
            Err(HeadError::NotHttp(0x16))
        );
        let mut reader = HeadReader::new(HandshakeLimits::default());
        assert_eq!(reader.push(b"GET / HTTP/1.1\r\nX-Bin: \xff\r\n"), Ok(None));
    }

    #[test]
    fn finds_the_end_under_any_chunking_and_keeps_the_rest() {
        let wire = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nEXTRA";
        for size in 1..wire.len() {
            let mut reader = HeadReader::new(HandshakeLimits::default());
            let mut done = None;
            let mut after = Vec::new();
            for chunk in wire.chunks(size) {
                if let Some(head) = &done {
                    let _: &Head = head;
                    after.extend_from_slice(chunk);
                } else {
                    done = reader.push(chunk).unwrap();
                }
            }
            let head = done.unwrap();
            assert_eq!(&head.head[..], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            let mut rest = head.rest.to_vec();
            rest.extend_from_slice(&after);
            assert_eq!(rest, b"EXTRA");
            assert_eq!(head.lines, 2);
        }
    }

    #[test]
    fn start_line_limit() {
        let mut reader = HeadReader::new(limits(1000, 10, 5));
        assert_eq!(
            reader.push(b"GET /0123456789 HTTP/1.1\r\n").unwrap_err(),
            HeadError::StartLineTooLong(10)
        );
    }

    #[test]
    fn header_line_limit() {
        let mut reader = HeadReader::new(limits(1000, 20, 5));
        assert_eq!(
            reader
                .push(b"GET / HTTP/1.1\r\nX: 0123456789012345678\r\n")
                .unwrap_err(),
            HeadError::HeaderLineTooLong(20)
        );
    }

    #[test]
    fn header_count_limit() {
        let mut reader = HeadReader::new(limits(1000, 100, 3));
        assert!(
            reader
                .push(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n")
                .unwrap()
                .is_none()
        );
        assert_eq!(
            reader.push(b"d: 4\r\n").unwrap_err(),
            HeadError::TooManyHeaders(3)
        );
    }

    #[test]
    fn total_size_limit_and_bounded_buffer() {
        let mut reader = HeadReader::new(limits(64, 1000, 100));
        assert!(reader.push(b"GET / HTTP/1.1\r\n").unwrap().is_none());
        let junk = vec![b'a'; 10_000];
        assert_eq!(reader.push(&junk).unwrap_err(), HeadError::TooLarge(64));
        assert!(reader.buf.len() <= 65);
    }
}

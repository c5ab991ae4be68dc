//! Incremental UTF-8 validation across arbitrary splits.

/// The input is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates a byte stream fed in pieces, failing on the first piece that
/// makes it invalid.
///
/// A code point split between pieces is carried (at most three bytes) until
/// the next piece completes it, so `feed` fails as soon as the stream can no
/// longer become valid and `finish` fails if it ends mid-code-point. Uses
/// `simdutf8` (SIMD, picked at run time) with its fast path for valid input.
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    carry: [u8; 4],
    carry_len: usize,
}

impl Utf8Validator {
    /// A validator at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes of an incomplete code point at the end of what was fed.
    pub fn pending(&self) -> &[u8] {
        &self.carry[..self.carry_len]
    }

    /// Validates the next piece of the stream.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.carry_len > 0 {
            let width = char_width(self.carry[0]);
            let take = (width - self.carry_len).min(data.len());
            self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&data[..take]);
            self.carry_len += take;
            data = &data[take..];
            match simdutf8::compat::from_utf8(&self.carry[..self.carry_len]) {
                Ok(_) => self.carry_len = 0,
                // Still a valid prefix of a code point: wait for more.
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(InvalidUtf8),
            }
        }
        if simdutf8::basic::from_utf8(data).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &data[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len();
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends the stream: fails if it stopped in the middle of a code point.
    /// The validator is reset for the next stream either way.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.carry_len == 0;
        self.carry_len = 0;
        if complete { Ok(()) } else { Err(InvalidUtf8) }
    }

    /// Forgets any carried bytes.
    pub fn reset(&mut self) {
        self.carry_len = 0;
    }
}

/// Bytes in the code point a leading byte starts. A carried byte is always
/// a valid lead byte (simdutf8 reported it as an incomplete sequence), so
/// the fallback arm is only reached for 4-byte leads.
fn char_width(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(data: &[u8], splits: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut at = 0;
        for &s in splits {
            v.feed(&data[at..s])?;
            at = s;
        }
        v.feed(&data[at..])?;
        v.finish()
    }

    #[test]
    fn agrees_with_std_under_every_two_way_split() {
        let samples: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            "\u{10FFFF}\u{FFFF}\u{800}\u{7F}\u{80}".as_bytes(),
            &[0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
            &[0xed, 0xa0, 0x80],       // surrogate
            &[0xc0, 0xaf],             // overlong
            &[0xe0, 0x80, 0xaf],       // overlong
            &[0xce, 0xba, 0xe1],       // truncated at the end
            &[0xff],
            &[0x61, 0x80, 0x62],             // lone continuation
            &[0xf0, 0x9f, 0x98, 0x80, 0x61], // emoji then ASCII
        ];
        for sample in samples {
            let expected = std::str::from_utf8(sample).is_ok();
            for split in 0..=sample.len() {
                assert_eq!(
                    feed_split(sample, &[split]).is_ok(),
                    expected,
                    "{sample:x?} at {split}"
                );
            }
            for a in 0..=sample.len() {
                for b in a..=sample.len() {
                    assert_eq!(feed_split(sample, &[a, b]).is_ok(), expected);
                }
            }
        }
    }

    // ROBUSTNESS 23 / Autobahn 6.4: the piece that makes the stream invalid
    // fails, before the rest arrives.
    #[test]
    fn fails_on_the_first_invalid_piece() {
        let mut v = Utf8Validator::new();
        v.feed(&[
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5,
        ])
        .unwrap();
        assert_eq!(v.feed(&[0xf4, 0x90]), Err(InvalidUtf8));

        // Invalid as soon as the second byte of a split sequence is seen.
        let mut v = Utf8Validator::new();
        v.feed(&[0xf4]).unwrap();
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8));
    }

    #[test]
    fn pending_holds_the_split_code_point() {
        let mut v = Utf8Validator::new();
        v.feed(&[b'a', 0xf0, 0x9f]).unwrap();
        assert_eq!(v.pending(), &[0xf0, 0x9f]);
        v.feed(&[0x98]).unwrap();
        assert_eq!(v.pending(), &[0xf0, 0x9f, 0x98]);
        v.feed(&[0x80, b'b']).unwrap();
        assert_eq!(v.pending(), &[] as &[u8]);
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn truncated_at_end_fails_finish() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xe2, 0x82]).unwrap();
        assert_eq!(v.finish(), Err(InvalidUtf8));
        // Reset for the next message.
        assert_eq!(v.finish(), Ok(()));
    }
}

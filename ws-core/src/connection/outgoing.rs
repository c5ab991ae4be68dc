//! The bounded outgoing byte queue.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

use crate::frame::{FrameHeader, MAX_HEADER_LEN, OpCode, extend_masked_vec};

/// Payloads at least this large are queued by reference rather than copied,
/// when they need no masking.
pub(crate) const ZERO_COPY_MIN: usize = 4096;

/// Staging capacity kept across drains; more is released once drained, so a
/// burst does not pin memory on an idle connection.
const STAGING_KEEP: usize = 64 * 1024;

/// Encoded frames waiting to be written: zero-copy payload segments, then a
/// staging buffer that small frames are copied into so that many of them go
/// out in one write.
///
/// The staging buffer is a `Vec` with a start offset rather than a
/// `BytesMut`: once written out it is simply cleared, where a `BytesMut`
/// advanced to its end has to move its start back on the next append
/// (a few hundred instructions per small message).
#[derive(Debug, Default)]
pub(crate) struct OutgoingQueue {
    segments: VecDeque<Bytes>,
    staging: Vec<u8>,
    /// Bytes of `staging` before this offset are written.
    staged_from: usize,
    len: usize,
}

impl OutgoingQueue {
    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Encodes a frame. The payload is copied (and masked) unless it is large
    /// and unmasked, in which case it is queued as is.
    pub(crate) fn push_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: PayloadSource<'_>,
        mask: Option<[u8; 4]>,
    ) {
        self.push_frame_with_rsv(opcode, fin, 0, payload, mask);
    }

    /// [`push_frame`](Self::push_frame) with reserved bits set (RSV1 for a
    /// compressed message's first frame).
    pub(crate) fn push_frame_with_rsv(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv: u8,
        payload: PayloadSource<'_>,
        mask: Option<[u8; 4]>,
    ) {
        let payload_len = payload.len();
        let mut header = [0; MAX_HEADER_LEN];
        let header_len = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len: payload_len as u64,
        }
        .encode(&mut header);
        self.len += header_len + payload_len;
        self.staging.extend_from_slice(&header[..header_len]);
        match (payload, mask) {
            (PayloadSource::Shared(shared), None) if shared.len() >= ZERO_COPY_MIN => {
                let staged = self.take_staged();
                self.segments.push_back(staged);
                self.segments.push_back(shared);
            }
            (payload, Some(key)) => {
                extend_masked_vec(&mut self.staging, payload.as_slice(), key, 0)
            }
            (payload, None) => self.staging.extend_from_slice(payload.as_slice()),
        }
    }

    /// Queues a frame encoded elsewhere: copied into the staging buffer when
    /// small (so it leaves in one write with its neighbours), shared when
    /// large.
    pub(crate) fn push_encoded(&mut self, frame: &Bytes) {
        self.len += frame.len();
        if frame.len() >= ZERO_COPY_MIN {
            if self.staged_len() > 0 {
                let staged = self.take_staged();
                self.segments.push_back(staged);
            }
            self.segments.push_back(frame.clone());
        } else {
            self.staging.extend_from_slice(frame);
        }
    }

    /// Fills `dst` with slices of the waiting bytes, in order, and returns
    /// how many it filled.
    pub(crate) fn slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let staging = (self.staged_len() > 0).then_some(&self.staging[self.staged_from..]);
        let mut n = 0;
        for (slot, bytes) in dst
            .iter_mut()
            .zip(self.segments.iter().map(|b| &b[..]).chain(staging))
        {
            *slot = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    /// Marks `n` bytes as written.
    pub(crate) fn advance(&mut self, mut n: usize) {
        assert!(
            n <= self.len,
            "advanced {n} bytes past the {} queued",
            self.len
        );
        self.len -= n;
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                self.staged_from += n;
                // A queue that never quite empties (a peer reading steadily
                // but slower than we send) would otherwise grow by every
                // byte written: once the written part is at least half,
                // move the rest to the front (amortized, each byte moves at
                // most once per byte written before it).
                if self.staged_from * 2 >= self.staging.len() && self.staged_len() > 0 {
                    self.staging.drain(..self.staged_from);
                    self.staged_from = 0;
                }
                break;
            };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.segments.pop_front();
        }
        self.release_if_drained();
    }

    /// Takes the next chunk of waiting bytes.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        let chunk = match self.segments.pop_front() {
            Some(segment) => segment,
            None if self.staged_len() > 0 => self.take_staged(),
            None => return None,
        };
        self.len -= chunk.len();
        self.release_if_drained();
        Some(chunk)
    }

    fn staged_len(&self) -> usize {
        self.staging.len() - self.staged_from
    }

    /// The unwritten staged bytes as a segment of their own (in front of a
    /// shared payload, or for `pop`); the staging buffer is then empty.
    fn take_staged(&mut self) -> Bytes {
        let staged = Bytes::copy_from_slice(&self.staging[self.staged_from..]);
        self.staging.clear();
        self.staged_from = 0;
        staged
    }

    /// Once everything is written: empties the staging buffer, dropping its
    /// allocation if larger than we keep.
    pub(crate) fn release_if_drained(&mut self) {
        if self.len == 0 {
            if self.staging.capacity() > STAGING_KEEP {
                self.staging = Vec::new();
            } else {
                self.staging.clear();
            }
            self.staged_from = 0;
        }
    }

    /// Drops every buffer allocation that holds no data.
    pub(crate) fn shrink(&mut self) {
        if self.len == 0 {
            self.staging = Vec::new();
            self.staged_from = 0;
            self.segments = VecDeque::new();
        }
    }
}

/// A payload to encode: borrowed (always copied) or shared (may be queued
/// without a copy).
pub(crate) enum PayloadSource<'a> {
    Borrowed(&'a [u8]),
    Shared(Bytes),
}

impl PayloadSource<'_> {
    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Borrowed(bytes) => bytes,
            Self::Shared(bytes) => bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    // The staging buffer keeps only what is unwritten, even when the queue
    // never empties: it must not grow with everything ever sent.
    #[test]
    fn a_queue_that_never_empties_stays_bounded() {
        let mut queue = OutgoingQueue::default();
        let frame = [7u8; 100];
        let mut out = Vec::new();
        for _ in 0..10_000 {
            queue.push_frame(OpCode::Binary, true, PayloadSource::Borrowed(&frame), None);
            // Write all but 50 bytes: something is always left.
            let mut slots = [IoSlice::new(&[]); 4];
            let n = queue.slices(&mut slots);
            let pending: Vec<u8> = slots[..n].iter().flat_map(|s| s.iter().copied()).collect();
            let written = pending.len() - 50;
            out.extend_from_slice(&pending[..written]);
            queue.advance(written);
            assert_eq!(queue.len(), 50);
        }
        assert!(
            queue.staging.capacity() < 4096,
            "staging grew to {} bytes for 50 unwritten",
            queue.staging.capacity()
        );
        // And nothing was lost or reordered.
        let mut slots = [IoSlice::new(&[]); 4];
        let n = queue.slices(&mut slots);
        for slice in &slots[..n] {
            out.extend_from_slice(slice);
        }
        assert_eq!(out.len(), 10_000 * 102);
        for chunk in out.chunks(102) {
            assert_eq!(chunk[..2], [0x82, 100]);
            assert!(chunk[2..].iter().all(|&b| b == 7));
        }
    }

    fn drain_by_slices(queue: &mut OutgoingQueue, max_write: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while queue.len() > 0 {
            let mut slots = [IoSlice::new(&[]); 4];
            let n = queue.slices(&mut slots);
            let mut budget = max_write;
            let mut written = 0;
            for slice in &slots[..n] {
                let take = slice.len().min(budget);
                out.extend_from_slice(&slice[..take]);
                written += take;
                budget -= take;
            }
            queue.advance(written);
        }
        out
    }

    #[test]
    fn small_and_large_frames_keep_order_under_partial_writes() {
        let big = Bytes::from(vec![7u8; 10_000]);
        let mut expected = BytesMut::new();
        let mut queue = OutgoingQueue::default();
        for (i, payload) in [
            Bytes::from_static(b"a"),
            big.clone(),
            Bytes::from_static(b"bc"),
        ]
        .into_iter()
        .enumerate()
        {
            crate::frame::encode_frame(&mut expected, OpCode::Binary, true, 0, &payload, None);
            if i == 1 {
                queue.push_frame(OpCode::Binary, true, PayloadSource::Shared(payload), None);
            } else {
                queue.push_frame(
                    OpCode::Binary,
                    true,
                    PayloadSource::Borrowed(&payload),
                    None,
                );
            }
        }
        assert_eq!(
            queue.segments.len(),
            2,
            "the large payload is queued by reference"
        );
        for max_write in [1, 3, 1000, usize::MAX] {
            let mut copy = OutgoingQueue::default();
            copy.push_frame(OpCode::Binary, true, PayloadSource::Borrowed(b"a"), None);
            copy.push_frame(
                OpCode::Binary,
                true,
                PayloadSource::Shared(big.clone()),
                None,
            );
            copy.push_frame(OpCode::Binary, true, PayloadSource::Borrowed(b"bc"), None);
            assert_eq!(drain_by_slices(&mut copy, max_write), &expected[..]);
        }
        let mut popped = Vec::new();
        while let Some(chunk) = queue.pop() {
            popped.extend_from_slice(&chunk);
        }
        assert_eq!(popped, &expected[..]);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn masked_payloads_are_copied_and_masked() {
        let mut queue = OutgoingQueue::default();
        let payload = vec![1u8; 5000];
        queue.push_frame(
            OpCode::Binary,
            true,
            PayloadSource::Shared(Bytes::from(payload.clone())),
            Some([1, 2, 3, 4]),
        );
        let mut expected = BytesMut::new();
        crate::frame::encode_frame(
            &mut expected,
            OpCode::Binary,
            true,
            0,
            &payload,
            Some([1, 2, 3, 4]),
        );
        assert_eq!(queue.pop().unwrap(), expected.freeze());
    }

    #[test]
    fn drained_staging_is_released_past_the_keep_size() {
        let mut queue = OutgoingQueue::default();
        queue.push_frame(
            OpCode::Binary,
            true,
            PayloadSource::Borrowed(&[0; 100_000]),
            Some([0; 4]),
        );
        let n = queue.len();
        queue.advance(n);
        assert_eq!(queue.staging.capacity(), 0);
    }
}

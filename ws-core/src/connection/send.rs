//! Writing: messages, fragments, pings and the close frame encoded (and
//! compressed) into the send buffer within its limit, pongs answered.

use super::*;

impl Connection {
    /// Queues a whole message. Payloads of a server's messages that are 4 KiB
    /// or more are queued without copying. With permessage-deflate on, the
    /// message is compressed when it reaches the configured threshold.
    pub fn send(&mut self, message: Message) -> Result<(), SendRefused> {
        self.send_message(message, true)
    }

    /// Queues a whole message without compressing it, whatever was
    /// negotiated: for data that does not compress (images, archives) or
    /// secrets that must not share a compression context with data an
    /// attacker chooses (CRIME, BREACH).
    pub fn send_uncompressed(&mut self, message: Message) -> Result<(), SendRefused> {
        self.send_message(message, false)
    }

    /// Queues `message` as [`send`](Self::send) does, leaving it with the
    /// caller: for a sender that must keep what it sends until the send is
    /// accepted (a queue, which retries after backpressure). Payloads under
    /// 4 KiB are copied into the send buffer (as `send` copies them); larger
    /// ones are shared, not copied. Cheaper than `send(message.clone())`,
    /// which for a payload that owns its buffer allocates to share it.
    pub fn send_ref(&mut self, message: &Message) -> Result<(), SendRefused> {
        self.send_message_ref(message, true)
    }

    /// [`send_uncompressed`](Self::send_uncompressed) that leaves `message`
    /// with the caller, as [`send_ref`](Self::send_ref) does.
    pub fn send_uncompressed_ref(&mut self, message: &Message) -> Result<(), SendRefused> {
        self.send_message_ref(message, false)
    }

    pub(super) fn send_message_ref(
        &mut self,
        message: &Message,
        compress: bool,
    ) -> Result<(), SendRefused> {
        let (opcode, data) = match message {
            Message::Text(text) => (OpCode::Text, text.as_bytes()),
            Message::Binary(data) => (OpCode::Binary, data),
        };
        let payload = if data.len() >= ZERO_COPY_MIN {
            PayloadSource::Shared(data.clone())
        } else {
            PayloadSource::Borrowed(data)
        };
        self.send_whole(opcode, payload, compress)
    }

    pub(super) fn send_message(
        &mut self,
        message: Message,
        compress: bool,
    ) -> Result<(), SendRefused> {
        let (opcode, data) = match message {
            Message::Text(text) => (OpCode::Text, text.into_bytes()),
            Message::Binary(data) => (OpCode::Binary, data),
        };
        self.send_whole(opcode, PayloadSource::Shared(data), compress)
    }

    /// Queues a message [encoded once](EncodedMessage) for many connections
    /// (server role only: its frame is unmasked). It is never compressed,
    /// and counts against `max_outgoing_buffer` like any send.
    pub fn send_encoded(&mut self, message: &EncodedMessage) -> Result<(), SendRefused> {
        if self.role == Role::Client {
            return Err(UsageError::EncodedFromClient.into());
        }
        if self.sending_text.is_some() {
            return Err(UsageError::MessageInProgress.into());
        }
        self.make_room(message.as_bytes().len())?;
        self.out.push_encoded(message.as_bytes());
        Ok(())
    }

    /// Queues a text message, copying `text` into the send buffer.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendRefused> {
        self.send_whole(OpCode::Text, PayloadSource::Borrowed(text.as_bytes()), true)
    }

    /// Queues a binary message, copying `data` into the send buffer.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendRefused> {
        self.send_whole(OpCode::Binary, PayloadSource::Borrowed(data), true)
    }

    pub(super) fn send_whole(
        &mut self,
        opcode: OpCode,
        payload: PayloadSource<'_>,
        compress: bool,
    ) -> Result<(), SendRefused> {
        if self.sending_text.is_some() {
            return Err(UsageError::MessageInProgress.into());
        }
        let compress = compress
            && self
                .deflate
                .as_ref()
                .is_some_and(|d| d.worth_compressing(payload.len()));
        if compress {
            self.push_compressed(opcode, true, true, payload)
        } else {
            self.push_data(opcode, true, payload)
        }
    }

    /// Queues one fragment of a message sent in pieces: the first call starts
    /// the message (its kind sets the message's kind), `is_last` ends it.
    /// Whole messages cannot be sent until it ends; control frames can. With
    /// permessage-deflate on, the message is compressed (each fragment
    /// flushed, so the peer can inflate it as it arrives).
    pub fn send_fragment(&mut self, data: Message, is_last: bool) -> Result<(), SendRefused> {
        self.fragment(data, is_last, true)
    }

    /// Like [`send_fragment`](Self::send_fragment), but a message started
    /// with it is not compressed. On later fragments it continues the
    /// message as it started.
    pub fn send_fragment_uncompressed(
        &mut self,
        data: Message,
        is_last: bool,
    ) -> Result<(), SendRefused> {
        self.fragment(data, is_last, false)
    }

    pub(super) fn fragment(
        &mut self,
        data: Message,
        is_last: bool,
        compress: bool,
    ) -> Result<(), SendRefused> {
        let text = data.is_text();
        let opcode = match self.sending_text {
            None if text => OpCode::Text,
            None => OpCode::Binary,
            Some(open) if open == text => OpCode::Continuation,
            Some(_) => return Err(UsageError::FragmentKindMismatch.into()),
        };
        let first = self.sending_text.is_none();
        let compressed = if first {
            compress && self.deflate.is_some()
        } else {
            self.sending_compressed
        };
        let payload = match data {
            Message::Text(text) => text.into_bytes(),
            Message::Binary(data) => data,
        };
        let payload = PayloadSource::Shared(payload);
        if compressed {
            self.push_compressed(opcode, is_last, first, payload)?;
        } else {
            self.push_data(opcode, is_last, payload)?;
        }
        self.sending_text = (!is_last).then_some(text);
        self.sending_compressed = compressed && !is_last;
        Ok(())
    }

    /// Queues a ping. Its pong arrives as [`Event::Pong`].
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendRefused> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(UsageError::ControlPayloadTooLarge(payload.len()).into());
        }
        self.push_data(OpCode::Ping, true, PayloadSource::Borrowed(payload))
    }

    /// Starts the close handshake: queues a close frame and waits up to
    /// `close_timeout` from `now` for the peer's. Messages received meanwhile
    /// are still delivered; nothing more can be sent.
    pub fn close(
        &mut self,
        code: CloseCode,
        reason: &str,
        now: Instant,
    ) -> Result<(), SendRefused> {
        let frame = CloseFrame::new(code, reason)?;
        if !matches!(self.state, State::Open) {
            return Err(UsageError::Closed.into());
        }
        self.advance_clock(now);
        self.push_close(Some(frame.code), &frame.reason);
        self.state = State::CloseSent {
            deadline: self.now.checked_add(self.config.close_timeout),
        };
        Ok(())
    }

    /// Checks state and the buffer limit, then queues a frame.
    pub(super) fn push_data(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: PayloadSource<'_>,
    ) -> Result<(), SendRefused> {
        self.make_room(MAX_HEADER_LEN + payload.len())?;
        let mask = self.next_mask();
        self.out.push_frame(opcode, fin, payload, mask);
        Ok(())
    }

    /// Compresses and queues one frame of a compressed message; `first`
    /// marks the message's first frame, which carries RSV1.
    ///
    /// Room is checked against the uncompressed size before compressing:
    /// a refusal after compressing would leave our context ahead of the
    /// peer's.
    pub(super) fn push_compressed(
        &mut self,
        opcode: OpCode,
        fin: bool,
        first: bool,
        payload: PayloadSource<'_>,
    ) -> Result<(), SendRefused> {
        self.make_room(MAX_HEADER_LEN + payload.len())?;
        let mask = self.next_mask();
        let deflate = self
            .deflate
            .as_deref_mut()
            .expect("compressed sends need deflate on");
        deflate.compress(payload.as_slice(), fin);
        // A message that did not shrink goes as it is, where that cannot
        // leave the peer's context behind ours: a single frame, and a
        // compressor that forgets every message anyway.
        if first && fin && deflate.outgoing_resets() && deflate.scratch.len() >= payload.len() {
            self.out.push_frame(opcode, fin, payload, mask);
            return Ok(());
        }
        let rsv = if first { RSV1 } else { 0 };
        let compressed = if mask.is_none() && deflate.scratch.len() >= ZERO_COPY_MIN {
            PayloadSource::Shared(Bytes::from(std::mem::take(&mut deflate.scratch)))
        } else {
            PayloadSource::Borrowed(&deflate.scratch)
        };
        self.out
            .push_frame_with_rsv(opcode, fin, rsv, compressed, mask);
        deflate.trim_scratch();
        Ok(())
    }

    /// Refuses a send of `needed` bytes when the connection is not open or
    /// the outgoing buffer would overflow (closing, under
    /// [`BackpressurePolicy::Close`]).
    pub(super) fn make_room(&mut self, needed: usize) -> Result<(), SendRefused> {
        if !matches!(self.state, State::Open) {
            return Err(UsageError::Closed.into());
        }
        if self.pending_pong.is_some() {
            self.flush_pending_pong();
        }
        let buffered = self.out.len();
        let limit = self.config.max_outgoing_buffer;
        if buffered > 0 && buffered.saturating_add(needed) > limit {
            let refused = Backpressure {
                buffered,
                needed,
                limit,
            };
            if let BackpressurePolicy::Close { code } = self.config.backpressure {
                let code = if code.is_sendable() {
                    code
                } else {
                    CloseCode::POLICY_VIOLATION
                };
                self.push_close(Some(code), "send buffer full");
                self.finish(
                    code,
                    "send buffer full".to_owned(),
                    CloseCause::Backpressure,
                );
            }
            return Err(refused.into());
        }
        Ok(())
    }

    /// Queues a close frame (with `code`, or empty) after any pending pong.
    /// Never refused: at most one close frame is ever sent.
    pub(super) fn push_close(&mut self, code: Option<CloseCode>, reason: &str) {
        self.flush_pending_pong();
        let mut payload = Vec::with_capacity(2 + reason.len());
        if let Some(code) = code {
            CloseFrame {
                code,
                reason: reason.to_owned(),
            }
            .write_payload(&mut payload);
        }
        let mask = self.next_mask();
        self.out
            .push_frame(OpCode::Close, true, PayloadSource::Borrowed(&payload), mask);
    }

    /// Answers a ping at once while the pongs queued since the send buffer
    /// was last empty fit [`PONG_BUDGET`], so a peer that reads gets a pong
    /// for every ping. Past that (a peer that pings but does not read),
    /// only the latest ping is remembered and answered when there is room.
    pub(super) fn answer_ping(&mut self, payload: Bytes) {
        if !matches!(self.state, State::Open) {
            return;
        }
        let frame = 2 + payload.len() + if self.mask_rng.is_some() { 4 } else { 0 };
        if self.pong_bytes + frame > PONG_BUDGET {
            self.pending_pong = Some(payload);
            return;
        }
        self.pending_pong = None;
        self.pong_bytes += frame;
        let mask = self.next_mask();
        self.out
            .push_frame(OpCode::Pong, true, PayloadSource::Borrowed(&payload), mask);
    }

    /// Encodes the pong for the latest ping, unless the send buffer is full
    /// (then it waits, and a later ping replaces it).
    pub(super) fn flush_pending_pong(&mut self) {
        if !matches!(self.state, State::Open) {
            self.pending_pong = None;
            return;
        }
        if self.out.len() >= self.config.max_outgoing_buffer {
            return;
        }
        if let Some(payload) = self.pending_pong.take() {
            let mask = self.next_mask();
            self.out
                .push_frame(OpCode::Pong, true, PayloadSource::Borrowed(&payload), mask);
        }
    }

    pub(super) fn next_mask(&mut self) -> Option<[u8; 4]> {
        self.mask_rng
            .as_mut()
            .map(|rng| rng.next_u32().to_ne_bytes())
    }

    // ---- output --------------------------------------------------------
}

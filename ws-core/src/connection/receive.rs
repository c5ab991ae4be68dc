//! Reading: frames decoded from the receive buffer, checked (header
//! rules, UTF-8, sizes, ping rate), assembled into messages or streamed,
//! inflated, and the close handshake's incoming half.

use super::*;

/// A fragmented message being received.
#[derive(Debug)]
pub(super) struct Incoming {
    pub(super) text: bool,
    /// Compressed (RSV1 on its first frame): `len` then counts inflated
    /// bytes and `inflated` holds them.
    pub(super) compressed: bool,
    /// Payload bytes so far.
    pub(super) len: usize,
    /// Complete frames so far.
    pub(super) fragments: usize,
    pub(super) started: Instant,
    /// Reassembled payload ([`ReceiveMode::Buffered`] only).
    pub(super) buffer: BytesMut,
    /// Inflated payload of a compressed message ([`ReceiveMode::Buffered`]
    /// only). A `Vec`, whose growth the inflater bounds exactly.
    pub(super) inflated: Vec<u8>,
}

/// The data frame being received: whether its payload is text, and the
/// bytes of a code point that a previous frame left incomplete.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct FrameText {
    pub(super) is_text: bool,
    /// The frame belongs to a compressed message: its payload is checked
    /// once inflated, not as it arrives.
    pub(super) compressed: bool,
    pub(super) carried: [u8; 4],
    pub(super) carried_len: usize,
}

/// What decoding yields besides events: the peer's close frame, or a
/// violation of the protocol or a limit. Acted on at once by
/// [`Connection::poll_event`]; held by [`Connection::poll_control_event`].
#[derive(Debug)]
pub(super) enum End {
    Close(Option<CloseFrame>),
    Violation(ProtocolError),
}

/// One result of decoding.
#[derive(Debug)]
pub(super) enum Decoded {
    Event(Event),
    End(End),
}

/// Input decoded ahead of the application, in arrival order.
#[derive(Debug, Default)]
pub(super) struct Ahead {
    /// Messages (or fragments) waiting for [`Connection::poll_event`].
    pub(super) events: VecDeque<Event>,
    /// Their payload bytes.
    pub(super) bytes: usize,
    /// A close or violation found behind them, while the connection was
    /// open: acted on once `events` are delivered, or at `deadline`.
    pub(super) end: Option<(End, Option<Instant>)>,
}

impl Connection {
    /// Acts on the peer's close frame or a violation.
    pub(super) fn end(&mut self, end: End) {
        match end {
            End::Close(frame) => self.on_close(frame),
            End::Violation(error) => self.fail(error),
        }
    }

    /// Decodes until an event, the peer's close frame or a violation;
    /// `None` when more input is needed.
    pub(super) fn decode(&mut self) -> Option<Decoded> {
        loop {
            let step = match self.decoder.step(&mut self.read_buf) {
                Ok(step) => step,
                Err(error) => return Some(Decoded::End(End::Violation(error))),
            };
            let result = match step {
                Step::NeedMore => return None,
                Step::Header(header) => self.on_header(&header).map(|()| None),
                Step::Payload(range) => self.check_text(range).map(|()| None),
                Step::Complete {
                    header,
                    payload,
                    fresh,
                } => self
                    .check_text(fresh)
                    .and_then(|()| self.on_frame(header, payload)),
            };
            match result {
                Ok(Some(decoded)) => return Some(decoded),
                Ok(None) => {}
                Err(error) => return Some(Decoded::End(End::Violation(error))),
            }
        }
    }

    pub(super) fn on_header(&mut self, header: &FrameHeader) -> Result<(), ProtocolError> {
        let len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
        match header.opcode {
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                self.frame_text.is_text = false;
                self.frame_text.compressed = false;
                return Ok(());
            }
            OpCode::Text | OpCode::Binary => {
                if self.incoming.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                // The decoder admits RSV1 only once deflate is on.
                let compressed = header.rsv & RSV1 != 0;
                // A compressed frame's size says little about its message's:
                // that is checked as it inflates.
                if !compressed {
                    self.check_message_len(0, len)?;
                }
                let text = header.opcode == OpCode::Text;
                if !header.fin {
                    self.incoming = Some(Incoming {
                        text,
                        compressed,
                        len: 0,
                        fragments: 0,
                        started: self.now,
                        buffer: BytesMut::new(),
                        inflated: Vec::new(),
                    });
                }
                self.utf8.reset();
                self.frame_text.is_text = text;
                self.frame_text.compressed = compressed;
            }
            OpCode::Continuation => {
                let Some(incoming) = &self.incoming else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                if incoming.fragments + 1 > self.config.max_fragments {
                    return Err(ProtocolError::TooManyFragments {
                        max: self.config.max_fragments,
                    });
                }
                let (so_far, text, compressed) = (incoming.len, incoming.text, incoming.compressed);
                if !compressed {
                    self.check_message_len(so_far, len)?;
                }
                self.frame_text.is_text = text;
                self.frame_text.compressed = compressed;
            }
        }
        let pending = self.utf8.pending();
        self.frame_text.carried_len = pending.len();
        self.frame_text.carried[..pending.len()].copy_from_slice(pending);
        Ok(())
    }

    /// Validates newly arrived bytes of a text message's frame.
    pub(super) fn check_text(&mut self, range: Range<usize>) -> Result<(), ProtocolError> {
        if self.frame_text.is_text
            && !self.frame_text.compressed
            && self.utf8.feed(&self.read_buf[range]).is_err()
        {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(())
    }

    pub(super) fn check_message_len(
        &self,
        so_far: usize,
        frame: usize,
    ) -> Result<(), ProtocolError> {
        match so_far.checked_add(frame) {
            Some(total) if total <= self.config.max_message_size => Ok(()),
            _ => Err(ProtocolError::MessageTooLarge {
                max: self.config.max_message_size,
            }),
        }
    }

    /// Handles a complete frame whose payload is `read_buf[payload]`.
    pub(super) fn on_frame(
        &mut self,
        header: FrameHeader,
        payload: Range<usize>,
    ) -> Result<Option<Decoded>, ProtocolError> {
        let event = match header.opcode {
            OpCode::Ping => {
                self.check_ping_rate()?;
                let payload = Bytes::copy_from_slice(&self.read_buf[payload]);
                self.answer_ping(payload.clone());
                Event::Ping(payload)
            }
            OpCode::Pong => Event::Pong(Bytes::copy_from_slice(&self.read_buf[payload])),
            OpCode::Close => {
                let frame = CloseFrame::parse(&self.read_buf[payload])?;
                return Ok(Some(Decoded::End(End::Close(frame))));
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                return Ok(self.on_data(header.fin, payload)?.map(Decoded::Event));
            }
        };
        Ok(Some(Decoded::Event(event)))
    }

    pub(super) fn check_ping_rate(&mut self) -> Result<(), ProtocolError> {
        let Some(limit) = self.config.ping_rate_limit else {
            return Ok(());
        };
        let (start, count) = &mut self.ping_window;
        if self.now.duration_since(*start) >= Duration::from_secs(1) {
            *start = self.now;
            *count = 0;
        }
        *count = count.saturating_add(1);
        if *count > limit {
            return Err(ProtocolError::PingFlood);
        }
        Ok(())
    }

    pub(super) fn on_data(
        &mut self,
        fin: bool,
        payload: Range<usize>,
    ) -> Result<Option<Event>, ProtocolError> {
        if self.frame_text.compressed {
            return self.on_compressed_data(fin, payload);
        }
        let text = self.frame_text.is_text;
        if fin && text {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        let Some(mut incoming) = self.incoming.take() else {
            let data = self.take_payload(payload);
            return Ok(Some(self.single_frame_event(whole_message(text, data))));
        };
        incoming.len += payload.len();
        incoming.fragments += 1;
        let event = match self.config.receive_mode {
            ReceiveMode::Buffered => {
                incoming.buffer.extend_from_slice(&self.read_buf[payload]);
                fin.then(|| {
                    let data = std::mem::take(&mut incoming.buffer).freeze();
                    Event::Message(whole_message(text, data))
                })
            }
            ReceiveMode::Streaming => {
                let data = self.take_payload(payload);
                Some(Event::Fragment(Fragment {
                    data: self.streamed_piece(text, data),
                    is_first: incoming.fragments == 1,
                    is_last: fin,
                }))
            }
        };
        if !fin {
            self.incoming = Some(incoming);
        }
        Ok(event)
    }

    /// A complete frame of a compressed message: inflates it within the
    /// message limit, checks the inflated text, and delivers as
    /// [`on_data`](Self::on_data) does.
    pub(super) fn on_compressed_data(
        &mut self,
        fin: bool,
        payload: Range<usize>,
    ) -> Result<Option<Event>, ProtocolError> {
        let text = self.frame_text.is_text;
        let max = self.config.max_message_size;
        let streaming = self.config.receive_mode == ReceiveMode::Streaming;
        let mut incoming = self.incoming.take();
        // Buffered fragments inflate onto what came before; streamed ones
        // into a fresh buffer, with the message so far counted in the limit.
        let (mut out, so_far) = match incoming.as_mut() {
            Some(incoming) if !streaming => (std::mem::take(&mut incoming.inflated), 0),
            Some(incoming) => (Vec::new(), incoming.len),
            None => (Vec::new(), 0),
        };
        let start = out.len();
        let deflate = self
            .deflate
            .as_mut()
            .expect("RSV1 frames are admitted only with deflate on");
        deflate
            .inflate(&self.read_buf[payload], fin, max - so_far, &mut out)
            .map_err(|error| match error {
                InflateError::TooBig { .. } => ProtocolError::MessageTooLarge { max },
                _ => ProtocolError::CorruptCompressedData,
            })?;
        if text {
            self.utf8
                .feed(&out[start..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            if fin {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        }
        let Some(mut incoming) = incoming else {
            let message = whole_message(text, Bytes::from(out));
            return Ok(Some(self.single_frame_event(message)));
        };
        incoming.len = so_far + out.len();
        incoming.fragments += 1;
        let event = if streaming {
            Some(Event::Fragment(Fragment {
                data: self.streamed_piece(text, Bytes::from(out)),
                is_first: incoming.fragments == 1,
                is_last: fin,
            }))
        } else if fin {
            Some(Event::Message(whole_message(text, Bytes::from(out))))
        } else {
            incoming.inflated = out;
            None
        };
        if !fin {
            self.incoming = Some(incoming);
        }
        Ok(event)
    }

    /// The event for a message that came in one frame, in either mode.
    pub(super) fn single_frame_event(&self, message: Message) -> Event {
        match self.config.receive_mode {
            ReceiveMode::Buffered => Event::Message(message),
            ReceiveMode::Streaming => Event::Fragment(Fragment {
                data: message,
                is_first: true,
                is_last: true,
            }),
        }
    }

    /// One streamed frame's data: for text, its whole code points.
    pub(super) fn streamed_piece(&self, text: bool, data: Bytes) -> Message {
        if text {
            Message::Text(self.text_fragment(data))
        } else {
            Message::Binary(data)
        }
    }

    /// The whole code points of a streamed text frame: the bytes a previous
    /// frame left incomplete, then this payload minus any incomplete tail.
    pub(super) fn text_fragment(&self, payload: Bytes) -> Utf8Bytes {
        let carried = &self.frame_text.carried[..self.frame_text.carried_len];
        let pending = self.utf8.pending().len();
        let data = if carried.is_empty() {
            payload.slice(..payload.len() - pending)
        } else {
            let mut joined = BytesMut::with_capacity(carried.len() + payload.len());
            joined.extend_from_slice(carried);
            joined.extend_from_slice(&payload);
            joined.truncate(joined.len() - pending);
            joined.freeze()
        };
        Utf8Bytes::from_validated(data)
    }

    /// The payload of the complete frame at `read_buf[payload]`.
    ///
    /// Payloads much smaller than the read allocation they live in are
    /// copied, so that an application holding on to a small message does
    /// not keep a large buffer alive: a retained payload pins at most eight
    /// times its own size. Larger ones are split off without a copy.
    pub(super) fn take_payload(&mut self, payload: Range<usize>) -> Bytes {
        if payload.len().saturating_mul(8) < self.read_alloc {
            let data = Bytes::copy_from_slice(&self.read_buf[payload]);
            // Now rather than at the next step, so a buffer holding nothing
            // else is empty and the next `poll_event` returns at once.
            self.decoder.discard_complete(&mut self.read_buf);
            data
        } else {
            self.decoder.take_payload(&mut self.read_buf).freeze()
        }
    }

    pub(super) fn on_close(&mut self, frame: Option<CloseFrame>) {
        let (code, reason) = match frame {
            Some(CloseFrame { code, reason }) => (code, reason),
            None => (CloseCode::NO_STATUS, String::new()),
        };
        let initiated_by = match self.state {
            State::Open => {
                // Echo the peer's code, or send an empty close if it gave none.
                let reply = (code != CloseCode::NO_STATUS).then_some(code);
                self.push_close(reply, "");
                Side::Remote
            }
            State::CloseSent { .. } | State::Closed => Side::Local,
        };
        self.finish(code, reason, CloseCause::Handshake { initiated_by });
    }

    /// Fails the connection: sends a close frame with the error's code
    /// (unless one was sent already), stops reading and records the event.
    pub(super) fn fail(&mut self, error: ProtocolError) {
        let code = error.close_code();
        let reason = error.to_string();
        let reason = truncate_reason(&reason, MAX_CLOSE_REASON);
        if matches!(self.state, State::Open) {
            self.push_close(Some(code), reason);
        }
        self.finish(
            code,
            reason.to_owned(),
            CloseCause::ProtocolViolation(error),
        );
    }

    /// Moves to `Closed` and records the final event.
    pub(super) fn finish(&mut self, code: CloseCode, reason: String, cause: CloseCause) {
        self.state = State::Closed;
        self.incoming = None;
        self.pending_pong = None;
        self.discard_input();
        self.closed_event = Some(Closed {
            code,
            reason,
            cause,
        });
    }

    // ---- sending -------------------------------------------------------
}

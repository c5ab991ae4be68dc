//! permessage-deflate as it runs inside one connection: the agreed
//! parameters applied to our role, and a compressor and decompressor made
//! on first use.

use flate2::Compression;

use super::codec::{Deflater, InflateError, Inflater};
use super::negotiation::{DeflateConfig, DeflateParams};
use crate::role::Role;

/// Scratch capacity kept between compressed sends; more is released.
const SCRATCH_KEEP: usize = 64 * 1024;

/// One direction's window and whether its context is reset per message.
#[derive(Debug, Clone, Copy)]
struct Direction {
    window_bits: u8,
    no_context_takeover: bool,
}

/// The compression state of one connection.
#[derive(Debug)]
pub(crate) struct DeflateState {
    agreed: DeflateParams,
    outgoing: Direction,
    incoming: Direction,
    level: Compression,
    threshold: usize,
    deflater: Option<Deflater>,
    inflater: Option<Inflater>,
    /// Where a message is compressed before it is framed.
    pub(crate) scratch: Vec<u8>,
}

impl DeflateState {
    pub(crate) fn new(role: Role, agreed: DeflateParams, config: &DeflateConfig) -> Self {
        let server = Direction {
            window_bits: agreed.server_max_window_bits,
            no_context_takeover: agreed.server_no_context_takeover,
        };
        let client = Direction {
            window_bits: agreed.client_max_window_bits,
            no_context_takeover: agreed.client_no_context_takeover,
        };
        let (outgoing, incoming) = match role {
            Role::Server => (server, client),
            Role::Client => (client, server),
        };
        Self {
            agreed,
            outgoing,
            incoming,
            level: config.level,
            threshold: config.threshold,
            deflater: None,
            inflater: None,
            scratch: Vec::new(),
        }
    }

    /// What was agreed in the handshake.
    pub(crate) fn agreed(&self) -> &DeflateParams {
        &self.agreed
    }

    /// Whether a whole message of `len` bytes is worth compressing.
    pub(crate) fn worth_compressing(&self, len: usize) -> bool {
        len >= self.threshold
    }

    /// Whether our compressor resets after every message, so that sending
    /// one message uncompressed cannot desynchronise the peer's context.
    pub(crate) fn outgoing_resets(&self) -> bool {
        self.outgoing.no_context_takeover
    }

    /// Compresses `payload` into `scratch` (cleared first).
    pub(crate) fn compress(&mut self, payload: &[u8], fin: bool) {
        let Direction {
            window_bits,
            no_context_takeover,
        } = self.outgoing;
        let level = self.level;
        let deflater = self
            .deflater
            .get_or_insert_with(|| Deflater::new(window_bits, no_context_takeover, level));
        self.scratch.clear();
        deflater.compress(payload, fin, &mut self.scratch);
    }

    /// Inflates the next piece of a compressed message into `out`, which
    /// may grow to `limit` bytes.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        fin: bool,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let Direction {
            window_bits,
            no_context_takeover,
        } = self.incoming;
        self.inflater
            .get_or_insert_with(|| Inflater::new(window_bits, no_context_takeover))
            .inflate(input, fin, limit, out)
    }

    /// Releases scratch space past what is kept between sends.
    pub(crate) fn trim_scratch(&mut self) {
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
    }

    /// Releases what an idle connection does not need: the scratch buffer,
    /// and each side's (de)compressor whose context is reset per message
    /// anyway. `receiving` and `sending` say a compressed message is half
    /// received or half sent, so that side's state must stay.
    pub(crate) fn shrink(&mut self, receiving: bool, sending: bool) {
        self.scratch = Vec::new();
        if self.outgoing.no_context_takeover && !sending {
            self.deflater = None;
        }
        if self.incoming.no_context_takeover && !receiving {
            self.inflater = None;
        }
    }

    /// Whether a compressor or decompressor is allocated (for tests).
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> (bool, bool) {
        (self.deflater.is_some(), self.inflater.is_some())
    }
}

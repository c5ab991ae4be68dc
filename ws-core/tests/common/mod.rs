//! A client and a server wired together on a virtual clock.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use ws_core::deflate::DeflateConfig;
use ws_core::handshake::{Accept, ClientHandshake, ClientRequest, ServerHandshake};
use ws_core::{Config, Connection, Event, HandshakeLimits};

/// Which way bytes travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    ToServer,
    ToClient,
}

/// Edits the bytes of one transfer in flight.
pub(crate) type Tamper = Box<dyn FnMut(Direction, &mut Vec<u8>)>;

/// Two connections after a real handshake, exchanging bytes in chunks of
/// `chunk` bytes (cycled), with a clock that only moves when told to.
pub(crate) struct Pair {
    pub(crate) client: Connection,
    pub(crate) server: Connection,
    pub(crate) now: Instant,
    pub(crate) client_events: Vec<Event>,
    pub(crate) server_events: Vec<Event>,
    /// Chunk sizes applied in turn to every transfer.
    pub(crate) chunks: Vec<usize>,
    /// While false, bytes in that direction are lost (a half-open link).
    pub(crate) link_to_server: bool,
    pub(crate) link_to_client: bool,
    /// Edits bytes in flight.
    pub(crate) tamper: Option<Tamper>,
    chunk_at: usize,
}

impl Pair {
    pub(crate) fn new(client_config: Config, server_config: Config) -> Self {
        Self::negotiated(client_config, server_config, None, None)
    }

    /// A pair whose handshake offered (client) and accepted (server)
    /// permessage-deflate under these configurations, each side turning on
    /// what was agreed.
    pub(crate) fn negotiated(
        client_config: Config,
        server_config: Config,
        client_deflate: Option<DeflateConfig>,
        server_deflate: Option<DeflateConfig>,
    ) -> Self {
        let now = Instant::now();
        let mut request = ClientRequest::new("ws://localhost/test").unwrap();
        if let Some(config) = &client_deflate {
            request = request.deflate(config.clone());
        }
        let (mut client_hs, request_bytes) =
            ClientHandshake::new(&request, [3; 16], HandshakeLimits::default(), now).unwrap();
        let mut server_hs = ServerHandshake::new(HandshakeLimits::default(), now);
        let upgrade = server_hs.handle_input(&request_bytes).unwrap().unwrap();
        let mut accept = Accept::new();
        let agreed = server_deflate
            .as_ref()
            .and_then(|config| upgrade.negotiate_deflate(config));
        if let Some(agreed) = agreed {
            accept = accept.deflate(agreed);
        }
        let accepted = upgrade.accept(accept).unwrap();
        let response = client_hs
            .handle_input(&accepted.to_bytes())
            .unwrap()
            .unwrap();
        assert!(response.rest.is_empty());
        assert_eq!(response.deflate, accepted.deflate());
        let mut client = Connection::client(client_config, now, [9; 32]);
        let mut server = Connection::server(server_config, now);
        if let (Some(agreed), Some(config)) = (response.deflate, &client_deflate) {
            client = client.with_deflate(agreed, config);
        }
        if let (Some(agreed), Some(config)) = (accepted.deflate(), &server_deflate) {
            server = server.with_deflate(agreed, config);
        }
        Self {
            client,
            server,
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
            chunks: vec![usize::MAX],
            link_to_server: true,
            link_to_client: true,
            tamper: None,
            chunk_at: 0,
        }
    }

    pub(crate) fn with_defaults() -> Self {
        Self::new(Config::client(), Config::server())
    }

    fn next_chunk(&mut self) -> usize {
        let size = self.chunks[self.chunk_at % self.chunks.len()].max(1);
        self.chunk_at += 1;
        size
    }

    /// Moves bytes both ways and collects events until nothing moves.
    pub(crate) fn drive(&mut self) {
        loop {
            self.client_events
                .extend(std::iter::from_fn(|| self.client.poll_event()));
            self.server_events
                .extend(std::iter::from_fn(|| self.server.poll_event()));
            let mut moved = false;
            for direction in [Direction::ToServer, Direction::ToClient] {
                let (from, up) = match direction {
                    Direction::ToServer => (&mut self.client, self.link_to_server),
                    Direction::ToClient => (&mut self.server, self.link_to_client),
                };
                let mut bytes = Vec::new();
                while let Some(chunk) = from.poll_transmit() {
                    bytes.extend_from_slice(&chunk);
                }
                if bytes.is_empty() || !up {
                    continue;
                }
                if let Some(tamper) = &mut self.tamper {
                    tamper(direction, &mut bytes);
                }
                moved = true;
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let size = self.next_chunk().min(rest.len());
                    let (piece, tail) = rest.split_at(size);
                    let to = match direction {
                        Direction::ToServer => &mut self.server,
                        Direction::ToClient => &mut self.client,
                    };
                    to.handle_read(piece, self.now);
                    rest = tail;
                    let events = std::iter::from_fn(|| to.poll_event()).collect::<Vec<_>>();
                    match direction {
                        Direction::ToServer => self.server_events.extend(events),
                        Direction::ToClient => self.client_events.extend(events),
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances the clock by `by`, firing every timer that falls due on the
    /// way, in order, and driving after each.
    pub(crate) fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        loop {
            self.drive();
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= target => {
                    self.now = self.now.max(at);
                    self.client.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = target;
        self.drive();
    }
}

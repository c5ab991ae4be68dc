//! permessage-deflate negotiation (RFC 7692 sections 5 and 7.1): the
//! client's offer, the server's choice among offers and its answer, and the
//! client's check of that answer.
//!
//! Hostile headers get a clean outcome, never a panic: the server declines
//! an offer with an unknown, duplicate or invalid parameter (and takes the
//! next acceptable one, or none); the client fails the handshake with a
//! [`NegotiationError`] when the server answers with anything it did not
//! offer or cannot honour.

use std::fmt;

use flate2::Compression;

/// The extension's registered name.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// Smallest LZ77 window this implementation uses. RFC 7692 allows 8, but
/// zlib's raw deflate cannot produce an 8-bit window, so offers that
/// require one are declined.
pub const MIN_WINDOW_BITS: u8 = 9;
/// Largest LZ77 window (32 KiB).
pub const MAX_WINDOW_BITS: u8 = 15;

/// What one side is willing to negotiate, and how it compresses.
///
/// Memory per connection, measured with zlib-rs (`tests/deflate_memory.rs`
/// checks these figures). Nothing is allocated until the first compressed
/// message goes out or comes in; then:
///
/// | state | memory | kept |
/// |---|---|---|
/// | compressor, 15-bit window (default) | about 370 KiB | for the connection's life with context takeover |
/// | compressor, 12-bit window | about 260 KiB | likewise |
/// | compressor, 9-bit window | about 245 KiB | likewise |
/// | decompressor, any window | about 46 KiB | likewise |
/// | either, under `no_context_takeover` for its direction | the same while a message is in progress | released whenever the connection goes idle |
///
/// Most of a compressor is zlib's hash table and pending buffer, which do
/// not shrink with the window; zlib-rs also gives every decompressor a
/// full 32 KiB window. So with context takeover on both sides, a busy
/// connection holds about 420 KiB; with `server_no_context_takeover` and
/// `client_no_context_takeover` an idle one holds nothing, at some cost
/// in ratio for small messages (each message is compressed on its own).
/// Measured as resident memory of a ws-tokio server (its echo benchmark,
/// `--active-memory`), a connection that has compressed a message each way
/// holds about 350 KB with the defaults and 220 KB with 10-bit windows.
/// Where many connections stay open, prefer no context takeover, or leave
/// compression off. Compression is off unless configured on the server
/// and offered by the client.
///
/// Do not compress secrets together with data an attacker can choose in
/// the same context (CRIME, BREACH): send such messages with
/// `send_uncompressed`, or turn context takeover off.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Ask (client) or insist (server) that the server resets its
    /// compression context after every message. Default: `false`.
    pub server_no_context_takeover: bool,
    /// Ask (client) or insist (server) that the client resets its
    /// compression context after every message. Default: `false`.
    pub client_no_context_takeover: bool,
    /// Largest window the server's compressor may use, 9-15. Default: 15.
    pub server_max_window_bits: u8,
    /// Largest window the client's compressor may use, 9-15. Default: 15.
    pub client_max_window_bits: u8,
    /// Messages shorter than this many bytes are sent uncompressed, since
    /// compressing them costs more time than the bytes it saves. Messages
    /// sent in fragments are always compressed. Default: 128.
    pub threshold: usize,
    /// Compression level for what we send. Default: [`Compression::fast`]
    /// (level 1). On zlib-rs, level 1 compresses small messages about 8x
    /// faster than level 2 (0.3 µs against 2 µs for a 300-byte JSON event
    /// with context takeover, at the same ratio); on large messages it
    /// reaches about half the ratio of level 6 (4.7x against 8.7x on 1 MiB
    /// of JSON) at 7x the speed. Raise it where bandwidth costs more than
    /// CPU.
    pub level: Compression,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            threshold: 128,
            level: Compression::fast(),
        }
    }
}

/// What both sides agreed: each direction's window and whether its
/// context is reset after every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The server compresses with at most this window.
    pub server_max_window_bits: u8,
    /// The client compresses with at most this window.
    pub client_max_window_bits: u8,
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` value a server answers with.
    pub fn to_header(&self) -> String {
        extension_value(self, false)
    }
}

/// `permessage-deflate` with the parameters that differ from the defaults;
/// `bare_client_bits` adds a valueless `client_max_window_bits` when the
/// client's window is the default (an offer saying a cap is acceptable).
fn extension_value(params: &DeflateParams, bare_client_bits: bool) -> String {
    let mut out = String::from(PERMESSAGE_DEFLATE);
    if params.server_no_context_takeover {
        out.push_str("; server_no_context_takeover");
    }
    if params.client_no_context_takeover {
        out.push_str("; client_no_context_takeover");
    }
    if params.server_max_window_bits < MAX_WINDOW_BITS {
        out.push_str(&format!(
            "; server_max_window_bits={}",
            params.server_max_window_bits
        ));
    }
    if params.client_max_window_bits < MAX_WINDOW_BITS {
        out.push_str(&format!(
            "; client_max_window_bits={}",
            params.client_max_window_bits
        ));
    } else if bare_client_bits {
        out.push_str("; client_max_window_bits");
    }
    out
}

/// Why a server's answer cannot be accepted; the client fails the
/// handshake (and, where a connection exists, closes with 1010).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The header is not a valid extension list.
    #[error("malformed Sec-WebSocket-Extensions header")]
    Malformed,
    /// The server accepted an extension the client did not offer.
    #[error("the server accepted extension {0:?}, which was not offered")]
    NotOffered(String),
    /// permessage-deflate appears more than once in the answer.
    #[error("the server accepted permessage-deflate more than once")]
    Repeated,
    /// A parameter is unknown, repeated, has an invalid value, or is one
    /// the client did not allow.
    #[error("invalid permessage-deflate parameter in the answer: {0}")]
    Parameter(String),
}

/// The client's offer for `config`, as a `Sec-WebSocket-Extensions` value.
/// `client_max_window_bits` is always offered (bare when 15) so the server
/// may shrink the client's window.
pub fn client_offer(config: &DeflateConfig) -> String {
    let wanted = DeflateParams {
        server_no_context_takeover: config.server_no_context_takeover,
        client_no_context_takeover: config.client_no_context_takeover,
        server_max_window_bits: config.server_max_window_bits,
        client_max_window_bits: config.client_max_window_bits,
    };
    extension_value(&wanted, true)
}

/// One extension in a header: its name and parameters, values unquoted.
#[derive(Debug, PartialEq, Eq)]
struct Extension {
    name: String,
    params: Vec<(String, Option<String>)>,
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parses comma-separated extensions with `;` parameters (RFC 6455 9.1),
/// over every header value in order. `None` if any of it is malformed.
fn parse_extensions<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Vec<Extension>> {
    let mut out = Vec::new();
    for value in values {
        let mut chars = value.chars().peekable();
        let skip_ws = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        };
        let token = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut t = String::new();
            while let Some(c) = chars.next_if(|c| is_token_char(*c)) {
                t.push(c);
            }
            (!t.is_empty()).then_some(t)
        };
        loop {
            skip_ws(&mut chars);
            // Empty list elements (", ,") are allowed by the list syntax.
            if chars.next_if_eq(&',').is_some() {
                continue;
            }
            if chars.peek().is_none() {
                break;
            }
            let name = token(&mut chars)?;
            let mut params = Vec::new();
            loop {
                skip_ws(&mut chars);
                match chars.next() {
                    None | Some(',') => break,
                    Some(';') => {}
                    Some(_) => return None,
                }
                skip_ws(&mut chars);
                let key = token(&mut chars)?;
                skip_ws(&mut chars);
                let value = if chars.next_if_eq(&'=').is_some() {
                    skip_ws(&mut chars);
                    if chars.next_if_eq(&'"').is_some() {
                        let mut v = String::new();
                        loop {
                            match chars.next()? {
                                '"' => break,
                                '\\' => v.push(chars.next()?),
                                c => v.push(c),
                            }
                        }
                        // A quoted value must still be a token (RFC 6455 9.1).
                        if v.is_empty() || !v.chars().all(is_token_char) {
                            return None;
                        }
                        Some(v)
                    } else {
                        Some(token(&mut chars)?)
                    }
                } else {
                    None
                };
                params.push((key.to_ascii_lowercase(), value));
            }
            out.push(Extension {
                name: name.to_ascii_lowercase(),
                params,
            });
        }
    }
    Some(out)
}

/// A window-bits value: 1-2 ASCII digits in 8..=15 (no sign, no leading
/// zero), as RFC 7692 7.1.2 requires.
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty()
        || value.len() > 2
        || value.starts_with('0')
        || !value.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (8..=MAX_WINDOW_BITS).contains(&bits).then_some(bits)
}

/// An offer's parameters, validated: `None` if the offer must be declined
/// for an unknown, repeated or invalid parameter.
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

fn parse_offer(params: &[(String, Option<String>)]) -> Option<Offer> {
    let mut offer = Offer::default();
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in params {
        if seen.contains(&key.as_str()) {
            return None;
        }
        seen.push(key);
        match (key.as_str(), value.as_deref()) {
            ("server_no_context_takeover", None) => offer.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => offer.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => {
                offer.server_max_window_bits = Some(window_bits(v)?);
            }
            ("client_max_window_bits", None) => offer.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(v)) => {
                offer.client_max_window_bits = Some(Some(window_bits(v)?));
            }
            _ => return None,
        }
    }
    Some(offer)
}

/// The server's side: the first permessage-deflate offer among
/// `Sec-WebSocket-Extensions` `values` that it can accept under `config`,
/// as the agreed parameters (answer with [`DeflateParams::to_header`]).
/// `None` when there is no acceptable offer (or the header is malformed):
/// the connection then proceeds uncompressed.
pub fn server_negotiate<'a>(
    values: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Option<DeflateParams> {
    let extensions = parse_extensions(values)?;
    extensions
        .iter()
        .filter(|e| e.name == PERMESSAGE_DEFLATE)
        .filter_map(|e| parse_offer(&e.params))
        .find_map(|offer| accept_offer(&offer, config))
}

fn accept_offer(offer: &Offer, config: &DeflateConfig) -> Option<DeflateParams> {
    // The client caps our window; we cannot go below 9 bits.
    let server_bits = offer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS).min(
        config
            .server_max_window_bits
            .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS),
    );
    if server_bits < MIN_WINDOW_BITS {
        return None;
    }
    // We may cap the client's window only if it said it can take a cap.
    let wanted_client = config
        .client_max_window_bits
        .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
    let client_bits = match offer.client_max_window_bits {
        None if wanted_client < MAX_WINDOW_BITS => return None,
        None => MAX_WINDOW_BITS,
        Some(None) => wanted_client,
        Some(Some(bits)) => bits.min(wanted_client),
    };
    Some(DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover
            || config.server_no_context_takeover,
        // Asking the client to reset its context is always allowed.
        client_no_context_takeover: offer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    })
}

/// The client's side: checks the server's `Sec-WebSocket-Extensions`
/// answer against what [`client_offer`] offered for `config`. `Ok(None)`:
/// no compression. An error fails the handshake.
pub fn client_accept<'a>(
    values: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Result<Option<DeflateParams>, NegotiationError> {
    let extensions = parse_extensions(values).ok_or(NegotiationError::Malformed)?;
    let mut agreed = None;
    for extension in &extensions {
        if extension.name != PERMESSAGE_DEFLATE {
            return Err(NegotiationError::NotOffered(extension.name.clone()));
        }
        if agreed.is_some() {
            return Err(NegotiationError::Repeated);
        }
        agreed = Some(check_answer(&extension.params, config)?);
    }
    Ok(agreed)
}

fn check_answer(
    params: &[(String, Option<String>)],
    config: &DeflateConfig,
) -> Result<DeflateParams, NegotiationError> {
    let bad = |what: &dyn fmt::Display| NegotiationError::Parameter(what.to_string());
    let mut agreed = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: config.client_no_context_takeover,
        server_max_window_bits: MAX_WINDOW_BITS,
        client_max_window_bits: MAX_WINDOW_BITS,
    };
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in params {
        if seen.contains(&key.as_str()) {
            return Err(bad(&format_args!("{key} repeated")));
        }
        seen.push(key);
        let bits = |v: Option<&str>| {
            v.and_then(window_bits)
                .ok_or_else(|| bad(&format_args!("{key} needs a value from 8 to 15")))
        };
        match key.as_str() {
            "server_no_context_takeover" if value.is_none() => {
                agreed.server_no_context_takeover = true;
            }
            "client_no_context_takeover" if value.is_none() => {
                agreed.client_no_context_takeover = true;
            }
            "server_max_window_bits" => {
                let bits = bits(value.as_deref())?;
                if bits < MIN_WINDOW_BITS {
                    return Err(bad(&"server_max_window_bits=8 is not supported"));
                }
                agreed.server_max_window_bits = bits;
            }
            "client_max_window_bits" => {
                let bits = bits(value.as_deref())?;
                if bits < MIN_WINDOW_BITS || bits > config.client_max_window_bits {
                    return Err(bad(&format_args!(
                        "client_max_window_bits={bits} outside what was offered"
                    )));
                }
                agreed.client_max_window_bits = bits;
            }
            other => return Err(bad(&format_args!("unknown parameter {other}"))),
        }
    }
    if config.server_no_context_takeover && !agreed.server_no_context_takeover {
        return Err(bad(&"server_no_context_takeover was requested"));
    }
    if agreed.server_max_window_bits > config.server_max_window_bits {
        return Err(bad(&"server_max_window_bits above the requested limit"));
    }
    // A server that did not answer a requested window limit exceeds it.
    if config.server_max_window_bits < MAX_WINDOW_BITS && !seen.contains(&"server_max_window_bits")
    {
        return Err(bad(&"server_max_window_bits was requested"));
    }
    Ok(agreed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiate(header: &str) -> Option<DeflateParams> {
        server_negotiate([header], &DeflateConfig::default())
    }

    fn params(server_nct: bool, client_nct: bool, server: u8, client: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: server_nct,
            client_no_context_takeover: client_nct,
            server_max_window_bits: server,
            client_max_window_bits: client,
        }
    }

    // Found by the deflate fuzz target: a client that offers an 8-bit
    // window is held to it (RFC 7692 allows any value up to the offer, and
    // we inflate any window), while our own client never offers one, so it
    // never meets that answer.
    #[test]
    fn a_client_offering_an_8_bit_window_is_held_to_it() {
        let agreed = negotiate("permessage-deflate; client_max_window_bits=8").unwrap();
        assert_eq!(agreed.client_max_window_bits, 8);
        assert!(agreed.to_header().contains("client_max_window_bits=8"));
        assert!(
            !client_offer(&DeflateConfig::default()).contains("=8"),
            "our client offers 9 bits at the least"
        );
    }

    #[test]
    fn server_accepts_the_plain_offer() {
        let agreed = negotiate("permessage-deflate").unwrap();
        assert_eq!(agreed, params(false, false, 15, 15));
        assert_eq!(agreed.to_header(), "permessage-deflate");
    }

    #[test]
    fn server_honours_every_parameter() {
        let agreed = negotiate(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12",
        )
        .unwrap();
        assert_eq!(agreed, params(true, true, 10, 12));
        assert_eq!(
            agreed.to_header(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12"
        );
        // Quoted values are tokens too.
        assert_eq!(
            negotiate(r#"permessage-deflate; server_max_window_bits="11""#)
                .unwrap()
                .server_max_window_bits,
            11
        );
    }

    #[test]
    fn server_config_tightens_the_agreement() {
        let config = DeflateConfig {
            server_no_context_takeover: true,
            server_max_window_bits: 11,
            client_max_window_bits: 10,
            ..DeflateConfig::default()
        };
        let agreed =
            server_negotiate(["permessage-deflate; client_max_window_bits"], &config).unwrap();
        assert_eq!(agreed, params(true, false, 11, 10));
        // A client that cannot take a window cap is declined when we need one.
        assert_eq!(server_negotiate(["permessage-deflate"], &config), None);
    }

    #[test]
    fn server_declines_bad_offers_and_takes_the_next_good_one() {
        let bad = [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=99999999999999999999",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            "permessage-deflate; __proto__",
        ];
        for offer in bad {
            assert_eq!(negotiate(offer), None, "{offer}");
            let with_fallback = format!("{offer}, permessage-deflate; client_max_window_bits");
            assert_eq!(
                negotiate(&with_fallback),
                Some(params(false, false, 15, 15)),
                "{with_fallback}"
            );
        }
        // Across several header lines, in order.
        let agreed = server_negotiate(
            [
                "x-webkit-deflate-frame",
                "permessage-deflate; server_max_window_bits=9",
            ],
            &DeflateConfig::default(),
        );
        assert_eq!(agreed, Some(params(false, false, 9, 15)));
    }

    #[test]
    fn malformed_headers_are_declined_without_panicking() {
        for header in [
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate; server_max_window_bits=\"1 0\"",
            "permessage-deflate;",
            "permessage-deflate; =10",
            "permessage-deflate garbage",
            ";",
            "\"quoted\"",
            "permessage-deflate; a=\"\\",
            "é",
        ] {
            assert_eq!(negotiate(header), None, "{header:?}");
        }
        assert_eq!(negotiate(""), None);
        assert_eq!(
            negotiate(" , ,permessage-deflate"),
            Some(params(false, false, 15, 15))
        );
    }

    #[test]
    fn client_offer_and_answer_round_trip() {
        let mut config = DeflateConfig::default();
        assert_eq!(
            client_offer(&config),
            "permessage-deflate; client_max_window_bits"
        );
        config.server_no_context_takeover = true;
        config.server_max_window_bits = 12;
        config.client_max_window_bits = 11;
        let offer = client_offer(&config);
        assert_eq!(
            offer,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; \
             client_max_window_bits=11"
        );
        // What a server of ours answers, a client of ours accepts.
        let agreed = server_negotiate([offer.as_str()], &DeflateConfig::default()).unwrap();
        let accepted = client_accept([agreed.to_header().as_str()], &config).unwrap();
        assert_eq!(accepted, Some(agreed));
        assert_eq!(accepted, Some(params(true, false, 12, 11)));
    }

    #[test]
    fn client_accepts_no_extension() {
        assert_eq!(client_accept([], &DeflateConfig::default()), Ok(None));
    }

    #[test]
    fn client_rejects_answers_it_did_not_offer() {
        let config = DeflateConfig::default();
        let reject = |answer: &str| client_accept([answer], &config).unwrap_err();
        assert_eq!(
            reject("x-unknown"),
            NegotiationError::NotOffered("x-unknown".into())
        );
        assert_eq!(
            reject("permessage-deflate, permessage-deflate"),
            NegotiationError::Repeated
        );
        assert_eq!(
            reject("permessage-deflate; a=\""),
            NegotiationError::Malformed
        );
        for answer in [
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover=yes",
            "permessage-deflate; unknown",
        ] {
            assert!(
                matches!(reject(answer), NegotiationError::Parameter(_)),
                "{answer}"
            );
        }
        // A window cap above what the client offered, or none at all when
        // one was requested.
        let strict = DeflateConfig {
            server_max_window_bits: 10,
            client_max_window_bits: 12,
            ..DeflateConfig::default()
        };
        assert!(client_accept(["permessage-deflate; server_max_window_bits=11"], &strict).is_err());
        assert!(client_accept(["permessage-deflate"], &strict).is_err());
        assert!(
            client_accept(
                ["permessage-deflate; server_max_window_bits=10; client_max_window_bits=13"],
                &strict
            )
            .is_err()
        );
        assert!(client_accept(["permessage-deflate; server_max_window_bits=9"], &strict).is_ok());
        let reset = DeflateConfig {
            server_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        assert!(client_accept(["permessage-deflate"], &reset).is_err());
    }
}

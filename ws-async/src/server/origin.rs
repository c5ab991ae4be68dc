//! Which browser origins may open connections (cross-site WebSocket
//! hijacking protection).

use http::HeaderMap;
use http::header::HOST;

/// Which `Origin` headers an endpoint accepts. Requests without `Origin`
/// (non-browser clients) are always accepted; browsers always send it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum OriginPolicy {
    /// The origin's host and port must equal the request's `Host`. The
    /// default.
    #[default]
    SameOrigin,
    /// The origin must be one of these exactly, compared as normalized
    /// scheme, host and port (`https://app.example` matches
    /// `https://APP.example:443` but not `https://app.example.evil`).
    AllowList(Vec<String>),
    /// Accept any origin: only for endpoints that authenticate every
    /// request by other means than cookies.
    AllowAnyOriginDangerously,
}

/// A parsed origin: lowercase scheme and host, explicit port.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Splits `host[:port]`, with IPv6 hosts in brackets.
pub(super) fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => {
            let port = authority[colon + 1..].parse().ok()?;
            (&authority[..colon], Some(port))
        }
        _ => (authority, None),
    };
    (!host.is_empty()).then_some((host, port))
}

fn parse_origin(text: &str) -> Option<Origin> {
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    // An origin is scheme://host[:port] and nothing else.
    if rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = split_authority(rest)?;
    let port = port.or_else(|| default_port(&scheme))?;
    Some(Origin {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
    })
}

impl OriginPolicy {
    /// An allow-list from origins like `https://app.example`.
    pub fn allow<I: IntoIterator<Item = S>, S: Into<String>>(origins: I) -> Self {
        Self::AllowList(origins.into_iter().map(Into::into).collect())
    }

    /// Whether a request with this `Origin` (and headers) may connect.
    pub fn allows(&self, origin: Option<&str>, headers: &HeaderMap) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        match self {
            Self::AllowAnyOriginDangerously => true,
            Self::AllowList(list) => {
                let Some(origin) = parse_origin(origin) else {
                    return false;
                };
                list.iter()
                    .filter_map(|allowed| parse_origin(allowed))
                    .any(|allowed| allowed == origin)
            }
            Self::SameOrigin => {
                let Some(origin) = parse_origin(origin) else {
                    return false;
                };
                let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
                    return false;
                };
                let Some((host, port)) = split_authority(host) else {
                    return false;
                };
                // A Host without a port means the default port of the
                // scheme (the page's scheme matches the socket's: a page on
                // https opens wss).
                let Some(port) = port.or_else(|| default_port(&origin.scheme)) else {
                    return false;
                };
                host.eq_ignore_ascii_case(&origin.host) && port == origin.port
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, value.parse().unwrap());
        headers
    }

    #[test]
    fn absent_origin_is_allowed() {
        assert!(OriginPolicy::SameOrigin.allows(None, &HeaderMap::new()));
        assert!(OriginPolicy::allow(["https://a.example"]).allows(None, &HeaderMap::new()));
    }

    #[test]
    fn same_origin_compares_host_and_port() {
        let policy = OriginPolicy::SameOrigin;
        assert!(policy.allows(Some("http://chat.example"), &host("chat.example")));
        assert!(policy.allows(Some("https://Chat.Example"), &host("chat.example:443")));
        assert!(policy.allows(Some("http://127.0.0.1:9000"), &host("127.0.0.1:9000")));
        assert!(policy.allows(Some("http://[::1]:9000"), &host("[::1]:9000")));
        assert!(!policy.allows(Some("http://evil.example"), &host("chat.example")));
        assert!(!policy.allows(Some("http://chat.example:8080"), &host("chat.example")));
        assert!(!policy.allows(Some("null"), &host("chat.example")));
        assert!(!policy.allows(Some("http://chat.example.evil"), &host("chat.example")));
    }

    // ROBUSTNESS 6: normalized comparison, no prefix or suffix tricks.
    #[test]
    fn allow_list_is_exact_after_normalization() {
        let policy = OriginPolicy::allow(["https://app.example", "http://localhost:3000"]);
        let h = HeaderMap::new();
        assert!(policy.allows(Some("https://app.example"), &h));
        assert!(policy.allows(Some("HTTPS://APP.EXAMPLE:443"), &h));
        assert!(policy.allows(Some("http://localhost:3000"), &h));
        for evil in [
            "https://app.example.evil",
            "https://evilapp.example",
            "https://app.example:8443",
            "http://app.example",
            "https://app.example/path",
            "https://user@app.example",
            "null",
            "app.example",
        ] {
            assert!(!policy.allows(Some(evil), &h), "{evil}");
        }
        assert!(OriginPolicy::AllowAnyOriginDangerously.allows(Some("https://x"), &h));
    }
}

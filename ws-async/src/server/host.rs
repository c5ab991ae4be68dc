//! Which `Host` a request may name: protection against DNS rebinding.
//!
//! A page on `http://rebind.attacker.example:8080` whose name the attacker
//! then points at 127.0.0.1 reaches a server on loopback with its own
//! origin: `Origin` and `Host` agree, so the same-origin check passes. Only
//! the `Host` header tells that the browser did not mean this server.

use std::net::IpAddr;

use super::origin::split_authority;

/// Which `Host` headers a server answers (see [`ServerConfig::hosts`](crate::ServerConfig::hosts)).
/// Requests without `Host` (not from a browser: browsers always send it)
/// pass; a refused one gets 421 Misdirected Request.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum HostPolicy {
    /// Any `Host`. The default: a library cannot know the names it is
    /// reached by. Servers on loopback or a private network should use
    /// [`HostPolicy::Local`].
    #[default]
    Any,
    /// IP addresses (a browser sends one only when the page's own address
    /// is that IP, so no name can be rebound), `localhost`, and these
    /// names, compared without case; a name given with a port
    /// (`chat.example:8443`) matches only that port, one without matches
    /// any.
    Local(Vec<String>),
}

impl HostPolicy {
    /// [`HostPolicy::Local`] with these names besides IP addresses and
    /// `localhost`.
    pub fn local<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        Self::Local(names.into_iter().map(Into::into).collect())
    }

    /// Whether a request naming `host` (the `Host` header; `None` when it
    /// has none) may be answered.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let (Self::Local(names), Some(host)) = (self, host) else {
            return true;
        };
        let Some((name, port)) = split_authority(host) else {
            return false;
        };
        if is_ip_literal(name) || name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        names.iter().any(|allowed| match split_authority(allowed) {
            Some((allowed, None)) => allowed.eq_ignore_ascii_case(name),
            Some((allowed, Some(allowed_port))) => {
                allowed.eq_ignore_ascii_case(name) && port == Some(allowed_port)
            }
            None => false,
        })
    }
}

/// `127.0.0.1` or `[::1]`, as a browser writes an address in `Host`.
fn is_ip_literal(name: &str) -> bool {
    match name
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => name.parse::<std::net::Ipv4Addr>().is_ok(),
    }
}

/// Whether `name` (as given to [`HostPolicy::local`]) is a host name or
/// address with an optional port: for checking settings early.
pub fn is_host_name(name: &str) -> bool {
    let Some((host, _)) = split_authority(name) else {
        return false;
    };
    if host.parse::<IpAddr>().is_ok() || is_ip_literal(host) {
        return true;
    }
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_allows_everything() {
        assert!(HostPolicy::Any.allows(Some("rebind.attacker.example:8080")));
        assert!(HostPolicy::Any.allows(None));
    }

    // A DNS-rebinding page names its own host; an address, localhost and
    // the names configured are the only ones answered.
    #[test]
    fn local_allows_addresses_localhost_and_its_names() {
        let policy = HostPolicy::local(["chat.example", "Admin.Example:8443"]);
        for good in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "10.1.2.3:80",
            "[::1]:8080",
            "[fe80::1]",
            "localhost:8080",
            "LOCALHOST",
            "chat.example",
            "chat.example:443",
            "CHAT.example:8080",
            "admin.example:8443",
        ] {
            assert!(policy.allows(Some(good)), "{good}");
        }
        for evil in [
            "rebind.attacker.example:8080",
            "127.0.0.1.attacker.example",
            "localhost.attacker.example",
            "localhost.",
            "chat.example.attacker.example",
            "admin.example:9000",
            "admin.example",
            "2130706433",
            "[::1",
            "",
            ":8080",
            "user@chat.example",
        ] {
            assert!(!policy.allows(Some(evil)), "{evil}");
        }
        assert!(policy.allows(None), "no Host: not a browser");
    }

    #[test]
    fn names_are_checked_as_settings() {
        for good in [
            "chat.example",
            "chat.example:443",
            "127.0.0.1",
            "[::1]:80",
            "a-b.c",
        ] {
            assert!(is_host_name(good), "{good}");
        }
        for bad in [
            "",
            "http://chat.example",
            "chat.example/",
            "a..b",
            "a_b",
            "*",
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}

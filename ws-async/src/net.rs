//! Listening sockets made the same way on every runtime, and what an
//! accept loop does about accept errors.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Connections waiting to be accepted, at most (the kernel may cap it
/// lower: `net.core.somaxconn`).
const BACKLOG: i32 = 1024;

/// A non-blocking TCP listener on `addr`, for a runtime to adopt
/// (`tokio::net::TcpListener::from_std`, `async_io::Async::new`).
///
/// An IPv6 address listens on IPv6 only (`IPV6_V6ONLY`): by default Linux
/// lets `[::]:8080` take IPv4 connections too, so listening on
/// `0.0.0.0:8080` and `[::]:8080` side by side, as a dual-stack server
/// does, would fail with "address in use". `SO_REUSEADDR` is set (not on
/// Windows, where it means something else), so a restarted server can
/// listen again while its old connections wait in `TIME_WAIT`.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// What an accept loop does about accept errors: an error that belongs to
/// one connection (reset before it was accepted, and the like) is only
/// logged at debug, and the loop goes on at once; an error of the process
/// or system (out of file descriptors or memory) pauses the loop, 10 ms
/// doubling to 1 s while it lasts, so it does not spin, logged once per
/// episode and again when accepting works. ws-async's server uses it;
/// an accept loop of your own (an HTTP server beside the WebSocket
/// endpoints, say) can too.
///
/// ```
/// use ws_async::net::AcceptBackoff;
///
/// let mut backoff = AcceptBackoff::default();
/// let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
/// assert_eq!(backoff.failed(&reset), None);
/// let exhausted = std::io::Error::from_raw_os_error(24); // EMFILE
/// assert!(backoff.failed(&exhausted).is_some());
/// backoff.succeeded();
/// ```
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// Consecutive failures for lack of resources.
    failures: u32,
}

impl AcceptBackoff {
    /// How long to pause after `error`: `None` for an error that belongs
    /// to one connection, growing pauses while resources are exhausted.
    pub fn failed(&mut self, error: &io::Error) -> Option<Duration> {
        if accept_error_is_per_connection(error) {
            tracing::debug!(%error, "a connection failed before it was accepted");
            return None;
        }
        if self.failures == 0 {
            // Once per episode: every retry would log the same thing.
            tracing::warn!(%error, "accepting connections failed; retrying with back-off");
        }
        self.failures = self.failures.saturating_add(1);
        let shift = (self.failures - 1).min(7);
        Some(Duration::from_millis(10 << shift).min(Duration::from_secs(1)))
    }

    /// Accepting worked: the next failure starts a new episode.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

/// Whether an accept error concerns only the connection being accepted
/// (which is gone; the next accept may succeed at once), as opposed to the
/// process or system running out of file descriptors or memory.
fn accept_error_is_per_connection(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionAborted
            | ConnectionReset
            | ConnectionRefused
            | Interrupted
            | WouldBlock
            | PermissionDenied
            | TimedOut
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
    ) {
        return true;
    }
    // Linux reports some network errors of the pending connection from
    // accept(2): EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET, EOPNOTSUPP.
    cfg!(target_os = "linux") && matches!(error.raw_os_error(), Some(71 | 92 | 112 | 64 | 95))
}

#[cfg(test)]
mod tests {
    use super::*;

    // ROBUSTNESS 101: the same port on 0.0.0.0 and [::], as a dual-stack
    // server listens.
    #[test]
    fn ipv4_and_ipv6_listen_side_by_side() {
        let v4 = bind_tcp("0.0.0.0:0".parse().unwrap()).unwrap();
        let port = v4.local_addr().unwrap().port();
        match bind_tcp(SocketAddr::from(([0u16; 8], port))) {
            Ok(v6) => assert_eq!(v6.local_addr().unwrap().port(), port),
            // A machine without IPv6 cannot show it.
            Err(error) if error.kind() == io::ErrorKind::AddrNotAvailable => {}
            Err(error) if error.raw_os_error() == Some(97) => {} // EAFNOSUPPORT
            Err(error) => panic!("[::]:{port} beside 0.0.0.0:{port}: {error}"),
        }
        // A port taken is still an error.
        assert!(bind_tcp(SocketAddr::from(([0, 0, 0, 0], port))).is_err());
    }
}

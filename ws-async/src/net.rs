//! Listening sockets made the same way on every runtime.

use std::io;
use std::net::SocketAddr;

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

//! What the server counts for an operator (feature `metrics`), through the
//! [`metrics`](https://docs.rs/metrics) facade: a program that installs a
//! recorder (a Prometheus exporter, say) gets these; without the feature
//! every call here compiles to nothing.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `ws_connections_open` | gauge | |
//! | `ws_connections_total` | counter | |
//! | `ws_handshakes_refused_total` | counter | `status` |
//! | `ws_messages_received_total`, `ws_messages_sent_total` | counter | |
//! | `ws_bytes_received_total`, `ws_bytes_sent_total` | counter (payload bytes) | |
//! | `ws_closes_total` | counter | `code` |
//! | `ws_policy_violations_total` | counter | `policy`, `action` (`drop`, `close`) |

#[cfg(feature = "metrics")]
mod on {
    use metrics::{Counter, counter, gauge};
    use ws_core::CloseCode;

    /// A connection's message counters, looked up once when it opens so a
    /// message costs an atomic add, not a registry lookup.
    #[derive(Debug)]
    pub(crate) struct ConnectionMeters {
        /// Counted in `ws_connections_open` until dropped.
        open: bool,
        messages_in: Counter,
        bytes_in: Counter,
        messages_out: Counter,
        bytes_out: Counter,
    }

    impl ConnectionMeters {
        /// Counts nothing (client connections).
        pub(crate) fn off() -> Self {
            Self {
                open: false,
                messages_in: Counter::noop(),
                bytes_in: Counter::noop(),
                messages_out: Counter::noop(),
                bytes_out: Counter::noop(),
            }
        }

        /// A server connection that just opened.
        pub(crate) fn opened() -> Self {
            counter!("ws_connections_total").increment(1);
            gauge!("ws_connections_open").increment(1.0);
            Self {
                open: true,
                messages_in: counter!("ws_messages_received_total"),
                bytes_in: counter!("ws_bytes_received_total"),
                messages_out: counter!("ws_messages_sent_total"),
                bytes_out: counter!("ws_bytes_sent_total"),
            }
        }

        #[inline]
        pub(crate) fn received(&self, len: usize) {
            self.messages_in.increment(1);
            self.bytes_in.increment(len as u64);
        }

        /// `len` payload bytes went out; `whole` when they end a message.
        #[inline]
        pub(crate) fn sent(&self, len: usize, whole: bool) {
            self.messages_out.increment(u64::from(whole));
            self.bytes_out.increment(len as u64);
        }

        /// The connection closed with `code`.
        pub(crate) fn closed(&self, code: CloseCode) {
            if self.open {
                counter!("ws_closes_total", "code" => code.as_u16().to_string()).increment(1);
            }
        }
    }

    impl Drop for ConnectionMeters {
        fn drop(&mut self) {
            if self.open {
                gauge!("ws_connections_open").decrement(1.0);
            }
        }
    }

    pub(crate) fn handshake_refused(status: http::StatusCode) {
        counter!("ws_handshakes_refused_total", "status" => status.as_u16().to_string())
            .increment(1);
    }

    pub(crate) fn policy_violation(policy: &'static str, closed: bool) {
        let action = if closed { "close" } else { "drop" };
        counter!("ws_policy_violations_total", "policy" => policy, "action" => action).increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
mod on {
    use ws_core::CloseCode;

    #[derive(Debug)]
    pub(crate) struct ConnectionMeters;

    impl ConnectionMeters {
        pub(crate) fn off() -> Self {
            Self
        }

        pub(crate) fn opened() -> Self {
            Self
        }

        #[inline(always)]
        pub(crate) fn received(&self, _len: usize) {}

        #[inline(always)]
        pub(crate) fn sent(&self, _len: usize, _whole: bool) {}

        #[inline(always)]
        pub(crate) fn closed(&self, _code: CloseCode) {}
    }

    #[inline(always)]
    pub(crate) fn handshake_refused(_status: http::StatusCode) {}

    #[inline(always)]
    pub(crate) fn policy_violation(_policy: &'static str, _closed: bool) {}
}

pub(crate) use on::*;

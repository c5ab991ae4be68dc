//! What the channels layer counts for an operator (feature `metrics`),
//! through the [`metrics`](https://docs.rs/metrics) facade; without the
//! feature these compile to nothing. Gauges of what a node holds come from
//! [`ChannelsHandle::stats`](crate::ChannelsHandle::stats).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `ws_channels_deliveries_total` | counter: publications queued for a session | |
//! | `ws_channels_disconnects_total` | counter: sessions closed by the channels layer | `code` (4008 slow, 4009 on purpose, 4001, 1008) |
//! | `ws_channels_broker_interruptions_total` | counter: times the node lost and regained its broker | |
//! | `ws_channels_control_refused_total` | counter: control messages refused (unsigned, wrongly signed, stale, replayed) | |

#[cfg(feature = "metrics")]
pub(crate) fn delivered(sessions: usize) {
    metrics::counter!("ws_channels_deliveries_total").increment(sessions as u64);
}

#[cfg(feature = "metrics")]
pub(crate) fn disconnected(code: ws_core::CloseCode) {
    metrics::counter!("ws_channels_disconnects_total", "code" => code.as_u16().to_string())
        .increment(1);
}

#[cfg(feature = "metrics")]
pub(crate) fn interrupted() {
    metrics::counter!("ws_channels_broker_interruptions_total").increment(1);
}

#[cfg(all(feature = "metrics", any(feature = "redis", feature = "nats")))]
pub(crate) fn control_refused() {
    metrics::counter!("ws_channels_control_refused_total").increment(1);
}

#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn delivered(_sessions: usize) {}

#[cfg(all(not(feature = "metrics"), any(feature = "redis", feature = "nats")))]
#[inline(always)]
pub(crate) fn control_refused() {}

#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn disconnected(_code: ws_core::CloseCode) {}

#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn interrupted() {}

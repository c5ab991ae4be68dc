//! What the test files over real connections share. Each uses a part.
#![allow(dead_code)]

use ws_async::auth::{Authenticator, Identity};
use ws_channels::reconnect::ClientEvent;
use ws_core::handshake::Rejection;

/// Takes the user from `?user=`: trusted, for tests only.
pub(crate) struct NameFromQuery;

impl Authenticator for NameFromQuery {
    async fn authenticate(&self, request: &http::request::Parts) -> Result<Identity, Rejection> {
        let user = request
            .uri
            .query()
            .and_then(|q| q.strip_prefix("user="))
            .unwrap_or_default();
        if user.is_empty() {
            return Err(Rejection::plain(http::StatusCode::UNAUTHORIZED, "no user"));
        }
        Ok(Identity::new(user))
    }
}

/// The `n` of every publication among `events`, in order.
pub(crate) fn numbers(events: &[ClientEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|event| match event {
            ClientEvent::Publication { publication, .. } => {
                publication.data.as_ref()?.to_value()["n"].as_u64()
            }
            _ => None,
        })
        .collect()
}

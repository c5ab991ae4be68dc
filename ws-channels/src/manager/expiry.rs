//! Sessions whose tokens end: told to refresh (`expiring`), closed with
//! `TOKEN_EXPIRED` when no `refresh` came, and moved on by one that did.

use super::*;
use crate::operation::Authenticated;
use crate::protocol::{SESSION_CHANNEL, Token};

/// When a session's token ends, and whether it was told.
#[derive(Debug, Clone, Copy)]
pub(super) struct Expiry {
    /// When the session is told to refresh its token.
    warn_at: Instant,
    /// When it is closed.
    ends_at: Instant,
    warned: bool,
}

impl Expiry {
    /// When it is next due: its warning, then its end.
    pub(super) fn due(&self) -> Instant {
        if self.warned {
            self.ends_at
        } else {
            self.warn_at
        }
    }
}

impl ChannelManager {
    /// `session`'s token ends at `at` (its `exp` on the driver's clock):
    /// unless it refreshes it, it is sent an `expiring` event
    /// `token_refresh_lead` before (at most half of what it has left), and
    /// is closed with [`close_codes::TOKEN_EXPIRED`] at `at`. Call it after
    /// [`handle_open`](Self::handle_open); nothing happens when the
    /// configuration's `expire_sessions` is off.
    pub fn handle_expiry(&mut self, session: SessionId, at: Instant, now: Instant) {
        self.set_expiry(session, Some(at), now);
    }

    fn set_expiry(&mut self, session: SessionId, at: Option<Instant>, now: Instant) {
        if !self.config.expire_sessions {
            return;
        }
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        if let Some(old) = state.expiry.take() {
            self.expiries.remove(&(old.due(), session));
        }
        let Some(ends_at) = at else {
            return;
        };
        let left = ends_at.saturating_duration_since(now);
        let expiry = Expiry {
            warn_at: ends_at - self.config.token_refresh_lead.min(left / 2),
            ends_at,
            warned: false,
        };
        self.expiries.insert((expiry.due(), session));
        state.expiry = Some(expiry);
    }

    /// Warns and closes the sessions due by `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(&(due, session)) = self.expiries.first() {
            if due > now {
                return;
            }
            self.expiries.pop_first();
            let Some(state) = self.sessions.get_mut(&session) else {
                continue;
            };
            let Some(expiry) = state.expiry.as_mut() else {
                continue;
            };
            if state.closing {
                state.expiry = None;
                continue;
            }
            if !expiry.warned {
                expiry.warned = true;
                let left = expiry.ends_at.saturating_duration_since(now);
                self.expiries.insert((expiry.ends_at, session));
                self.actions.push_back(Action::Send {
                    session,
                    envelope: protocol::expiring_event(left),
                });
                continue;
            }
            state.expiry = None;
            start_closing(&mut self.channels, state);
            self.actions.push_back(Action::Disconnect {
                session,
                code: close_codes::TOKEN_EXPIRED,
                reason: "token expired: reconnect with a new one".into(),
            });
        }
    }

    /// `refresh`: the token goes to the driver to be checked.
    pub(super) fn refresh(
        &mut self,
        session: SessionId,
        channel: &str,
        token: Token,
        reply: &ReplyTo,
    ) -> Result<(), ChannelError> {
        if channel != SESSION_CHANNEL {
            return Err(error(
                ErrorCode::BadRequest,
                format!("refresh is sent to the channel {SESSION_CHANNEL:?}"),
            ));
        }
        if self.sessions[&session].user.is_none() {
            return Err(error(
                ErrorCode::Forbidden,
                "an anonymous session has no token to refresh",
            ));
        }
        let op = self.pending.start(Pending::Refresh {
            session,
            reply: reply.clone(),
        });
        self.actions
            .push_back(Action::Authenticate { op, session, token });
        Ok(())
    }

    /// The driver checked a `refresh` token: a token of the session's own
    /// user moves its end; any other leaves the session as it was.
    pub(super) fn refreshed(
        &mut self,
        session: SessionId,
        reply: &ReplyTo,
        result: Result<Authenticated, ChannelError>,
        now: Instant,
    ) {
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        let authenticated = match result {
            Ok(authenticated) if state.user.as_deref() == Some(&authenticated.user) => {
                authenticated
            }
            Ok(_) => {
                let refusal = error(
                    ErrorCode::Forbidden,
                    "the token names another user: a session keeps its user",
                );
                return self.refuse(session, reply, refusal, now);
            }
            Err(refusal) => return self.refuse(session, reply, refusal, now),
        };
        if state.claims.is_some() {
            state.claims = Some(Arc::new(authenticated.claims));
        }
        self.set_expiry(session, authenticated.expires, now);
        let expires_in = authenticated
            .expires
            .filter(|_| self.config.expire_sessions)
            .map(|at| at.saturating_duration_since(now).as_secs());
        let fields = match expires_in {
            Some(seconds) => json!({ "expires_in": seconds }),
            None => json!({}),
        };
        self.ok(session, reply, fields);
    }
}

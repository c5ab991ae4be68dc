//! Control messages from every node (kicks, bans, roles, closes,
//! disconnects), broker interruptions and the presence refresh.

use super::*;

impl ChannelManager {
    /// A control message from any node (this one included); how many of
    /// this node's sessions it removed (a kick, a ban) or closed (a
    /// disconnect).
    pub fn handle_control(&mut self, message: &ControlMessage, _now: Instant) -> usize {
        match message {
            ControlMessage::Remove {
                channel,
                target,
                reason,
            } => {
                let (action, code, leave) = match reason {
                    Removal::Kicked => ("kicked", ErrorCode::Forbidden, LeaveReason::Kicked),
                    Removal::Banned => ("banned", ErrorCode::Banned, LeaveReason::Banned),
                };
                let cancel = ChannelError::new(code, format!("{action} from {channel:?}"));
                self.remove_where(channel, action, cancel, Some(leave), |session, user| {
                    target.matches(session, user)
                })
            }
            ControlMessage::Closed { channel } => {
                // Everyone goes: nobody is left to tell.
                let cancel = error(ErrorCode::NotFound, format!("{channel:?} was closed"));
                self.remove_where(channel, "closed", cancel, None, |_, _| true)
            }
            ControlMessage::RoleChanged {
                channel,
                user,
                role,
            } => {
                let members: Vec<SessionId> = self
                    .channels
                    .get(channel)
                    .map(|c| c.members.iter().copied().collect())
                    .unwrap_or_default();
                for session in members {
                    let Some(state) = self.sessions.get_mut(&session) else {
                        continue;
                    };
                    if state.user.as_deref() != Some(user.as_str()) {
                        continue;
                    }
                    if let Some(membership) = state.channels.get_mut(channel) {
                        membership.role = role.clone();
                        self.actions.push_back(Action::Send {
                            session,
                            envelope: protocol::event(
                                channel,
                                "role",
                                json!({ "user": user, "role": role }),
                            ),
                        });
                    }
                }
                0
            }
            ControlMessage::Disconnect {
                target,
                code,
                reason,
            } => {
                let mut targets: Vec<SessionId> = self
                    .sessions
                    .iter()
                    .filter(|(id, s)| !s.closing && target.matches(**id, s.user.as_deref()))
                    .map(|(id, _)| *id)
                    .collect();
                targets.sort_unstable();
                for session in &targets {
                    if let Some(state) = self.sessions.get_mut(session) {
                        start_closing(&mut self.channels, state);
                    }
                    self.actions.push_back(Action::Disconnect {
                        session: *session,
                        code: CloseCode::new(*code),
                        reason: reason.clone(),
                    });
                }
                targets.len()
            }
        }
    }

    /// Removes the matching local members of `channel` (telling each with
    /// an `action` event, and the members who remain with a `leave` event
    /// giving `leave` as the reason), and cancels matching joins in flight;
    /// how many members it removed and joins it cancelled.
    pub(super) fn remove_where(
        &mut self,
        channel: &str,
        action: &str,
        cancel: ChannelError,
        leave: Option<LeaveReason>,
        matches: impl Fn(SessionId, Option<&str>) -> bool,
    ) -> usize {
        let mut sessions: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(id, s)| {
                (s.channels.contains_key(channel) || s.joining.contains_key(channel))
                    && matches(**id, s.user.as_deref())
            })
            .map(|(id, _)| *id)
            .collect();
        sessions.sort_unstable();
        let removed = sessions.len();
        for session in sessions {
            let state = self.sessions.get_mut(&session).expect("listed above");
            if let Some(joining) = state.joining.get_mut(channel) {
                joining.cancelled = Some(cancel.clone());
            }
            let user = state.user.clone();
            if let Some(membership) = state.channels.remove(channel) {
                self.drop_member(session, channel);
                self.actions.push_back(Action::Send {
                    session,
                    envelope: protocol::event(channel, action, json!({})),
                });
                if let Some(reason) = leave {
                    self.publish_presence_event(
                        session,
                        user,
                        membership.info,
                        channel,
                        Presence::Left(reason),
                    );
                }
            }
        }
        self.reconcile(channel);
        removed
    }

    /// The backend lost its connection to the broker and has it again:
    /// publications sent meanwhile may not have reached this node. Every
    /// local member gets a `lost` event (a member still recovering gets
    /// one after its join reply), so clients join again with `since` and
    /// learn whether history filled the gap (`recovered`). Presence is
    /// refreshed at once, so a broker that lost its data gets this node's
    /// entries back.
    pub fn handle_interrupted(&mut self, now: Instant) {
        let mut ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        ids.sort_unstable();
        // Per channel, its active members: one `lost` event each, encoded
        // once for the channel.
        let mut told: BTreeMap<String, Vec<SessionId>> = BTreeMap::new();
        for id in ids {
            let state = self.sessions.get_mut(&id).expect("listed above");
            if state.closing {
                continue;
            }
            for (name, membership) in &mut state.channels {
                match &mut membership.stage {
                    Stage::Recovering { overflowed, buffer } => {
                        *overflowed = true;
                        buffer.clear();
                    }
                    Stage::Active => {
                        membership.lost = false;
                        told.entry(name.clone()).or_default().push(id);
                    }
                }
                stale(&mut self.channels, name);
            }
        }
        for (channel, sessions) in told {
            self.tell_lost(&channel, sessions.into(), json!({}));
        }
        if self.next_refresh.is_some() {
            self.next_refresh = Some(now);
            self.handle_timeout(now);
        }
    }

    /// Time passed: refreshes presence, proposes the removal of absent
    /// users from groups, tells sessions to refresh their tokens and closes
    /// those whose tokens ended, each when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.departures.first().is_some_and(|(due, ..)| *due <= now) {
            self.depart_first();
        }
        self.expire(now);
        let Some(due) = self.next_refresh else {
            return;
        };
        if now < due {
            return;
        }
        self.next_refresh = Some(now + self.refresh_interval());
        self.check_positions();
        let mut entries: Vec<(String, SessionId)> = self
            .sessions
            .iter()
            .flat_map(|(id, s)| s.channels.keys().map(move |c| (c.clone(), *id)))
            .collect();
        // Sent with no entries too: a refresh is when a store may sweep
        // what lingered out (the in-process one frees those histories).
        entries.sort_unstable();
        self.op(
            Operation::Refresh {
                entries,
                ttl: self.config.presence_ttl,
            },
            Pending::Ignore,
        );
    }
}

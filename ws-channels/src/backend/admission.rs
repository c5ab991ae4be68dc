//! The rules a join is admitted by, written once. Every backend applies
//! them in the same step as it adds the member (the atomicity
//! [`Presence::join`](super::Presence::join) promises): the
//! in-process and NATS backends call [`admit`], Redis' `join.lua` follows
//! the same order, and the conformance suite holds all three to
//! [`admit`]'s answers. A backend of your own calls it too.

use crate::types::{ChannelError, ChannelRole, ErrorCode};

/// What a store knows of a channel when a session asks to join it.
#[derive(Debug, Clone, Copy)]
pub struct Seat<'a> {
    /// The session's user is banned from the channel.
    pub banned: bool,
    /// The session's role, if it is a member already.
    pub member_role: Option<&'a ChannelRole>,
    /// How many members the channel has.
    pub members: usize,
    /// The channel's most participants.
    pub max_participants: u32,
    /// The role the channel gave the session's user, if any.
    pub user_role: Option<&'a ChannelRole>,
}

/// What a join comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Refused: the user is banned (checked first, so a ban wins over a
    /// seat held).
    Banned,
    /// The session is a member already: its entry is refreshed and it
    /// keeps its role.
    Member(ChannelRole),
    /// Refused: the channel has its most participants.
    Full,
    /// Added with this role: the one the channel gave the user, or
    /// participant.
    Admitted(ChannelRole),
}

/// The rules: banned, then already a member, then full, then admitted.
pub fn admit(seat: &Seat<'_>) -> Admission {
    if seat.banned {
        return Admission::Banned;
    }
    if let Some(role) = seat.member_role {
        return Admission::Member(role.clone());
    }
    if seat.members >= seat.max_participants as usize {
        return Admission::Full;
    }
    Admission::Admitted(seat.user_role.cloned().unwrap_or(ChannelRole::PARTICIPANT))
}

impl Admission {
    /// The role the session has in the channel, when admitted.
    pub fn role(&self) -> Option<&ChannelRole> {
        match self {
            Self::Member(role) | Self::Admitted(role) => Some(role),
            Self::Banned | Self::Full => None,
        }
    }

    /// The refusal a client gets, the same whatever the backend; `None`
    /// when admitted.
    pub fn refusal(&self, channel: &str) -> Option<ChannelError> {
        match self {
            Self::Banned => Some(banned(channel)),
            Self::Full => Some(full(channel)),
            Self::Member(_) | Self::Admitted(_) => None,
        }
    }
}

pub(crate) fn banned(channel: &str) -> ChannelError {
    ChannelError::new(ErrorCode::Banned, format!("banned from {channel:?}"))
}

pub(crate) fn full(channel: &str) -> ChannelError {
    ChannelError::new(
        ErrorCode::Full,
        format!("{channel:?} has as many participants as it takes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_comes_first_then_a_held_seat_then_room() {
        let moderator = ChannelRole::new("moderator");
        let seat = Seat {
            banned: false,
            member_role: None,
            members: 1,
            max_participants: 2,
            user_role: None,
        };
        assert_eq!(admit(&seat), Admission::Admitted(ChannelRole::PARTICIPANT));
        let given = Seat {
            user_role: Some(&moderator),
            ..seat
        };
        assert_eq!(admit(&given), Admission::Admitted(moderator.clone()));
        let full = Seat { members: 2, ..seat };
        assert_eq!(admit(&full), Admission::Full);
        // A member rejoining a full channel keeps its seat and role...
        let held = Seat {
            member_role: Some(&ChannelRole::OWNER),
            ..full
        };
        assert_eq!(admit(&held), Admission::Member(ChannelRole::OWNER));
        // ...unless banned meanwhile.
        let banned = Seat {
            banned: true,
            ..held
        };
        assert_eq!(admit(&banned), Admission::Banned);
        assert_eq!(
            Admission::Full.refusal("room").map(|e| e.code),
            Some(ErrorCode::Full)
        );
        assert_eq!(Admission::Banned.role(), None);
    }
}

//! The backend conformance suite: what every backend of
//! `ws_channels::backend` must do, as checks that run through the traits
//! alone, so a backend written outside this repository runs the same
//! checks as the in-process, Redis and NATS ones.
//!
//! Run them with [`backend_conformance!`](crate::backend_conformance), one
//! `#[tokio::test]` per check, from a test file of the backend's crate
//! (it needs `tokio` with the `macros` and `rt-multi-thread` features):
//!
//! ```ignore
//! async fn fresh(check: &'static str) -> Option<ws_channels::Backends> {
//!     // A new, empty namespace per check (a key prefix, a database).
//!     Some(ws_channels::Backends::shared(MyBackend::connect(check).await?))
//! }
//! ws_test_kit::backend_conformance!("mine", fresh);
//! ```
//!
//! (`ignore`: `MyBackend` stands for the reader's own.) Return `None`
//! from `fresh` to skip every check, for example when the service is not
//! running. Each check also takes the backend's name for its messages.

use std::time::Duration;

use serde_json::json;
use ws_channels::backend::CreateLimits;
use ws_channels::backend::admission::{Admission, Seat, admit};
use ws_channels::{
    Backends, ChannelOptions, ChannelRole, ErrorCode, HistorySpec, Member, NodeId, Payload,
    Position, Publication, SessionId, Target,
};

/// Every check, in the order [`backend_conformance!`](crate::backend_conformance) runs them.
pub const CHECKS: &[&str] = &[
    "a_user_creates_at_most_its_share_of_channels",
    "joins_are_checked_against_existence_capacity_and_bans",
    "every_backend_admits_by_the_one_set_of_rules",
    "roles_rosters_kicks_expiry_and_deletion",
    "history_keeps_to_the_channels_byte_budget",
    "history_keeps_offsets_size_ttl_and_epochs",
    "a_key_publishes_once_even_when_retries_race",
    "commits_are_published_one_per_group_epoch",
    "key_packages_are_handed_out_once",
];

/// Expands to one `#[tokio::test]` per conformance check, each calling
/// `$fresh(check_name).await` for a fresh [`Backends`] (or `None` to skip)
/// and running the check with `$name` in its messages.
#[macro_export]
macro_rules! backend_conformance {
    ($name:expr, $fresh:expr) => {
        $crate::backend_conformance!(@checks $name, $fresh, a_user_creates_at_most_its_share_of_channels, joins_are_checked_against_existence_capacity_and_bans, every_backend_admits_by_the_one_set_of_rules, roles_rosters_kicks_expiry_and_deletion, history_keeps_to_the_channels_byte_budget, history_keeps_offsets_size_ttl_and_epochs, a_key_publishes_once_even_when_retries_race, commits_are_published_one_per_group_epoch, key_packages_are_handed_out_once);
    };
    (@checks $name:expr, $fresh:expr, $($check:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                let fresh = $fresh;
                let Some(backends) = fresh(stringify!($check)).await else {
                    return;
                };
                $crate::conformance::$check($name, &backends).await;
            }
        )*
    };
}

// What the checks build with, public so a backend's own extra tests build
// the same way.

/// The presence TTL the checks join with.
pub const TTL: Duration = Duration::from_secs(60);

/// Create limits high enough not to matter, unless a check says otherwise.
pub const LIMITS: CreateLimits = CreateLimits {
    max_channels: 100,
    max_per_user: 100,
};

/// Channel options with room for `max_participants` and `history_size`
/// publications kept five minutes (1 MiB at most), no presence events.
pub fn options(max_participants: u32, history_size: u32) -> ChannelOptions {
    ChannelOptions {
        max_participants,
        history_size,
        history_ttl: Duration::from_secs(300),
        history_bytes: 1 << 20,
        presence_events: false,
        encrypted: false,
        linger: Duration::from_secs(300),
    }
}

/// A participant: session `session` of `user`, on node 7.
pub fn member(session: u64, user: &str) -> Member {
    Member {
        session: SessionId(session),
        node: NodeId(7),
        user: Some(user.to_owned()),
        info: None,
        role: ChannelRole::PARTICIPANT,
    }
}

/// History of `size` publications kept five minutes, 1 MiB at most.
pub fn kept(size: u32) -> HistorySpec {
    HistorySpec {
        size,
        ttl: Duration::from_secs(300),
        max_bytes: 1 << 20,
    }
}

/// A message publication whose data is `{"n": n}`.
pub fn message(n: u64) -> Publication {
    Publication::message(None, Payload::new(&json!({ "n": n })))
}

/// ROBUSTNESS 105: no user can take the channels of everyone: past the
/// channels it created that still exist, its creates are refused; a channel
/// gone (closed, lingered out) counts no more.
pub async fn a_user_creates_at_most_its_share_of_channels(name: &str, backends: &Backends) {
    let limits = CreateLimits {
        max_channels: 100,
        max_per_user: 2,
    };
    let presence = &backends.store;
    for (n, channel) in ["q1", "q2"].into_iter().enumerate() {
        presence
            .create(
                channel,
                options(5, 0),
                member(n as u64 + 1, "al"),
                TTL,
                limits,
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let third = presence
        .create("q3", options(5, 0), member(3, "al"), TTL, limits)
        .await;
    assert_eq!(third.unwrap_err().code, ErrorCode::Limit, "{name}");
    presence
        .create("q3", options(5, 0), member(4, "bo"), TTL, limits)
        .await
        .unwrap_or_else(|e| panic!("{name}: another user's share: {e}"));
    presence.delete("q1").await.unwrap();
    presence
        .create("q4", options(5, 0), member(5, "al"), TTL, limits)
        .await
        .unwrap_or_else(|e| panic!("{name}: a closed channel counts no more: {e}"));
    // Made anew by someone else, a name counts for its new creator.
    presence.delete("q2").await.unwrap();
    presence
        .create("q2", options(5, 0), member(6, "bo"), TTL, limits)
        .await
        .unwrap();
    presence
        .create("q5", options(5, 0), member(7, "al"), TTL, limits)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let full = presence
        .create("q6", options(5, 0), member(8, "al"), TTL, limits)
        .await;
    assert_eq!(full.unwrap_err().code, ErrorCode::Limit, "{name}");
}

/// A join needs the channel to exist and finds room or is refused with
/// `full` (a session joining again takes no new place), and a banned
/// user is refused; a create of a name in use is
/// `already_exists`.
pub async fn joins_are_checked_against_existence_capacity_and_bans(
    name: &str,
    backends: &Backends,
) {
    let presence = &backends.store;
    let missing = presence.join("room", member(2, "bo"), TTL).await;
    assert_eq!(missing.unwrap_err().code, ErrorCode::NotFound, "{name}");
    let grant = presence
        .create("room", options(2, 0), member(1, "al"), TTL, LIMITS)
        .await
        .unwrap();
    assert_eq!(grant.role, ChannelRole::OWNER, "{name}");
    let again = presence
        .create("room", options(2, 0), member(9, "zed"), TTL, LIMITS)
        .await;
    assert_eq!(again.unwrap_err().code, ErrorCode::AlreadyExists, "{name}");
    presence.join("room", member(2, "bo"), TTL).await.unwrap();
    // Joining again with a session already present is not a new place.
    presence.join("room", member(2, "bo"), TTL).await.unwrap();
    let full = presence.join("room", member(3, "cy"), TTL).await;
    assert_eq!(full.unwrap_err().code, ErrorCode::Full, "{name}");

    presence.ban("room", "bo", None).await.unwrap();
    let roster = presence.members("room", 10).await.unwrap();
    assert_eq!(roster.total, 1, "{name}: the ban removed bo");
    let banned = presence.join("room", member(4, "bo"), TTL).await;
    assert_eq!(banned.unwrap_err().code, ErrorCode::Banned, "{name}");
    presence.unban("room", "bo").await.unwrap();
    presence.join("room", member(4, "bo"), TTL).await.unwrap();
    // Lifting a ban that is not there says so.
    let none = presence.unban("room", "bo").await;
    assert_eq!(none.unwrap_err().code, ErrorCode::NotFound, "{name}");
    let none = presence.unban("nowhere", "bo").await;
    assert_eq!(none.unwrap_err().code, ErrorCode::NotFound, "{name}");

    // A ban with a duration ends by itself.
    presence
        .ban("room", "bo", Some(Duration::from_millis(300)))
        .await
        .unwrap();
    let banned = presence.join("room", member(5, "bo"), TTL).await;
    assert_eq!(banned.unwrap_err().code, ErrorCode::Banned, "{name}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    presence.join("room", member(5, "bo"), TTL).await.unwrap();
}

/// Every backend admits as `admission::admit` says, refusing with its
/// words: a new user as participant or with the role it was given, a
/// member rejoining a full channel with its seat and role, a full channel
/// refused, a ban over a held seat.
pub async fn every_backend_admits_by_the_one_set_of_rules(name: &str, backends: &Backends) {
    let moderator = ChannelRole::new("moderator");
    let presence = &backends.store;
    presence
        .create("hall", options(3, 0), member(1, "al"), TTL, LIMITS)
        .await
        .unwrap();
    presence.set_role("hall", "cy", &moderator).await.unwrap();
    let mut held = 1;
    let mut check = async |session: u64, user: &str, seat: Seat<'_>| {
        let expected = admit(&seat);
        let got = presence.join("hall", member(session, user), TTL).await;
        match (&expected, got) {
            (Admission::Admitted(role) | Admission::Member(role), Ok(grant)) => {
                assert_eq!(&grant.role, role, "{name}: {user}");
            }
            (refused, Err(error)) => {
                let refusal = refused.refusal("hall").expect("a refusal");
                assert_eq!(error, refusal, "{name}: {user}");
            }
            (expected, got) => panic!("{name}: {user}: {expected:?} but {got:?}"),
        }
        if matches!(expected, Admission::Admitted(_)) {
            held += 1;
        }
    };
    let empty = Seat {
        banned: false,
        member_role: None,
        members: 0,
        max_participants: 3,
        user_role: None,
    };
    check(
        2,
        "bo",
        Seat {
            members: 1,
            ..empty
        },
    )
    .await;
    check(
        3,
        "cy",
        Seat {
            members: 2,
            user_role: Some(&moderator),
            ..empty
        },
    )
    .await;
    check(
        4,
        "di",
        Seat {
            members: 3,
            ..empty
        },
    )
    .await;
    check(
        2,
        "bo",
        Seat {
            members: 3,
            member_role: Some(&ChannelRole::PARTICIPANT),
            ..empty
        },
    )
    .await;
    presence.ban("hall", "bo", None).await.unwrap();
    check(
        5,
        "bo",
        Seat {
            banned: true,
            members: 2,
            ..empty
        },
    )
    .await;
    assert_eq!(held, 3, "{name}");
}

/// A role given before a join is granted by it and a role change reaches
/// the members the user has; rosters list members oldest first, with
/// roles and the total past the limit; kicks remove every session of a
/// user, and none of a session that is not there; entries not refreshed
/// expire and refreshed ones stay; a deleted channel is gone from the
/// directory.
pub async fn roles_rosters_kicks_expiry_and_deletion(name: &str, backends: &Backends) {
    let presence = &backends.store;
    presence
        .create("hall", options(100, 0), member(1, "al"), TTL, LIMITS)
        .await
        .unwrap();
    presence
        .set_role("hall", "bo", &ChannelRole::new("moderator"))
        .await
        .unwrap();
    let grant = presence.join("hall", member(2, "bo"), TTL).await.unwrap();
    assert_eq!(grant.role, ChannelRole::new("moderator"), "{name}");
    presence.join("hall", member(3, "cy"), TTL).await.unwrap();
    presence.join("hall", member(4, "cy"), TTL).await.unwrap();
    presence
        .set_role("hall", "cy", &ChannelRole::new("guest"))
        .await
        .unwrap();
    let roster = presence.members("hall", 10).await.unwrap();
    let order: Vec<(u64, String)> = roster
        .members
        .iter()
        .map(|m| (m.session.0, m.role.as_str().to_owned()))
        .collect();
    assert_eq!(
        order,
        [
            (1, "owner".into()),
            (2, "moderator".into()),
            (3, "guest".into()),
            (4, "guest".into())
        ],
        "{name}: oldest first, with roles"
    );
    let first_two = presence.members("hall", 2).await.unwrap();
    assert_eq!((first_two.members.len(), first_two.total), (2, 4), "{name}");

    let kicked = presence
        .kick("hall", &Target::User("cy".into()))
        .await
        .unwrap();
    assert_eq!(kicked, 2, "{name}");
    let kicked = presence
        .kick("hall", &Target::Session(SessionId(99)))
        .await
        .unwrap();
    assert_eq!(kicked, 0, "{name}");

    // An entry that is not refreshed expires; a refreshed one stays.
    let short = Duration::from_millis(400);
    presence
        .join("hall", member(5, "dee"), short)
        .await
        .unwrap();
    presence
        .join("hall", member(6, "eve"), short)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    presence
        .refresh(NodeId(7), &[("hall".into(), SessionId(6))], TTL)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sessions: Vec<u64> = presence
        .members("hall", 10)
        .await
        .unwrap()
        .members
        .iter()
        .map(|m| m.session.0)
        .collect();
    assert_eq!(sessions, [1, 2, 6], "{name}");

    let listed = presence.channels(10).await.unwrap();
    assert!(listed.iter().any(|c| c.name == "hall"), "{name}");
    presence.delete("hall").await.unwrap();
    assert!(presence.channel("hall").await.unwrap().is_none(), "{name}");
}

/// ROBUSTNESS 106: a channel's history holds at most its byte budget, the
/// oldest going first: a gap of more bytes than that is not recovered.
pub async fn history_keeps_to_the_channels_byte_budget(name: &str, backends: &Backends) {
    let mut heavy = options(10, 10);
    heavy.history_bytes = 3_500;
    backends
        .store
        .create("heavy", heavy, member(1, "al"), TTL, LIMITS)
        .await
        .unwrap();
    let spec = heavy.history().unwrap();
    let broker = &backends.broker;
    let mut epoch = String::new();
    for n in 1..=6 {
        // About 1 KB each: three fit in 3,500 bytes, four do not.
        let data = json!({ "n": n, "pad": "x".repeat(1000) });
        let position = broker
            .publish(
                "heavy",
                Publication::message(None, Payload::new(&data)),
                Some(spec),
            )
            .await
            .unwrap()
            .unwrap();
        epoch = position.epoch;
    }
    let since = |offset| Position {
        offset,
        epoch: epoch.clone(),
    };
    let page = broker.history("heavy", Some(since(3)), 100).await.unwrap();
    assert!(page.complete, "{name}");
    assert_eq!(page.publications.len(), 3, "{name}");
    let page = broker.history("heavy", Some(since(2)), 100).await.unwrap();
    assert!(!page.complete && page.publications.is_empty(), "{name}");
}

/// History assigns consecutive offsets in one epoch (an empty channel's
/// epoch is the one its first publication gets), reads a gap back from a
/// position and says `complete: false` when it cannot (trimmed to its
/// size, more missing than the limit, another epoch, a position from the
/// future, expired by its TTL), gives a newcomer the newest it keeps,
/// and starts a new epoch once removed, so no recovery skips a gap
/// silently.
pub async fn history_keeps_offsets_size_ttl_and_epochs(name: &str, backends: &Backends) {
    backends
        .store
        .create("log", options(10, 3), member(1, "al"), TTL, LIMITS)
        .await
        .unwrap();
    let broker = &backends.broker;
    let empty = broker.history("log", None, 100).await.unwrap();
    let start = empty.top.unwrap();
    assert_eq!(start.offset, 0, "{name}");
    let spec = kept(3);
    let mut positions = Vec::new();
    for n in 1..=5 {
        let position = broker.publish("log", message(n), Some(spec)).await.unwrap();
        positions.push(position.unwrap());
    }
    let offsets: Vec<u64> = positions.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5], "{name}");
    let epoch = positions[0].epoch.clone();
    assert!(positions.iter().all(|p| p.epoch == epoch), "{name}");
    // An empty channel's epoch is the one its first publication gets.
    assert_eq!(start.epoch, epoch, "{name}");

    let since = |offset| Position {
        offset,
        epoch: epoch.clone(),
    };
    let page = broker.history("log", Some(since(2)), 100).await.unwrap();
    assert!(page.complete, "{name}");
    let got: Vec<u64> = page
        .publications
        .iter()
        .map(|p| p.position.as_ref().unwrap().offset)
        .collect();
    assert_eq!(got, [3, 4, 5], "{name}");
    // Trimmed to three: offset 2 is gone, so after 1 cannot recover.
    let page = broker.history("log", Some(since(1)), 100).await.unwrap();
    assert!(!page.complete && page.publications.is_empty(), "{name}");
    // More missing than the limit.
    let page = broker.history("log", Some(since(2)), 2).await.unwrap();
    assert!(!page.complete, "{name}");
    // Another epoch, or a position from the future.
    let other = Position {
        offset: 4,
        epoch: "elsewhere".into(),
    };
    assert!(
        !broker
            .history("log", Some(other), 100)
            .await
            .unwrap()
            .complete
    );
    assert!(
        !broker
            .history("log", Some(since(9)), 100)
            .await
            .unwrap()
            .complete
    );
    // Up to date is complete and empty.
    let page = broker.history("log", Some(since(5)), 100).await.unwrap();
    assert!(page.complete && page.publications.is_empty(), "{name}");

    // The newest of what history keeps, for a newcomer.
    let offsets = |page: &ws_channels::HistoryPage| -> Vec<u64> {
        page.publications
            .iter()
            .map(|p| p.position.as_ref().unwrap().offset)
            .collect()
    };
    let recent = broker.recent("log", 2).await.unwrap();
    assert_eq!(
        (offsets(&recent), recent.complete),
        (vec![4, 5], false),
        "{name}"
    );
    let recent = broker.recent("log", 10).await.unwrap();
    assert_eq!(
        (offsets(&recent), recent.complete),
        (vec![3, 4, 5], true),
        "{name}"
    );
    assert_eq!(recent.top.unwrap().offset, 5, "{name}");
    assert_eq!(recent.publications[0].data, message(3).data, "{name}");

    // Entries expire with the channel's history TTL.
    backends
        .store
        .create("brief", options(10, 3), member(1, "al"), TTL, LIMITS)
        .await
        .unwrap();
    let short = HistorySpec {
        size: 3,
        ttl: Duration::from_millis(200),
        max_bytes: 1 << 20,
    };
    let kept = broker
        .publish("brief", message(1), Some(short))
        .await
        .unwrap()
        .unwrap();
    let before = Position {
        offset: 0,
        epoch: kept.epoch.clone(),
    };
    let page = broker
        .history("brief", Some(before.clone()), 100)
        .await
        .unwrap();
    assert!(page.complete && page.publications.len() == 1, "{name}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page = broker.history("brief", Some(before), 100).await.unwrap();
    assert!(!page.complete, "{name}: offset 1 expired");

    // Removing history starts a new epoch.
    broker.remove_history("log").await.unwrap();
    let after = broker.history("log", None, 100).await.unwrap().top.unwrap();
    assert_ne!(after.epoch, epoch, "{name}");
    assert_eq!(after.offset, 0, "{name}");
    let first = broker
        .publish("log", message(7), Some(spec))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.offset, &first.epoch), (1, &after.epoch), "{name}");
}

/// ROBUSTNESS 119: a publish with an idempotency key is made once, however
/// often it is retried and however many of the retries race: each backend
/// checks and publishes in one step (a script, a JetStream message id).
pub async fn a_key_publishes_once_even_when_retries_race(name: &str, backends: &Backends) {
    for channel in ["log", "other"] {
        backends
            .store
            .create(channel, options(10, 100), member(1, "al"), TTL, LIMITS)
            .await
            .unwrap();
    }
    let broker = &backends.broker;
    let spec = kept(100);
    let first = broker
        .publish_once("log", message(1), spec, "al:k1")
        .await
        .unwrap();
    assert!(!first.duplicate, "{name}");
    assert_eq!(first.position.as_ref().unwrap().offset, 1, "{name}");
    let again = broker
        .publish_once("log", message(1), spec, "al:k1")
        .await
        .unwrap();
    assert!(again.duplicate, "{name}");
    assert_eq!(again.position, first.position, "{name}");

    let tries: Vec<_> = (0..8)
        .map(|_| {
            let broker = broker.clone();
            tokio::spawn(async move {
                broker
                    .publish_once("log", message(2), spec, "al:k2")
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut racing = Vec::new();
    for t in tries {
        racing.push(t.await.unwrap());
    }
    let made: Vec<_> = racing.iter().filter(|p| !p.duplicate).collect();
    assert_eq!(made.len(), 1, "{name}: {racing:?}");
    assert!(
        racing.iter().all(|p| p.position == made[0].position),
        "{name}: {racing:?}"
    );

    // A key is per channel.
    let elsewhere = broker
        .publish_once("other", message(3), spec, "al:k1")
        .await
        .unwrap();
    assert!(!elsewhere.duplicate, "{name}");

    let start = Position {
        offset: 0,
        epoch: first.position.clone().unwrap().epoch,
    };
    let page = broker.history("log", Some(start), 100).await.unwrap();
    let kept: Vec<_> = page
        .publications
        .iter()
        .map(|p| p.data.as_ref().unwrap().as_str().to_owned())
        .collect();
    assert_eq!(kept, [r#"{"n":1}"#, r#"{"n":2}"#], "{name}");
}

/// ROBUSTNESS 130: an end-to-end group's commits are totally ordered: the
/// broker publishes a commit only for the channel's current group epoch
/// and moves the epoch on in the same step, so of commits racing for one
/// epoch exactly one is published and the others are `conflict`; other
/// publications leave the epoch alone; a channel made anew starts at 0.
pub async fn commits_are_published_one_per_group_epoch(name: &str, backends: &Backends) {
    for channel in ["group", "other"] {
        backends
            .store
            .create(channel, options(10, 100), member(1, "al"), TTL, LIMITS)
            .await
            .unwrap();
    }
    let broker = &backends.broker;
    let spec = kept(100);
    let conflict = |result: Result<Position, ws_channels::ChannelError>| {
        let error = match result {
            Ok(position) => {
                panic!("{name}: a commit for another epoch was published at {position:?}")
            }
            Err(error) => error,
        };
        assert_eq!(error.code, ErrorCode::Conflict, "{name}: {error}");
        error.message
    };
    // A new channel's group is at epoch 0.
    let early = conflict(
        broker
            .publish_commit("group", message(1), spec, 1, None)
            .await,
    );
    assert!(early.contains("epoch 0"), "{name}: {early}");
    let first = broker
        .publish_commit("group", message(1), spec, 0, Some("info-1"))
        .await
        .unwrap();
    assert_eq!(
        broker.group_info("group").await.unwrap(),
        Some((1, "info-1".to_owned())),
        "{name}: the GroupInfo of the epoch the commit starts"
    );
    assert_eq!(first.offset, 1, "{name}");
    // Other publications leave the group where it is.
    broker
        .publish("group", message(2), Some(spec))
        .await
        .unwrap();
    let stale = conflict(
        broker
            .publish_commit("group", message(3), spec, 0, Some("stale"))
            .await,
    );
    assert!(stale.contains("epoch 1"), "{name}: {stale}");

    let tries: Vec<_> = (0..8)
        .map(|n| {
            let broker = broker.clone();
            tokio::spawn(async move {
                broker
                    .publish_commit("group", message(10 + n), spec, 1, Some("info-2"))
                    .await
            })
        })
        .collect();
    let mut won = Vec::new();
    for t in tries {
        match t.await.unwrap() {
            Ok(position) => won.push(position),
            Err(e) => assert_eq!(e.code, ErrorCode::Conflict, "{name}: {e}"),
        }
    }
    assert_eq!(won.len(), 1, "{name}: one commit for epoch 1, not {won:?}");
    assert_eq!(won[0].offset, 3, "{name}");
    assert_eq!(
        broker.group_info("group").await.unwrap(),
        Some((2, "info-2".to_owned())),
        "{name}: a refused commit keeps nothing"
    );
    // Per channel.
    broker
        .publish_commit("other", message(4), spec, 0, None)
        .await
        .unwrap();
    let start = Position {
        offset: 0,
        epoch: first.epoch.clone(),
    };
    let page = broker.history("group", Some(start), 100).await.unwrap();
    assert_eq!(page.publications.len(), 3, "{name}: {page:?}");

    // A channel made anew has a new group.
    backends.store.delete("group").await.unwrap();
    broker.remove_history("group").await.unwrap();
    backends
        .store
        .create("group", options(10, 100), member(1, "al"), TTL, LIMITS)
        .await
        .unwrap();
    assert_eq!(broker.group_info("group").await.unwrap(), None, "{name}");
    conflict(
        broker
            .publish_commit("group", message(5), spec, 2, None)
            .await,
    );
    broker
        .publish_commit("group", message(5), spec, 0, Some("anew"))
        .await
        .unwrap();
    assert_eq!(
        broker.group_info("group").await.unwrap(),
        Some((1, "anew".to_owned())),
        "{name}"
    );
}

/// ROBUSTNESS 134: the key package directory hands each one-time package
/// out once, however many members claim at the same time, then the
/// device's last-resort package; uploads past the limits store nothing;
/// users are kept apart.
pub async fn key_packages_are_handed_out_once(name: &str, backends: &Backends) {
    use ws_channels::backend::{KeyPackageLimits, KeyPackageUpload, StoredKeyPackage};
    let keys = &backends.keys;
    let limits = KeyPackageLimits {
        per_device: 5,
        devices: 2,
    };
    let expires = ws_channels::backend::key_packages::unix_now() + 3600;
    let upload = |device: &str, names: &[&str], last: Option<&str>| KeyPackageUpload {
        device: device.to_owned(),
        one_time: names
            .iter()
            .map(|n| StoredKeyPackage {
                package: (*n).to_owned(),
                expires,
            })
            .collect(),
        last_resort: last.map(|n| StoredKeyPackage {
            package: n.to_owned(),
            expires,
        }),
    };
    keys.upload_key_packages(
        "bo",
        upload("phone", &["p1", "p2", "p3"], Some("p-last")),
        limits,
    )
    .await
    .unwrap();
    let counts = keys
        .upload_key_packages("bo", upload("laptop", &["l1"], None), limits)
        .await
        .unwrap();
    assert_eq!(counts.len(), 2, "{name}: {counts:?}");
    let refused = keys
        .upload_key_packages("bo", upload("tablet", &["t1"], None), limits)
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Limit, "{name}: {refused}");
    let refused = keys
        .upload_key_packages("bo", upload("phone", &["p4", "p5", "p6"], None), limits)
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Limit, "{name}: {refused}");
    keys.upload_key_packages("cy", upload("phone", &["c1"], None), limits)
        .await
        .unwrap();

    let claims: Vec<_> = (0..8)
        .map(|_| {
            let keys = keys.clone();
            tokio::spawn(async move { keys.claim_key_packages("bo", &[]).await.unwrap() })
        })
        .collect();
    let mut handed = Vec::new();
    for claim in claims {
        handed.extend(claim.await.unwrap());
    }
    let one_time: Vec<_> = handed
        .iter()
        .filter(|c| !c.last_resort)
        .map(|c| c.key_package.clone())
        .collect();
    let mut sorted = one_time.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["l1", "p1", "p2", "p3"],
        "{name}: each once: {handed:?}"
    );
    assert!(
        handed
            .iter()
            .filter(|c| c.last_resort)
            .all(|c| c.key_package == "p-last" && c.device == "phone"),
        "{name}: {handed:?}"
    );
    assert_eq!(
        handed.len(),
        4 + (8 - 3),
        "{name}: the phone's last resort after its three"
    );
    // cy's are cy's.
    let cy = keys.claim_key_packages("cy", &[]).await.unwrap();
    assert_eq!(cy.len(), 1, "{name}");
    assert_eq!(cy[0].key_package, "c1", "{name}");
    assert!(
        keys.claim_key_packages("cy", &[]).await.unwrap().is_empty(),
        "{name}"
    );
    assert!(
        keys.claim_key_packages("nobody", &[])
            .await
            .unwrap()
            .is_empty(),
        "{name}"
    );
    // A claim for a device not yet in the group leaves the others' packages
    // where they are: the laptop (in the group) keeps its next one.
    keys.upload_key_packages("bo", upload("laptop", &["l2"], None), limits)
        .await
        .unwrap();
    let phone_only = keys
        .claim_key_packages("bo", &["laptop".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        phone_only
            .iter()
            .map(|c| c.device.as_str())
            .collect::<Vec<_>>(),
        ["phone"],
        "{name}: {phone_only:?}"
    );
    let counts = keys
        .upload_key_packages("bo", upload("laptop", &[], None), limits)
        .await
        .unwrap();
    assert!(
        counts
            .iter()
            .any(|d| d.device == "laptop" && d.one_time == 1),
        "{name}: the laptop's package stayed: {counts:?}"
    );
}

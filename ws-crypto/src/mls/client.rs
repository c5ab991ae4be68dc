//! An MLS member of encrypted channels over one channels connection
//! ([`MlsClient`]): it creates and joins channels' groups, leaves key
//! packages in the server's directory, adds users by the packages it
//! claims (any number in one commit), commits the server's removal
//! proposals, sends and reads messages, and re-bases a commit another
//! member's beat. Works on every runtime ws-async does.

use std::collections::{BTreeSet, HashMap, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use ws_channels::e2e::{COMMIT_KIND, PROPOSAL_KIND};
use ws_channels::protocol::{Command, Event, KEYS_CHANNEL, ServerMessage};
use ws_channels::{ChannelsClient, ClientError, ErrorCode, LeaveReason, Payload, PublicationKind};

use super::{Commit, Device, Group, GroupMember, GroupRole, MlsError, MlsReader, Received};
use ws_channels::e2e::GroupReader as _;

mod resync;

/// The `e2e` kind of an application message: `{"e2e": "mls", "message":
/// "<base64 MLS private message>"}`.
pub const MESSAGE_KIND: &str = "mls";

/// The `e2e` kind of a device's request to be added again, published when
/// it missed commits of its group (away longer than the channel keeps):
/// `{"e2e": "resync", "device": "<fingerprint>", "epoch": E}` (`epoch`:
/// the last it has). A member with [`MlsClient::with_auto_add`] commits
/// the device's removal and its addition from a fresh key package of its
/// own, whose Welcome brings it back.
pub const RESYNC_KIND: &str = "resync";

/// How many times [`MlsClient::add`] (or another commit) is made again on
/// top of commits that beat it before it gives up.
pub const MAX_REBASES: usize = 16;

/// [`MlsClient::with_max_message`]'s default: `ws serve`'s default
/// `max_message_size`, 1 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// Why an [`MlsClient`] call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlsClientError {
    /// The channels server refused, or the connection failed.
    #[error(transparent)]
    Channels(#[from] ClientError),
    /// MLS refused (a message that does not verify, a bad Welcome).
    #[error(transparent)]
    Mls(#[from] MlsError),
    /// This device is in no group of that channel (not added yet, or
    /// removed).
    #[error("this device is in no group of {0:?}")]
    NoGroup(String),
    /// The server names no external sender: it does not serve MLS groups.
    #[error("the server does not serve end-to-end groups")]
    NoDeliveryService,
    /// Every user to add has no key package in the directory.
    #[error("no key package for {0:?}")]
    NoKeyPackages(Vec<String>),
    /// A commit (with its Welcome and GroupInfo) larger than the messages
    /// the server takes ([`MlsClient::with_max_message`]), even for one
    /// device: the group's ratchet tree alone is too large. Raise the
    /// server's `max_message_size` (and the client's to match).
    #[error("a commit of {size} bytes, past the {max} the server takes")]
    TooLarge {
        /// The command's size.
        size: usize,
        /// The most the server takes.
        max: usize,
    },
    /// Other members' commits beat this one [`MAX_REBASES`] times.
    #[error("other commits beat this one {MAX_REBASES} times")]
    TooManyConflicts,
    /// Publications of the channel were lost (a `lost` event) while this
    /// device waited for the commit that beat its own: join again with
    /// `since` and carry on.
    #[error("publications of {0:?} were lost")]
    Lost(String),
    /// The server sent something this client cannot read.
    #[error("not an end-to-end message: {0}")]
    Malformed(String),
    /// The server answered a claim for one user with a key package that
    /// names another, or that does not verify.
    #[error("the server handed out a key package for {asked:?} that is not theirs: {why}")]
    Forged {
        /// The user claimed.
        asked: String,
        /// What is wrong with it.
        why: String,
    },
}

/// A device of a user, claimed from the server's directory to be added
/// ([`MlsClient::claim`], [`MlsClient::add_claimed`]): its key package,
/// checked here to verify and to name the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDevice {
    /// The user its credential names.
    pub user: String,
    /// Its signature key's fingerprint, computed here from the package
    /// (not the server's word): compare it with the user's before adding
    /// when the server is not trusted with membership.
    pub fingerprint: String,
    /// The key package.
    pub key_package: Vec<u8>,
}

/// What happened in an encrypted channel, as this device sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MlsEvent {
    /// A member sent a message.
    Message {
        /// The channel.
        channel: String,
        /// Who, as the group knows it (credential and fingerprint).
        from: GroupMember,
        /// What it says.
        data: Vec<u8>,
    },
    /// A message this device sent came back from the server (its echo):
    /// delivered to the channel.
    Sent {
        /// The channel.
        channel: String,
    },
    /// This device joined the channel's group (a member added it).
    Joined {
        /// The channel.
        channel: String,
        /// The epoch it joined in: it reads what is sent from here on.
        epoch: u64,
    },
    /// A member's commit moved the group to a new epoch.
    Epoch {
        /// The channel.
        channel: String,
        /// The new epoch.
        epoch: u64,
        /// Users it added.
        added: Vec<String>,
        /// Users it removed.
        removed: Vec<String>,
    },
    /// This device was removed from the channel's group: it reads nothing
    /// sent from here on.
    Removed {
        /// The channel.
        channel: String,
    },
    /// `user` joined the channel and has no device in its group: add it
    /// ([`MlsClient::add`]), or let [`MlsClient::with_auto_add`] do it.
    Admitted {
        /// The channel.
        channel: String,
        /// Who.
        user: String,
    },
    /// Adding users this client was adding on its own
    /// ([`MlsClient::with_auto_add`]) failed (no key packages, no right to
    /// commit): add them again once that is mended.
    AddFailed {
        /// The channel.
        channel: String,
        /// Whom.
        users: Vec<String>,
        /// Why.
        error: String,
    },
    /// The server proposes removing `user` (kicked or banned); the next
    /// commit ([`MlsClient::commit_pending`]) takes it in.
    RemovalProposed {
        /// The channel.
        channel: String,
        /// Whom.
        user: String,
    },
    /// This device missed commits of the channel's group (it was away
    /// longer than the channel keeps what was sent, or they were withheld):
    /// it reads nothing more there until a member adds it again, which it
    /// has asked for ([`RESYNC_KIND`]); `Joined` follows when one does.
    Behind {
        /// The channel.
        channel: String,
        /// The last epoch this device has.
        epoch: u64,
    },
    /// A message or commit this device could not open or apply (sent
    /// before it joined, forged, or from an epoch it does not have).
    Unreadable {
        /// The channel.
        channel: String,
        /// Why.
        error: String,
    },
    /// Any other event of the channels protocol (presence, kicks, `lost`).
    Other(Event),
}

/// An MLS member of encrypted channels on one [`ChannelsClient`]
/// connection. One device ([`Device`]) per client; its groups, one per
/// channel, are kept in the device, so [`export`](Self::export) saves them
/// with its keys.
///
/// ```no_run
/// # async fn run(socket: ws_async::WebSocket) -> Result<(), ws_crypto::mls::MlsClientError> {
/// use ws_crypto::mls::{Device, MlsClient, MlsEvent};
///
/// let mut client = MlsClient::new(ws_channels::ChannelsClient::new(socket), Device::new("ann")?);
/// client.create("room", 100).await?;
/// client.add("room", &["bob"]).await?; // bob's device left key packages
/// client.send("room", b"hello bob").await?;
/// while let Some(event) = client.next_event().await {
///     if let MlsEvent::Message { from, data, .. } = event? {
///         println!("{} ({}): {:?}", from.user, from.fingerprint, data);
///     }
/// }
/// # Ok(()) }
/// ```
pub struct MlsClient {
    channels: ChannelsClient,
    device: Device,
    groups: HashMap<String, Group>,
    /// Events read while a command's reply was awaited, for `next_event`.
    events: VecDeque<MlsEvent>,
    /// The largest message the server takes.
    max_message: usize,
    /// Whether users admitted to a channel are added to its group at once.
    auto_add: bool,
    /// Per channel, users admitted and not added yet (with `auto_add`).
    to_add: HashMap<String, BTreeSet<String>>,
    /// Channels whose group this device fell behind in, with the epoch it
    /// has there; those it has not asked to be added again yet are in
    /// `to_ask`.
    behind: HashMap<String, u64>,
    to_ask: BTreeSet<String>,
    /// Per channel, devices (fingerprint, user) that asked to be added
    /// again and are not yet (with `auto_add`).
    to_add_again: HashMap<String, BTreeSet<(String, String)>>,
    /// Events waiting at most, before commands are refused.
    max_events: usize,
}

impl std::fmt::Debug for MlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlsClient")
            .field("user", &self.device.user())
            .field("fingerprint", &self.device.fingerprint())
            .field("groups", &self.groups.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn data_of(value: &Value, field: &str) -> Result<Vec<u8>, MlsClientError> {
    let text = value[field]
        .as_str()
        .ok_or_else(|| MlsClientError::Malformed(format!("no `{field}`")))?;
    BASE64
        .decode(text)
        .map_err(|e| MlsClientError::Malformed(format!("`{field}`: {e}")))
}

impl MlsClient {
    /// A member on `channels` with `device`; groups the device saved are
    /// loaded with [`load`](Self::load).
    pub fn new(channels: ChannelsClient, device: Device) -> Self {
        Self {
            channels,
            device,
            groups: HashMap::new(),
            events: VecDeque::new(),
            max_message: DEFAULT_MAX_MESSAGE,
            auto_add: false,
            to_add: HashMap::new(),
            behind: HashMap::new(),
            to_ask: BTreeSet::new(),
            to_add_again: HashMap::new(),
            max_events: ws_channels::MAX_BUFFERED_EVENTS,
        }
    }

    /// How many events may wait unread before a command is refused with
    /// [`ClientError::TooManyEvents`] (nothing sent; read events with
    /// [`next_event`](Self::next_event), then send again), so a client that
    /// only sends while a channel is busy does not grow without bound.
    /// Default [`ws_channels::MAX_BUFFERED_EVENTS`] (10,000).
    pub fn with_max_events(mut self, limit: usize) -> Self {
        self.max_events = limit;
        self
    }

    /// Refuses a command while too many events wait unread.
    fn ready(&self) -> Result<(), MlsClientError> {
        if self.events.len() >= self.max_events {
            return Err(ClientError::TooManyEvents {
                limit: self.max_events,
            }
            .into());
        }
        Ok(())
    }

    /// Membership follows the channel: every user the server admits to a
    /// channel whose group this device is in ([`MlsEvent::Admitted`]) is
    /// added by this client, those admitted together in one commit, as
    /// [`next_event`](Self::next_event) reads them (an `Epoch` event says
    /// whom it added; `AddFailed` why it could not). So is a member's
    /// device that is not in the group yet (a second browser, a new
    /// phone), this device's user's included, when it joins the channel:
    /// each join of a member costs one `claim` that leaves out the
    /// devices already in. Give it to the
    /// members who may commit (by default, channel owners). Default off:
    /// the application adds whom it approves (after comparing
    /// fingerprints, say).
    pub fn with_auto_add(mut self, on: bool) -> Self {
        self.auto_add = on;
        self
    }

    /// The largest message the server takes (its `max_message_size`),
    /// default [`DEFAULT_MAX_MESSAGE`]: an [`add`](Self::add) whose commit
    /// would be larger is split into several commits that fit, so a burst
    /// of joins never has the server close this connection for a message
    /// too big (1009).
    pub fn with_max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// This device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The channels connection, for what is not end-to-end (presence,
    /// kicks, roles).
    pub fn channels(&mut self) -> &mut ChannelsClient {
        &mut self.channels
    }

    /// The members of `channel`'s group, as the group knows them; empty
    /// when this device is in none.
    pub fn roster(&self, channel: &str) -> Vec<GroupMember> {
        self.groups
            .get(channel)
            .map_or_else(Vec::new, Group::members)
    }

    /// `channel`'s group's roles (who may commit; empty when this device
    /// is in no group there).
    pub fn roles(&self, channel: &str) -> super::GroupRoles {
        self.groups
            .get(channel)
            .map(Group::roles)
            .unwrap_or_default()
    }

    /// The epoch of `channel`'s group, if this device is in one.
    pub fn epoch(&self, channel: &str) -> Option<u64> {
        self.groups.get(channel).map(Group::epoch)
    }

    /// Everything this device keeps (its key, key packages and every
    /// group's current state) as one blob for [`Device::import`]; it holds
    /// secrets.
    pub fn export(&mut self) -> Result<Vec<u8>, MlsClientError> {
        for group in self.groups.values_mut() {
            group.save()?;
        }
        Ok(self.device.export()?)
    }

    /// Takes up `channel`'s group as the device saved it (after an
    /// import): join the channel again with `since` to read what came
    /// meanwhile, in order.
    pub fn load(&mut self, channel: &str) -> Result<(), MlsClientError> {
        let group = self.device.load_group(channel)?;
        self.groups.insert(channel.to_owned(), group);
        Ok(())
    }

    /// Leaves `count` one-time key packages and a last-resort one in the
    /// server's directory, so members can add this device's user while it
    /// is away. What each of the user's devices has there after it.
    pub async fn publish_key_packages(&mut self, count: usize) -> Result<Value, MlsClientError> {
        self.ready()?;
        let mut packages = Vec::with_capacity(count);
        for _ in 0..count {
            packages.push(BASE64.encode(self.device.key_package()?));
        }
        let last_resort = Some(BASE64.encode(self.device.key_package()?));
        let command = Command::KeyPackages {
            key_packages: packages,
            last_resort,
        };
        let reply = self.channels.command(KEYS_CHANNEL, command).await;
        self.take_buffered();
        Ok(reply?)
    }

    /// Creates `channel` encrypted, keeping `history_size` publications
    /// (at least 1: commits travel through history, and a channel without
    /// it takes none), announcing joins (for [`MlsEvent::Admitted`]), and
    /// its group with this device as its only member, naming the server as
    /// external sender.
    pub async fn create(&mut self, channel: &str, history_size: u64) -> Result<(), MlsClientError> {
        self.ready()?;
        let command = Command::create_encrypted(history_size);
        let reply = self.channels.create(channel, Some(command)).await;
        self.take_buffered();
        let server = reply?
            .external_sender
            .ok_or(MlsClientError::NoDeliveryService)?;
        let server = BASE64
            .decode(server)
            .map_err(|e| MlsClientError::Malformed(format!("external_sender: {e}")))?;
        let group = self.device.create_group(channel, &server)?;
        self.groups.insert(channel.to_owned(), group);
        Ok(())
    }

    /// Joins `channel`; this device enters its group when a member adds it
    /// ([`MlsEvent::Joined`]), from a key package it
    /// [published](Self::publish_key_packages). A device that has the
    /// group (imported) at an epoch older than the server says the group
    /// is at missed commits: [`MlsEvent::Behind`] comes next, and it asks
    /// to be added again.
    pub async fn join(&mut self, channel: &str) -> Result<(), MlsClientError> {
        self.ready()?;
        let reply = self.channels.join(channel, None).await;
        self.take_buffered();
        let reply = reply?;
        let behind = self
            .groups
            .get(channel)
            .zip(reply.group_epoch)
            .is_some_and(|(group, now)| group.epoch() < now);
        if behind {
            let event = self.fell_behind(channel);
            self.events.push_back(event);
        }
        Ok(())
    }

    /// Adds every device of each user in `users` to `channel`'s group in
    /// one commit (several, when one would be larger than the server
    /// takes), from key packages claimed from the directory: the devices
    /// not in the group yet, so a user already there gets their new
    /// devices (users without any are skipped; none at all is
    /// [`MlsClientError::NoKeyPackages`]). The epoch the last commit
    /// starts.
    pub async fn add(&mut self, channel: &str, users: &[&str]) -> Result<u64, MlsClientError> {
        let claimed = self.claim(channel, users).await?;
        if claimed.is_empty() {
            return Err(MlsClientError::NoKeyPackages(
                users.iter().map(|u| (*u).to_owned()).collect(),
            ));
        }
        self.add_claimed(channel, claimed).await
    }

    /// Takes one key package per device of each user in `users` from the
    /// server's directory, leaving out the devices already in the group
    /// (their packages stay for other groups), each checked to verify and
    /// to name its user ([`MlsClientError::Forged`] otherwise). A basic
    /// credential is a name its device signs, so a server could hand out
    /// a device of its own under a user's name: an application that does
    /// not trust the server with membership shows the fingerprints and adds
    /// only those the user confirms ([`add_claimed`](Self::add_claimed)).
    pub async fn claim(
        &mut self,
        channel: &str,
        users: &[&str],
    ) -> Result<Vec<ClaimedDevice>, MlsClientError> {
        self.ready()?;
        self.group(channel)?;
        let reader = MlsReader::new();
        let roster = self.roster(channel);
        let mut claimed = Vec::new();
        for user in users {
            let claim = Command::Claim {
                user: (*user).to_owned(),
                except: roster
                    .iter()
                    .filter(|member| member.user == *user)
                    .map(|member| member.fingerprint.clone())
                    .collect(),
            };
            let reply = self.channels.command(channel, claim).await;
            self.take_buffered();
            for entry in reply?["key_packages"].as_array().into_iter().flatten() {
                let key_package = data_of(entry, "key_package")?;
                let forged = |why: String| MlsClientError::Forged {
                    asked: (*user).to_owned(),
                    why,
                };
                let frame = reader.read_key_package(&key_package).map_err(forged)?;
                if frame.user != *user {
                    return Err(forged(format!("it names {:?}", frame.user)));
                }
                claimed.push(ClaimedDevice {
                    user: frame.user,
                    fingerprint: frame.device,
                    key_package,
                });
            }
        }
        Ok(claimed)
    }

    /// Adds `devices` ([`claim`](Self::claim)ed) in one commit (several,
    /// when one would be larger than the server takes). The epoch the
    /// last commit starts.
    pub async fn add_claimed(
        &mut self,
        channel: &str,
        devices: Vec<ClaimedDevice>,
    ) -> Result<u64, MlsClientError> {
        self.ready()?;
        self.group(channel)?;
        let packages: Vec<(String, Vec<u8>)> = devices
            .into_iter()
            .map(|d| (d.fingerprint, d.key_package))
            .collect();
        if packages.is_empty() {
            return Err(MlsClientError::NoKeyPackages(Vec::new()));
        }
        // Halves until each commit fits; every half is one more epoch.
        let mut batches = vec![packages];
        let mut epoch = 0;
        while let Some(batch) = batches.pop() {
            // After a conflict the winner may have added some of them (a
            // second tab of the owner's, auto-adding too): those are left
            // out, and nothing is committed when none is left.
            let add = |group: &mut Group| {
                let members = group.members();
                let missing: Vec<Vec<u8>> = batch
                    .iter()
                    .filter(|(fingerprint, _)| {
                        members.iter().all(|m| &m.fingerprint != fingerprint)
                    })
                    .map(|(_, package)| package.clone())
                    .collect();
                (!missing.is_empty())
                    .then(|| group.add(&missing))
                    .transpose()
            };
            match self.commit_with(channel, add).await {
                Ok(at) => epoch = at,
                Err(MlsClientError::TooLarge { .. }) if batch.len() > 1 => {
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    batches.push(second);
                    batches.push(first);
                }
                Err(error) => return Err(error),
            }
        }
        Ok(epoch)
    }

    /// Removes every device of `user` from `channel`'s group.
    pub async fn remove(&mut self, channel: &str, user: &str) -> Result<u64, MlsClientError> {
        self.ready()?;
        self.commit_with(channel, |group| group.remove(user).map(Some))
            .await
    }

    /// Commits `user`'s role in `channel`'s group (`None`: none): owners
    /// and committers may commit, plain members not, whatever the server
    /// lets their sessions do; only an owner's change is applied by the
    /// others. Give the user the channel's `commit` right too
    /// ([`ChannelsClient::set_role`]) or the server refuses their commits.
    pub async fn set_role(
        &mut self,
        channel: &str,
        user: &str,
        role: Option<GroupRole>,
    ) -> Result<u64, MlsClientError> {
        self.ready()?;
        self.commit_with(channel, |group| group.set_role(user, role).map(Some))
            .await
    }

    /// Commits the proposals received since the last commit (the server's
    /// removals, [`MlsEvent::RemovalProposed`]), with a fresh key for this
    /// member.
    pub async fn commit_pending(&mut self, channel: &str) -> Result<u64, MlsClientError> {
        self.ready()?;
        self.commit_with(channel, |group| group.commit_proposals().map(Some))
            .await
    }

    /// Encrypts `data` for `channel`'s members and publishes it.
    pub async fn send(&mut self, channel: &str, data: &[u8]) -> Result<(), MlsClientError> {
        self.ready()?;
        let sealed = self.group(channel)?.encrypt(data)?;
        self.publish(
            channel,
            &json!({ "e2e": MESSAGE_KIND, "message": BASE64.encode(sealed) }),
        )
        .await
    }

    /// Publishes `data` (one of the `e2e` kinds) on `channel`.
    async fn publish(&mut self, channel: &str, data: &Value) -> Result<(), MlsClientError> {
        let reply = self
            .channels
            .command(
                channel,
                Command::Publish {
                    data: Payload::new(data),
                    idempotency_key: None,
                },
            )
            .await;
        self.take_buffered();
        reply?;
        Ok(())
    }

    /// The next event; `None` once the connection closed. With
    /// [`with_auto_add`](Self::with_auto_add), users admitted meanwhile are
    /// added first.
    pub async fn next_event(&mut self) -> Option<Result<MlsEvent, MlsClientError>> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(Ok(event));
            }
            if let Some(channel) = self.to_add.keys().next().cloned() {
                let users = self.to_add.remove(&channel).unwrap_or_default();
                if let Some(event) = self.add_admitted(&channel, users).await {
                    self.events.push_back(event);
                }
                continue;
            }
            if let Some(channel) = self.to_ask.pop_first() {
                if let Err(error) = self.ask_to_be_added_again(&channel).await {
                    self.events.push_back(MlsEvent::Unreadable {
                        channel,
                        error: format!("could not ask to be added again: {error}"),
                    });
                }
                continue;
            }
            if let Some(channel) = self.to_add_again.keys().next().cloned() {
                let devices = self.to_add_again.remove(&channel).unwrap_or_default();
                for (fingerprint, user) in devices {
                    if let Some(event) = self.add_again(&channel, &user, &fingerprint).await {
                        self.events.push_back(event);
                    }
                }
                continue;
            }
            match self.channels.next_event().await? {
                Ok(event) => self.process(event),
                Err(error) => return Some(Err(error.into())),
            }
        }
    }

    /// Adds (with auto_add) the devices of `users` not in `channel`'s
    /// group yet: those of users who just came, and new devices of members.
    /// What to tell the application: the epoch of the add, that users not
    /// in the group could not be added, or nothing (every device already
    /// in, added meanwhile by another member, say).
    async fn add_admitted(&mut self, channel: &str, users: BTreeSet<String>) -> Option<MlsEvent> {
        let names: Vec<&str> = users.iter().map(String::as_str).collect();
        let failed = |users: Vec<String>, error: String| MlsEvent::AddFailed {
            channel: channel.to_owned(),
            users,
            error,
        };
        let claimed = match self.claim(channel, &names).await {
            Ok(claimed) => claimed,
            Err(error) => return Some(failed(users.into_iter().collect(), error.to_string())),
        };
        if claimed.is_empty() {
            // Members whose devices are all in need nothing; users not in
            // the group at all have no packages to be added with.
            let roster = self.roster(channel);
            let missing: Vec<String> = users
                .into_iter()
                .filter(|user| user != self.device.user() && roster.iter().all(|m| &m.user != user))
                .collect();
            let error = MlsClientError::NoKeyPackages(missing.clone()).to_string();
            return (!missing.is_empty()).then(|| failed(missing, error));
        }
        let mut added: Vec<String> = claimed.iter().map(|d| d.user.clone()).collect();
        added.dedup();
        Some(match self.add_claimed(channel, claimed).await {
            Ok(epoch) => MlsEvent::Epoch {
                channel: channel.to_owned(),
                epoch,
                added,
                removed: Vec::new(),
            },
            Err(error) => failed(added, error.to_string()),
        })
    }

    fn group(&mut self, channel: &str) -> Result<&mut Group, MlsClientError> {
        self.groups
            .get_mut(channel)
            .ok_or_else(|| MlsClientError::NoGroup(channel.to_owned()))
    }

    /// Makes a commit with `make` and has the server order it; when
    /// another commit came first, applies that one and makes it again.
    /// `make` gives `None` when there is nothing left to commit: the
    /// group's epoch then.
    async fn commit_with(
        &mut self,
        channel: &str,
        make: impl Fn(&mut Group) -> Result<Option<Commit>, MlsError>,
    ) -> Result<u64, MlsClientError> {
        for _ in 0..MAX_REBASES {
            let group = self.group(channel)?;
            let epoch = group.epoch();
            let Some(commit) = make(group)? else {
                return Ok(epoch);
            };
            let command = Command::Commit {
                commit: BASE64.encode(&commit.commit),
                welcome: commit.welcome.as_ref().map(|w| BASE64.encode(w)),
                // Only the newcomers' sessions need the Welcome; a commit
                // that does not know whom it adds leaves it to everyone.
                welcome_to: (commit.welcome.is_some() && !commit.welcome_to.is_empty())
                    .then(|| commit.welcome_to.clone()),
                group_info: commit.group_info.as_ref().map(|g| BASE64.encode(g)),
            };
            // As sent, with an id as long as the client's are for a while.
            let size = ws_channels::protocol::Request::new(channel, command.clone())
                .to_envelope("c0000000000")
                .to_message()
                .len();
            if size > self.max_message {
                self.group(channel)?.discard();
                return Err(MlsClientError::TooLarge {
                    size,
                    max: self.max_message,
                });
            }
            let reply = self.channels.command(channel, command).await;
            match reply {
                Ok(_) => {
                    let group = self.group(channel)?;
                    group.confirm()?;
                    let epoch = group.epoch();
                    // What arrived meanwhile comes after this commit (its
                    // own echo, of the epoch before, is passed over).
                    self.take_buffered();
                    return Ok(epoch);
                }
                Err(error) => {
                    self.group(channel)?.discard();
                    self.take_buffered();
                    if error.refusal().map(|r| r.code) != Some(ErrorCode::Conflict) {
                        return Err(error.into());
                    }
                    self.catch_up(channel, epoch).await?;
                }
            }
        }
        Err(MlsClientError::TooManyConflicts)
    }

    /// Reads the channel until its group has left `epoch` (the commit that
    /// beat this device's is published to it).
    async fn catch_up(&mut self, channel: &str, epoch: u64) -> Result<(), MlsClientError> {
        while self.group(channel)?.epoch() == epoch {
            let event = match self.channels.next_event().await {
                Some(event) => event?,
                None => return Err(ClientError::Closed.into()),
            };
            if matches!(&event, Event::Lost { channel: lost, .. } if lost == channel) {
                self.process(event);
                return Err(MlsClientError::Lost(channel.to_owned()));
            }
            self.process(event);
        }
        Ok(())
    }

    /// Processes the events the channels client kept while a reply was
    /// awaited.
    fn take_buffered(&mut self) {
        for envelope in self.channels.take_buffered_events() {
            if let Some(ServerMessage::Event(event)) = ServerMessage::from_envelope(envelope) {
                self.process(event);
            }
        }
    }

    /// Turns a channels event into what it means for this device's groups.
    fn process(&mut self, event: Event) {
        if let Event::Publication {
            channel,
            kind: PublicationKind::Join,
            publication,
        } = &event
            && let Some(user) = publication.from.as_ref().and_then(|f| f.user.clone())
            && self.groups.contains_key(channel)
        {
            // A join of a user already in the group may be a device of
            // theirs that is not (a new phone) or one reconnecting: with
            // auto_add the claim, which leaves out the devices already
            // there, tells which, and costs a reconnecting one nothing.
            if self.auto_add {
                self.to_add
                    .entry(channel.clone())
                    .or_default()
                    .insert(user.clone());
            }
            if user != self.device.user() && self.roster(channel).iter().all(|m| m.user != user) {
                self.events.push_back(MlsEvent::Admitted {
                    channel: channel.clone(),
                    user,
                });
                return;
            }
        }
        let Event::Publication {
            channel,
            publication,
            ..
        } = &event
        else {
            if let Event::Removed {
                channel,
                reason: LeaveReason::Kicked | LeaveReason::Banned,
            } = &event
            {
                // Out of the channel: its group's next commit removes this
                // device; nothing more arrives for it here.
                self.groups.remove(channel);
            }
            self.events.push_back(MlsEvent::Other(event));
            return;
        };
        let data = publication.data.as_ref().map(Payload::to_value);
        let kind = data.as_ref().and_then(|d| d["e2e"].as_str());
        let channel = channel.clone();
        let unreadable = |error: String| MlsEvent::Unreadable {
            channel: channel.clone(),
            error,
        };
        let events = match (kind, data.as_ref()) {
            (Some(MESSAGE_KIND), Some(data)) => vec![self.message(&channel, data)],
            (Some(COMMIT_KIND), Some(data)) => self.commit(&channel, data),
            (Some(PROPOSAL_KIND), Some(data)) => self.proposal(&channel, data),
            (Some(RESYNC_KIND), Some(data)) => {
                let from = publication.from.as_ref().and_then(|f| f.user.clone());
                self.asked_to_add_again(&channel, from, data);
                Vec::new()
            }
            _ => vec![Ok(MlsEvent::Other(event))],
        };
        for event in events {
            self.events.push_back(match event {
                Ok(event) => event,
                Err(error) => unreadable(error.to_string()),
            });
        }
    }

    fn message(&mut self, channel: &str, data: &Value) -> Result<MlsEvent, MlsClientError> {
        let bytes = data_of(data, "message")?;
        let group = self.group(channel)?;
        let epoch = group.epoch();
        // The framing is read again only for a message that did not open.
        let received = match group.receive(&bytes) {
            Err(_) if super::epoch_of(&bytes).is_some_and(|made_in| made_in > epoch) => {
                return Ok(self.fell_behind(channel));
            }
            received => received?,
        };
        match received {
            Received::Message { from, data } => Ok(MlsEvent::Message {
                channel: channel.to_owned(),
                from,
                data,
            }),
            Received::Own => Ok(MlsEvent::Sent {
                channel: channel.to_owned(),
            }),
            other => Err(MlsClientError::Malformed(format!(
                "a message that is {other:?}"
            ))),
        }
    }

    fn commit(&mut self, channel: &str, data: &Value) -> Vec<Result<MlsEvent, MlsClientError>> {
        let made_in = data["epoch"].as_u64();
        let Some(group) = self.groups.get_mut(channel) else {
            // Not in the group yet: the commit may carry this device's
            // Welcome.
            return self.join_from(channel, data).into_iter().collect();
        };
        let epoch = group.epoch();
        if made_in.is_some_and(|made_in| made_in > epoch) {
            // Commits this device never saw came before: its Welcome, if
            // a member added it again, or a request to be.
            return match self.join_from(channel, data) {
                Some(joined) => vec![joined],
                None => vec![Ok(self.fell_behind(channel))],
            };
        }
        if made_in != Some(epoch) {
            // This device's own commit (already applied), or one it has.
            return Vec::new();
        }
        let applied = data_of(data, "commit").and_then(|commit| Ok(group.receive(&commit)?));
        match applied {
            Ok(Received::Commit {
                removed_me: true, ..
            }) => {
                self.groups.remove(channel);
                // Removed and added again in one commit (it had fallen
                // behind, or another member re-added it first).
                if let Some(joined) = self.join_from(channel, data) {
                    return vec![joined];
                }
                vec![Ok(MlsEvent::Removed {
                    channel: channel.to_owned(),
                })]
            }
            Ok(Received::Commit {
                epoch,
                added,
                removed,
                ..
            }) => vec![Ok(MlsEvent::Epoch {
                channel: channel.to_owned(),
                epoch,
                added,
                removed,
            })],
            Ok(other) => vec![Err(MlsClientError::Malformed(format!(
                "a commit that is {other:?}"
            )))],
            Err(error) => vec![Err(error)],
        }
    }

    fn proposal(&mut self, channel: &str, data: &Value) -> Vec<Result<MlsEvent, MlsClientError>> {
        let Some(group) = self.groups.get_mut(channel) else {
            return Vec::new();
        };
        if data["epoch"].as_u64() != Some(group.epoch()) {
            // For an epoch gone: the server proposes again if it must.
            return Vec::new();
        }
        let mut events = Vec::new();
        for proposal in data["proposals"].as_array().into_iter().flatten() {
            let taken = proposal
                .as_str()
                .ok_or_else(|| MlsClientError::Malformed("a proposal".into()))
                .and_then(|p| {
                    BASE64
                        .decode(p)
                        .map_err(|e| MlsClientError::Malformed(e.to_string()))
                })
                .and_then(|p| Ok(group.receive(&p)?));
            if let Err(error) = taken {
                events.push(Err(error));
            }
        }
        if events.is_empty() {
            events.push(Ok(MlsEvent::RemovalProposed {
                channel: channel.to_owned(),
                user: data["user"].as_str().unwrap_or_default().to_owned(),
            }));
        }
        events
    }
}

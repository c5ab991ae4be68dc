//! A client for end-to-end encrypted `ws-channels` channels over any
//! connected [`WebSocket`] (ws-tokio, ws-smol).
//!
//! Every member announces its X25519 public key in its join `info`
//! (`{"e2e_key": "..."}`). The owner's client makes each epoch's key and
//! hands it to every member it admits, wrapped to that member's key; when
//! it kicks or bans someone, or someone leaves, it starts a new epoch for
//! those who remain, so a removed member cannot read what follows, even if
//! it joins again (the owner's client withholds keys from users it removed
//! until [`E2eClient::admit`]). The server relays wrapped keys and
//! ciphertext only.
//!
//! The owner's client hands keys to members who join, and starts a new
//! epoch when one leaves, while it handles events: keep calling
//! [`E2eClient::next_event`] (a loop in its own task) on the owner's side.
//!
//! The client learns its own session id and the owner's key from the
//! channel's presence list, which the server supplies. An honest server
//! cannot read anything; a malicious one could substitute public keys in
//! that list, so members who need protection against the server itself
//! compare [`PublicKey::fingerprint`]s out of band.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use ws_async::ws_core::envelope::Envelope;
use ws_async::{ConnectionError, SendError, WebSocket};
use ws_channels::protocol::PresenceMember;
use ws_channels::protocol::{Command, Event, ServerMessage};
use ws_channels::{ChannelsClient, LeaveReason, Payload, PublicationKind, Target};

use crate::channel::{E2eData, E2eError, Keyring};
use crate::keys::{KeyPair, PublicKey};

/// Why an end-to-end channel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the command (`code` as in the channels protocol:
    /// `forbidden`, `not_member`, `banned`, ...).
    #[error("{action} refused: {code}: {message}")]
    Refused {
        /// The command.
        action: String,
        /// The protocol's error code.
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// The channel is not one this client has joined, or this client is
    /// not its owner where that is needed.
    #[error("{0}")]
    NotJoined(String),
    /// Sealing failed (no key yet: the owner has not handed one over).
    #[error(transparent)]
    E2e(#[from] E2eError),
    /// The server said something that is not the channels protocol.
    #[error("unexpected message from the server: {0}")]
    Protocol(String),
    /// The connection failed.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The connection is closed.
    #[error("the connection is closed")]
    Closed,
    /// Sending failed.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// What happened on an end-to-end encrypted channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum E2eEvent {
    /// A message, opened.
    Message {
        /// The channel.
        channel: String,
        /// The sending session.
        session: String,
        /// The sending user.
        user: Option<String>,
        /// The plaintext.
        plaintext: Vec<u8>,
    },
    /// A message that did not open: sealed under an epoch this member was
    /// not given (it was removed), replayed, altered or malformed. Nothing
    /// else changes.
    Refused {
        /// The channel.
        channel: String,
        /// The session the server says sent it.
        session: String,
        /// Why.
        error: E2eError,
    },
    /// This member received the key of `epoch`.
    Keys {
        /// The channel.
        channel: String,
        /// The epoch.
        epoch: u64,
    },
    /// (Owner) A session joined; `granted` says whether it was handed the
    /// current key (not when its user was removed by this client and not
    /// admitted again, or it announced no key).
    Joined {
        /// The channel.
        channel: String,
        /// The session.
        session: String,
        /// Its user.
        user: Option<String>,
        /// Whether it got the key.
        granted: bool,
    },
    /// (Owner) A session holding the current key left; a new epoch was
    /// started for the others.
    Left {
        /// The channel.
        channel: String,
        /// The session.
        session: String,
        /// The new epoch.
        epoch: u64,
    },
    /// This session was removed: `kicked`, `banned` or `closed`. Its keys
    /// are kept, so it can join again and read what it was given.
    Removed {
        /// The channel.
        channel: String,
        /// The event's action.
        reason: String,
    },
    /// Any other channels event, as the server sent it.
    Other(Value),
}

struct Joined {
    me: String,
    owner: Option<(String, PublicKey)>,
    /// (Owner) Sessions holding the current epoch's key: when one of them
    /// leaves, a new epoch starts.
    holders: HashSet<String>,
    /// (Owner) Users removed by this client, not given keys again.
    withheld: HashSet<String>,
}

/// An end-to-end encrypted channels client on one connection; see the
/// [module documentation](self).
pub struct E2eClient {
    channels: ChannelsClient,
    key: KeyPair,
    joined: HashMap<String, Joined>,
    /// Keyrings outlive membership, so a member that joins again keeps the
    /// keys it was given (and only those).
    rings: HashMap<String, Keyring>,
}

impl std::fmt::Debug for E2eClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2eClient")
            .field("public_key", &self.key.public())
            .field("channels", &self.joined.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The member key a session announced in its join `info`.
fn member_key(info: Option<&Payload>) -> Option<PublicKey> {
    info?.to_value()["e2e_key"].as_str()?.parse().ok()
}

/// A presence entry as this client needs it.
struct Listed {
    session: String,
    user: Option<String>,
    owner: bool,
    key: Option<PublicKey>,
}

impl From<PresenceMember> for Listed {
    fn from(member: PresenceMember) -> Self {
        Self {
            session: member.session.to_string(),
            key: member_key(member.info.as_ref()),
            owner: member.role == ws_channels::ChannelRole::OWNER,
            user: member.user,
        }
    }
}

/// The channels client's failure as this client's.
fn failed(action: &str, error: ws_channels::ClientError) -> ClientError {
    match error {
        ws_channels::ClientError::Refused(refusal) => ClientError::Refused {
            action: action.to_owned(),
            code: refusal.code.as_str().to_owned(),
            message: refusal.message.into_owned(),
        },
        ws_channels::ClientError::Closed => ClientError::Closed,
        ws_channels::ClientError::Connection(error) => ClientError::Connection(error),
        ws_channels::ClientError::Send(error) => ClientError::Send(error),
        ws_channels::ClientError::Malformed(text) => {
            ClientError::Protocol(text.chars().take(200).collect())
        }
        other => ClientError::Protocol(other.to_string()),
    }
}

impl E2eClient {
    /// A client on `socket` (connected to a channels route) with member
    /// key `key` (one per device; [`KeyPair::generate`] for a fresh one).
    pub fn new(socket: WebSocket, key: KeyPair) -> Self {
        Self {
            channels: ChannelsClient::new(socket),
            key,
            joined: HashMap::new(),
            rings: HashMap::new(),
        }
    }

    /// This member's public key (what others compare out of band).
    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    /// This client's session id in `channel`, once joined.
    pub fn session(&self, channel: &str) -> Option<&str> {
        self.joined.get(channel).map(|joined| joined.me.as_str())
    }

    /// The newest epoch whose key this client has for `channel`.
    pub fn epoch(&self, channel: &str) -> Option<u64> {
        self.rings.get(channel).and_then(Keyring::current_epoch)
    }

    fn info(&self) -> Payload {
        Payload::new(&json!({ "e2e_key": self.key.public().to_string() }))
    }

    /// Sends a command and waits for its response; events that arrive
    /// meanwhile wait for [`next_event`](Self::next_event).
    async fn command(&mut self, channel: &str, command: Command) -> Result<Value, ClientError> {
        let action = match &command {
            Command::Create { .. } => "create",
            Command::Join { .. } => "join",
            Command::Leave => "leave",
            Command::Publish { .. } => "publish",
            Command::Kick { .. } => "kick",
            Command::Ban { .. } => "ban",
            _ => "command",
        };
        self.channels
            .command(channel, command)
            .await
            .map_err(|error| failed(action, error))
    }

    /// The channel's members.
    async fn presence(&mut self, channel: &str) -> Result<Vec<Listed>, ClientError> {
        let presence = self
            .channels
            .presence(channel)
            .await
            .map_err(|error| failed("presence", error))?;
        Ok(presence.members.into_iter().map(Listed::from).collect())
    }

    async fn find_self(&mut self, channel: &str) -> Result<(), ClientError> {
        let members = self.presence(channel).await?;
        let mine = self.key.public();
        let me = members
            .iter()
            .find(|member| member.key == Some(mine))
            .map(|member| member.session.clone())
            .ok_or_else(|| {
                ClientError::Protocol("this session is not in the presence list".into())
            })?;
        let owner = members
            .iter()
            .find(|member| member.owner)
            .and_then(|member| Some((member.session.clone(), member.key?)));
        let withheld = self
            .joined
            .remove(channel)
            .map(|joined| joined.withheld)
            .unwrap_or_default();
        self.joined.insert(
            channel.to_owned(),
            Joined {
                me,
                owner,
                holders: HashSet::new(),
                withheld,
            },
        );
        Ok(())
    }

    /// Creates `channel` as an end-to-end encrypted channel (the server
    /// then refuses plaintext publications in it) owned by this client,
    /// keeping `history_size` publications for recovery, and starts epoch 1.
    pub async fn create(&mut self, channel: &str, history_size: u32) -> Result<(), ClientError> {
        let create = Command::Create {
            max_participants: None,
            history_size: (history_size > 0).then_some(u64::from(history_size)),
            history_ttl: None,
            presence_events: true,
            encrypted: true,
            info: Some(self.info()),
        };
        self.command(channel, create).await?;
        self.find_self(channel).await?;
        self.rings
            .entry(channel.to_owned())
            .or_insert_with(|| Keyring::new(channel))
            .rotate();
        Ok(())
    }

    /// Joins `channel`. The owner's client hands over the current key
    /// shortly after; it arrives as [`E2eEvent::Keys`].
    pub async fn join(&mut self, channel: &str) -> Result<(), ClientError> {
        let join = Command::Join {
            since: None,
            info: Some(self.info()),
        };
        self.command(channel, join).await?;
        self.find_self(channel).await?;
        self.rings
            .entry(channel.to_owned())
            .or_insert_with(|| Keyring::new(channel));
        Ok(())
    }

    /// Leaves `channel` (the owner's client then starts a new epoch for the
    /// others). The keys received so far are kept.
    pub async fn leave(&mut self, channel: &str) -> Result<(), ClientError> {
        self.command(channel, Command::Leave).await?;
        self.joined.remove(channel);
        Ok(())
    }

    /// Seals `plaintext` under the current epoch and publishes it.
    pub async fn publish(&mut self, channel: &str, plaintext: &[u8]) -> Result<(), ClientError> {
        let me = self.me(channel)?.to_owned();
        let ring = self.rings.get_mut(channel).ok_or(E2eError::NoKey)?;
        let sealed = ring.seal(&me, plaintext)?;
        self.command(channel, publish(&sealed)).await?;
        Ok(())
    }

    fn me(&self, channel: &str) -> Result<&str, ClientError> {
        self.session(channel)
            .ok_or_else(|| ClientError::NotJoined(format!("not in channel {channel:?}")))
    }

    fn owned(&mut self, channel: &str) -> Result<&mut Joined, ClientError> {
        let joined = self
            .joined
            .get_mut(channel)
            .ok_or_else(|| ClientError::NotJoined(format!("not in channel {channel:?}")))?;
        if joined.owner.as_ref().map(|(session, _)| session) != Some(&joined.me) {
            return Err(ClientError::NotJoined(format!(
                "not the owner of {channel:?}"
            )));
        }
        Ok(joined)
    }

    /// (Owner) Kicks `user` and starts a new epoch for the members who
    /// remain; `user` is not handed keys again until [`admit`](Self::admit).
    /// Returns the new epoch.
    pub async fn kick(&mut self, channel: &str, user: &str) -> Result<u64, ClientError> {
        self.owned(channel)?;
        let kick = Command::Kick {
            target: Target::User(user.to_owned()),
        };
        self.command(channel, kick).await?;
        self.owned(channel)?.withheld.insert(user.to_owned());
        self.rotate(channel).await
    }

    /// (Owner) Bans `user` (for `duration` seconds, or until unbanned) and
    /// starts a new epoch; see [`kick`](Self::kick).
    pub async fn ban(
        &mut self,
        channel: &str,
        user: &str,
        duration: Option<u64>,
    ) -> Result<u64, ClientError> {
        self.owned(channel)?;
        let ban = Command::Ban {
            user: user.to_owned(),
            duration,
        };
        self.command(channel, ban).await?;
        self.owned(channel)?.withheld.insert(user.to_owned());
        self.rotate(channel).await
    }

    /// (Owner) Lets `user` have keys again, and hands the current key to
    /// its sessions in the channel now.
    pub async fn admit(&mut self, channel: &str, user: &str) -> Result<(), ClientError> {
        self.owned(channel)?.withheld.remove(user);
        let members = self.presence(channel).await?;
        let theirs: Vec<(String, PublicKey)> = members
            .into_iter()
            .filter(|member| member.user.as_deref() == Some(user))
            .filter_map(|member| Some((member.session, member.key?)))
            .collect();
        self.grant(channel, &theirs).await
    }

    /// (Owner) Starts a new epoch and hands its key to every member in the
    /// presence list except withheld users. Returns the epoch.
    pub async fn rotate(&mut self, channel: &str) -> Result<u64, ClientError> {
        let members = self.presence(channel).await?;
        let joined = self.owned(channel)?;
        let me = joined.me.clone();
        let withheld = joined.withheld.clone();
        let keep: Vec<(String, PublicKey)> = members
            .into_iter()
            .filter(|member| {
                member.session != me && !member.user.as_ref().is_some_and(|u| withheld.contains(u))
            })
            .filter_map(|member| Some((member.session, member.key?)))
            .collect();
        let epoch = self.rings.get_mut(channel).ok_or(E2eError::NoKey)?.rotate();
        self.owned(channel)?.holders.clear();
        self.grant(channel, &keep).await?;
        Ok(epoch)
    }

    /// (Owner) Publishes the current key wrapped for `members`.
    async fn grant(
        &mut self,
        channel: &str,
        members: &[(String, PublicKey)],
    ) -> Result<(), ClientError> {
        if members.is_empty() {
            return Ok(());
        }
        let ring = self.rings.get(channel).ok_or(E2eError::NoKey)?;
        let keys = ring.wrap_current(
            &self.key,
            members.iter().map(|(session, key)| (session.as_str(), key)),
        )?;
        self.command(channel, publish(&keys)).await?;
        let joined = self.owned(channel)?;
        joined
            .holders
            .extend(members.iter().map(|(session, _)| session.clone()));
        Ok(())
    }

    /// The next event on any channel: messages opened, keys received,
    /// (owner) joins answered with keys and leaves with a new epoch.
    /// `None` once the connection is closed.
    pub async fn next_event(&mut self) -> Option<Result<E2eEvent, ClientError>> {
        loop {
            let envelope = match self.channels.next_event_envelope().await? {
                Ok(envelope) => envelope,
                Err(error) => return Some(Err(failed("read", error))),
            };
            match self.handle(envelope).await {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => {}
                Err(error) => return Some(Err(error)),
            }
        }
    }

    async fn handle(&mut self, envelope: Envelope) -> Result<Option<E2eEvent>, ClientError> {
        let other = || E2eEvent::Other(serde_json::to_value(&envelope).unwrap_or_default());
        let Some(ServerMessage::Event(event)) = ServerMessage::from_envelope(envelope.clone())
        else {
            return Ok(Some(other()));
        };
        match event {
            Event::Publication {
                channel,
                kind,
                publication,
            } if self.rings.contains_key(&channel) => {
                let from = publication.from;
                let session = from
                    .as_ref()
                    .map(|f| f.session.to_string())
                    .unwrap_or_default();
                let user = from.as_ref().and_then(|f| f.user.clone());
                match kind {
                    PublicationKind::Message => {
                        let data = publication.data.map_or(Value::Null, |data| data.to_value());
                        Ok(self.on_publication(channel, session, user, &data))
                    }
                    PublicationKind::Join => {
                        if self.owned(&channel).is_err() {
                            return Ok(Some(other()));
                        }
                        let key = member_key(from.as_ref().and_then(|f| f.info.as_ref()));
                        let joined = self.owned(&channel)?;
                        let withheld = user.as_ref().is_some_and(|u| joined.withheld.contains(u));
                        let granted = match key {
                            Some(key) if !withheld => {
                                self.grant(&channel, &[(session.clone(), key)]).await?;
                                true
                            }
                            _ => false,
                        };
                        Ok(Some(E2eEvent::Joined {
                            channel,
                            session,
                            user,
                            granted,
                        }))
                    }
                    PublicationKind::Leave => {
                        if self.owned(&channel).is_err() {
                            return Ok(Some(other()));
                        }
                        if !self.owned(&channel)?.holders.remove(&session) {
                            // It never had the current key (a kicked
                            // session's leave, after the kick's own
                            // rotation).
                            return Ok(None);
                        }
                        let epoch = self.rotate(&channel).await?;
                        Ok(Some(E2eEvent::Left {
                            channel,
                            session,
                            epoch,
                        }))
                    }
                }
            }
            Event::Removed { channel, reason } if self.rings.contains_key(&channel) => {
                self.joined.remove(&channel);
                let reason = match reason {
                    LeaveReason::Kicked => "kicked",
                    LeaveReason::Banned => "banned",
                    _ => "closed",
                };
                Ok(Some(E2eEvent::Removed {
                    channel,
                    reason: reason.to_owned(),
                }))
            }
            _ => Ok(Some(other())),
        }
    }

    fn on_publication(
        &mut self,
        channel: String,
        session: String,
        user: Option<String>,
        data: &Value,
    ) -> Option<E2eEvent> {
        let refused = |error| {
            Some(E2eEvent::Refused {
                channel: channel.clone(),
                session: session.clone(),
                error,
            })
        };
        let Ok(data) = serde_json::from_value::<E2eData>(data.clone()) else {
            return refused(E2eError::Malformed("not an end-to-end envelope"));
        };
        let ring = self.rings.get_mut(&channel)?;
        match &data {
            E2eData::Keys { .. } => {
                let joined = self.joined.get(&channel)?;
                let (owner_session, owner_key) = joined.owner.as_ref()?;
                if session != *owner_session {
                    return refused(E2eError::Malformed(
                        "keys from a session that is not the owner",
                    ));
                }
                if joined.me == *owner_session {
                    return None;
                }
                match ring.accept_keys(&self.key, owner_key, &joined.me, &data) {
                    Ok(Some(epoch)) => Some(E2eEvent::Keys { channel, epoch }),
                    Ok(None) => None,
                    Err(error) => refused(error),
                }
            }
            E2eData::Msg { .. } => match ring.open(&session, &data) {
                Ok(plaintext) => Some(E2eEvent::Message {
                    channel,
                    session,
                    user,
                    plaintext,
                }),
                Err(error) => refused(error),
            },
        }
    }
}

/// A publication of an end-to-end envelope.
fn publish(data: &E2eData) -> Command {
    let data = serde_json::to_value(data).expect("end-to-end envelopes are JSON");
    Command::Publish {
        data: Payload::new(&data),
        idempotency_key: None,
    }
}

//! End-to-end encrypted groups on MLS (RFC 9420), sans-IO, through
//! [`mls-rs`](https://docs.rs/mls-rs) with its RustCrypto provider: nothing
//! of MLS is written here. This module holds both ends of what a channels
//! server needs from MLS:
//!
//! - [`Device`] and [`Group`]: a member's side. A device has a basic
//!   credential naming its user and an Ed25519 signature key, makes
//!   one-time key packages, creates a group (naming the server as its only
//!   external sender) or joins one from a Welcome, adds and removes
//!   members by commits it signs, encrypts and decrypts application
//!   messages. Its rules ([`ChannelRules`]) take from the server nothing
//!   but Remove proposals: a server cannot add anyone.
//!   A device [`export`](Device::export)s its key, key packages and saved
//!   groups as one blob and [`import`](Device::import)s it on the next
//!   start.
//! - [`DeliveryService`]: the server's side, which holds no group secret. It
//!   checks that a key package is valid and names the user who uploads it,
//!   reads the group and epoch from a message's framing, follows each
//!   group's public handshake messages so that commits are totally ordered
//!   (the first commit for the current epoch wins, later ones are a
//!   [`MlsError::Conflict`]), and signs Remove proposals as the group's
//!   external sender.
//!
//! # Who can do what
//!
//! | who | can | cannot | test (`tests/mls.rs`) |
//! |---|---|---|---|
//! | the server (Delivery Service) | see each message's group, epoch and kind; order commits; propose removals | read an application message; add a device of its own (members drop its Add from their commits and refuse a commit that carries one) | `members_talk_and_the_server_sees_only_framing`, `a_server_cannot_add_a_member_of_its_own`, `a_commit_that_carries_the_servers_add_is_refused_by_the_members` |
//! | a member removed by a commit | read what was sent before | read anything sent after the commit | `a_member_the_server_asks_to_remove_reads_nothing_after_the_commit` |
//! | a member added late | read what is sent from its epoch on | read what was sent before it was added | `a_late_joiner_reads_nothing_sent_before_it_was_added` |
//! | a user uploading key packages | publish its own | publish one in another user's name | `a_key_package_in_another_users_name_is_refused` |
//! | a member | add a device it made under any user's name (a basic credential is a name its holder signs), seen by all with that device's own fingerprint | pass it off under the real device's fingerprint; the Delivery Service does not yet check added key packages against the ones their users uploaded, so until it does, members compare fingerprints | `a_member_can_name_a_device_anything_but_not_give_it_another_fingerprint` |
//! | two members committing at once | have one commit accepted | fork the group: the second is a `Conflict` and is made again on top | `of_two_commits_for_one_epoch_the_first_wins_and_the_second_is_made_again` |
//!
//! Ciphersuite 1 (`MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`) only.
//! Handshake messages (proposals, commits) travel as MLS public messages,
//! signed by their sender, so the Delivery Service can check and order
//! them; application messages are MLS private messages, which it cannot
//! open.

use std::collections::HashMap;
use std::fmt;

use mls_rs::client_builder::{
    BaseConfig, IntoConfigOutput, WithCryptoProvider, WithGroupStateStorage, WithIdentityProvider,
    WithKeyPackageRepo, WithMlsRules,
};
use mls_rs::error::{IntoAnyError, MlsError as RsError};
use mls_rs::extension::built_in::ExternalSendersExt;
use mls_rs::external_client::builder::{
    ExternalBaseConfig, IntoConfigOutput as ExternalOutput,
    WithCryptoProvider as ExternalWithCrypto, WithIdentityProvider as ExternalWithIdentity,
};
use mls_rs::external_client::{ExternalClient, ExternalGroup, ExternalReceivedMessage};
use mls_rs::group::proposal::{BorrowedProposal, Proposal};
use mls_rs::group::{ReceivedMessage, Sender};
use mls_rs::identity::SigningIdentity;
use mls_rs::identity::basic::{BasicCredential, BasicIdentityProvider};
use mls_rs::mls_rs_codec::{MlsDecode, MlsEncode};
use mls_rs::mls_rules::{
    CommitDirection, CommitOptions, CommitSource, EncryptionOptions, ProposalBundle,
};
use mls_rs::storage_provider::in_memory::InMemoryKeyPackageStorage;
use mls_rs::{
    CipherSuite, CipherSuiteProvider, Client, CryptoProvider, ExtensionList, MlsMessage, MlsRules,
    WireFormat,
};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;
use sha2::{Digest, Sha256};

mod saved;

use saved::GroupStates;

/// The one ciphersuite: `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519` (1).
pub const CIPHERSUITE: CipherSuite = CipherSuite::CURVE25519_AES128;

/// The longest user name a credential carries, in bytes.
pub const MAX_USER_LEN: usize = 256;

/// Why an MLS operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlsError {
    /// A message, key package or Welcome that does not parse or verify.
    #[error("invalid MLS input: {0}")]
    Invalid(String),
    /// A key package whose credential names another user than the one
    /// who uploads it.
    #[error("the key package names {named:?}, not {user:?}")]
    WrongIdentity {
        /// The user the key package's credential names.
        named: String,
        /// The authenticated user who uploaded it.
        user: String,
    },
    /// A commit for an epoch that is not the group's current one: another
    /// commit came first. Its author discards it, processes what it
    /// missed and commits again.
    #[error("a commit for epoch {got}, but the group is at epoch {current}")]
    Conflict {
        /// The group's current epoch.
        current: u64,
        /// The epoch the commit was made for.
        got: u64,
    },
    /// A group the Delivery Service does not follow.
    #[error("no group {0:?}")]
    UnknownGroup(String),
    /// A user who is not in the group.
    #[error("{0:?} is not a member")]
    NotMember(String),
    /// A group's epoch holds as many proposals as the Delivery Service
    /// keeps ([`DeliveryService::with_max_proposals`]): the next commit
    /// makes room.
    #[error("the epoch holds {max} proposals already; commit them first")]
    TooManyProposals {
        /// The most proposals kept per group and epoch.
        max: usize,
    },
    /// What the MLS library refused, with its reason.
    #[error("MLS: {0}")]
    Mls(#[from] RsError),
}

/// What a device's rules refuse ([`ChannelRules`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RuleViolation(String);

impl IntoAnyError for RuleViolation {}

/// The rules every member applies, to commits it makes and commits it
/// receives: the server, the group's only external sender, may propose
/// Remove and nothing else, so it can never add a member or change the
/// group. A proposal of the server's that is not a Remove is dropped from
/// a commit being made, and a received commit that carries one is
/// refused. Handshake messages go out as public messages (for the
/// Delivery Service to order), and every commit carries the ratchet tree
/// in its Welcome, so a joiner needs nothing else.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChannelRules;

impl MlsRules for ChannelRules {
    type Error = RuleViolation;

    fn filter_proposals(
        &self,
        direction: CommitDirection,
        _source: CommitSource,
        _current_roster: &mls_rs::group::Roster<'_>,
        _current_context: &mls_rs::group::GroupContext,
        mut proposals: ProposalBundle,
    ) -> Result<ProposalBundle, Self::Error> {
        let from_server = |sender: &Sender| !matches!(sender, Sender::Member(_));
        let forbidden = proposals
            .iter_proposals()
            .any(|p| from_server(&p.sender) && !matches!(p.proposal, BorrowedProposal::Remove(_)));
        if !forbidden {
            return Ok(proposals);
        }
        match direction {
            CommitDirection::Receive => Err(RuleViolation(
                "a commit carries a proposal from outside the group other than Remove".into(),
            )),
            CommitDirection::Send => {
                proposals.retain(|p| {
                    Ok::<_, RuleViolation>(
                        !from_server(&p.sender)
                            || matches!(p.proposal, BorrowedProposal::Remove(_)),
                    )
                })?;
                Ok(proposals)
            }
        }
    }

    fn commit_options(
        &self,
        _new_roster: &mls_rs::group::Roster<'_>,
        _new_context: &mls_rs::group::GroupContext,
        _proposals: &ProposalBundle,
    ) -> Result<CommitOptions, Self::Error> {
        Ok(CommitOptions::new()
            .with_ratchet_tree_extension(true)
            .with_single_welcome_message(true))
    }

    fn encryption_options(
        &self,
        _current_roster: &mls_rs::group::Roster<'_>,
        _current_context: &mls_rs::group::GroupContext,
    ) -> Result<EncryptionOptions, Self::Error> {
        Ok(EncryptionOptions::new(
            false,
            mls_rs::client_builder::PaddingMode::None,
        ))
    }
}

type DeviceConfig = IntoConfigOutput<
    WithGroupStateStorage<
        GroupStates,
        WithKeyPackageRepo<
            InMemoryKeyPackageStorage,
            WithMlsRules<
                ChannelRules,
                WithCryptoProvider<
                    RustCryptoProvider,
                    WithIdentityProvider<BasicIdentityProvider, BaseConfig>,
                >,
            >,
        >,
    >,
>;

type ServiceConfig = ExternalOutput<
    ExternalWithCrypto<
        RustCryptoProvider,
        ExternalWithIdentity<BasicIdentityProvider, ExternalBaseConfig>,
    >,
>;

fn suite() -> impl CipherSuiteProvider {
    RustCryptoProvider::default()
        .cipher_suite_provider(CIPHERSUITE)
        .expect("the RustCrypto provider has ciphersuite 1")
}

fn invalid(error: impl fmt::Display) -> MlsError {
    MlsError::Invalid(error.to_string())
}

fn parse(bytes: &[u8]) -> Result<MlsMessage, MlsError> {
    MlsMessage::from_bytes(bytes).map_err(invalid)
}

/// The user a signing identity's basic credential names.
fn user_of(identity: &SigningIdentity) -> Option<String> {
    let basic = identity.credential.as_basic()?;
    String::from_utf8(basic.identifier.clone()).ok()
}

/// A signature key's fingerprint, as people compare them: the first 16
/// bytes of its SHA-256, in hex groups of four.
fn fingerprint_of(identity: &SigningIdentity) -> String {
    let digest = Sha256::digest(identity.signature_key.as_bytes());
    digest[..16]
        .chunks(2)
        .map(|pair| format!("{:02x}{:02x}", pair[0], pair[1]))
        .collect::<Vec<_>>()
        .join(" ")
}

fn new_identity(
    user: &str,
) -> Result<(mls_rs::crypto::SignatureSecretKey, SigningIdentity), MlsError> {
    if user.is_empty() || user.len() > MAX_USER_LEN {
        return Err(MlsError::Invalid(format!(
            "a user name is 1 to {MAX_USER_LEN} bytes"
        )));
    }
    let (secret, public) = suite()
        .signature_key_generate()
        .map_err(|e| MlsError::Invalid(format!("signature key: {e:?}")))?;
    let credential = BasicCredential::new(user.as_bytes().to_vec()).into_credential();
    Ok((secret, SigningIdentity::new(credential, public)))
}

/// A member of the group, as its roster shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Its leaf in the group (stable while it stays).
    pub index: u32,
    /// The user its credential names.
    pub user: String,
    /// Its signature key's fingerprint.
    pub fingerprint: String,
}

/// One device of a user: its credential and signature key, and the key
/// packages it made. Keep one per device; the signature key never leaves
/// it.
pub struct Device {
    client: Client<DeviceConfig>,
    user: String,
    fingerprint: String,
    secret: mls_rs::crypto::SignatureSecretKey,
    identity: SigningIdentity,
    key_packages: InMemoryKeyPackageStorage,
    groups: GroupStates,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("user", &self.user)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// A new device of `user` (1 to [`MAX_USER_LEN`] bytes), with a fresh
    /// signature key.
    pub fn new(user: &str) -> Result<Self, MlsError> {
        let (secret, identity) = new_identity(user)?;
        Ok(Self::with(
            user.to_owned(),
            secret,
            identity,
            InMemoryKeyPackageStorage::new(),
            GroupStates::default(),
        ))
    }

    fn with(
        user: String,
        secret: mls_rs::crypto::SignatureSecretKey,
        identity: SigningIdentity,
        key_packages: InMemoryKeyPackageStorage,
        groups: GroupStates,
    ) -> Self {
        let client = Client::builder()
            .identity_provider(BasicIdentityProvider)
            .crypto_provider(RustCryptoProvider::default())
            .mls_rules(ChannelRules)
            .key_package_repo(key_packages.clone())
            .group_state_storage(groups.clone())
            .signing_identity(identity.clone(), secret.clone(), CIPHERSUITE)
            .build();
        Self {
            client,
            user,
            fingerprint: fingerprint_of(&identity),
            secret,
            identity,
            key_packages,
            groups,
        }
    }

    /// Everything this device keeps, as one blob: its signature key, its
    /// unused key packages and the groups it [`saved`](Group::save). It
    /// holds secrets: keep it where the application keeps private keys
    /// (a file only its user can read, say), and
    /// [`import`](Self::import) it on the next start.
    pub fn export(&self) -> Result<Vec<u8>, MlsError> {
        saved::export(
            &self.user,
            &self.secret,
            &self.identity,
            self.key_packages.key_packages(),
            &self.groups,
        )
    }

    /// The device an [`export`](Self::export) saved, with the same
    /// signature key (and fingerprint), key packages and groups.
    pub fn import(bytes: &[u8]) -> Result<Self, MlsError> {
        let imported = saved::import(bytes)?;
        let key_packages = InMemoryKeyPackageStorage::new();
        for (id, data) in imported.key_packages {
            key_packages.insert(id, data);
        }
        Ok(Self::with(
            imported.user,
            imported.secret,
            imported.identity,
            key_packages,
            imported.groups,
        ))
    }

    /// A group this device saved, by its channel.
    pub fn load_group(&self, channel: &str) -> Result<Group, MlsError> {
        Ok(Group {
            inner: self.client.load_group(channel.as_bytes())?,
        })
    }

    /// The user this device belongs to.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Its signature key's fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A one-time key package (an MLS message) for the Delivery Service's
    /// directory, so that a member can add this device.
    pub fn key_package(&self) -> Result<Vec<u8>, MlsError> {
        let message = self.client.generate_key_package_message(
            ExtensionList::default(),
            ExtensionList::default(),
            None,
        )?;
        Ok(message.to_bytes()?)
    }

    /// Creates the group of `channel` with this device as its only member,
    /// naming `server` (the Delivery Service's
    /// [`external_sender`](DeliveryService::external_sender)) as the one
    /// party outside it that may propose removals.
    pub fn create_group(&self, channel: &str, server: &[u8]) -> Result<Group, MlsError> {
        let server = SigningIdentity::mls_decode(&mut &*server).map_err(invalid)?;
        let mut extensions = ExtensionList::new();
        extensions
            .set_from(ExternalSendersExt::new(vec![server]))
            .map_err(invalid)?;
        let group = self.client.create_group_with_id(
            channel.as_bytes().to_vec(),
            extensions,
            ExtensionList::default(),
            None,
        )?;
        Ok(Group { inner: group })
    }

    /// Joins a group from the Welcome a member's commit made for this
    /// device.
    pub fn join(&self, welcome: &[u8]) -> Result<Group, MlsError> {
        let (group, _) = self.client.join_group(None, &parse(welcome)?, None)?;
        Ok(Group { inner: group })
    }
}

/// A commit this member made: send `commit` to the Delivery Service and,
/// once it accepted it, call [`Group::confirm`]; hand `welcome` to the
/// devices it adds.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The commit, an MLS public message.
    pub commit: Vec<u8>,
    /// The Welcome for the devices it adds, if it adds any.
    pub welcome: Option<Vec<u8>>,
}

/// What a received message was.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// An application message, from a member.
    Message {
        /// Who sent it.
        from: GroupMember,
        /// What it says.
        data: Vec<u8>,
    },
    /// A commit moved the group to a new epoch.
    Commit {
        /// The epoch it starts.
        epoch: u64,
        /// The users it added.
        added: Vec<String>,
        /// The users it removed.
        removed: Vec<String>,
        /// Whether this device was removed: the group is over for it.
        removed_me: bool,
    },
    /// A proposal, kept for the next commit.
    Proposal,
}

/// This device's view of one group.
pub struct Group {
    inner: mls_rs::Group<DeviceConfig>,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

impl Group {
    /// Keeps this group's current state in its device, for the device's
    /// next [`export`](Device::export). Call it after every change the
    /// application wants to survive a restart (a commit confirmed or
    /// received, a message read).
    pub fn save(&mut self) -> Result<(), MlsError> {
        self.inner.write_to_storage()?;
        Ok(())
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.inner.current_epoch()
    }

    /// The group's roster: every member's user and fingerprint.
    pub fn members(&self) -> Vec<GroupMember> {
        self.inner
            .roster()
            .members_iter()
            .map(|m| GroupMember {
                index: m.index,
                user: user_of(&m.signing_identity).unwrap_or_default(),
                fingerprint: fingerprint_of(&m.signing_identity),
            })
            .collect()
    }

    /// A GroupInfo (an MLS message) with the ratchet tree, for the
    /// Delivery Service to follow the group from.
    pub fn group_info(&self) -> Result<Vec<u8>, MlsError> {
        Ok(self.inner.group_info_message(true)?.to_bytes()?)
    }

    /// Commits the addition of the devices whose key packages these are,
    /// with every proposal received since the last commit, in one commit
    /// (one new epoch however many join).
    pub fn add(&mut self, key_packages: &[Vec<u8>]) -> Result<Commit, MlsError> {
        let mut builder = self.inner.commit_builder();
        for key_package in key_packages {
            builder = builder.add_member(parse(key_package)?)?;
        }
        commit(builder.build()?)
    }

    /// Commits the removal of every device of `user`, with every proposal
    /// received since the last commit.
    pub fn remove(&mut self, user: &str) -> Result<Commit, MlsError> {
        let leaves: Vec<u32> = self
            .members()
            .into_iter()
            .filter(|m| m.user == user)
            .map(|m| m.index)
            .collect();
        if leaves.is_empty() {
            return Err(MlsError::NotMember(user.to_owned()));
        }
        let mut builder = self.inner.commit_builder();
        for leaf in leaves {
            builder = builder.remove_member(leaf)?;
        }
        commit(builder.build()?)
    }

    /// Commits the proposals received since the last commit (the server's
    /// Remove proposals), and a fresh path for this member.
    pub fn commit_proposals(&mut self) -> Result<Commit, MlsError> {
        commit(self.inner.commit(Vec::new())?)
    }

    /// The Delivery Service accepted this member's commit: the group moves
    /// to its epoch.
    pub fn confirm(&mut self) -> Result<(), MlsError> {
        self.inner.apply_pending_commit()?;
        Ok(())
    }

    /// The Delivery Service refused this member's commit (another came
    /// first): it is forgotten, to be made again after what came first.
    pub fn discard(&mut self) {
        self.inner.clear_pending_commit();
    }

    /// Encrypts an application message for the current members.
    pub fn encrypt(&mut self, data: &[u8]) -> Result<Vec<u8>, MlsError> {
        Ok(self
            .inner
            .encrypt_application_message(data, Vec::new())?
            .to_bytes()?)
    }

    /// Processes a message of the group: decrypts an application message,
    /// applies a commit, keeps a proposal.
    pub fn receive(&mut self, message: &[u8]) -> Result<Received, MlsError> {
        let before: HashMap<u32, String> = self
            .members()
            .into_iter()
            .map(|m| (m.index, m.user))
            .collect();
        match self.inner.process_incoming_message(parse(message)?)? {
            ReceivedMessage::ApplicationMessage(description) => {
                let from = self
                    .members()
                    .into_iter()
                    .find(|m| m.index == description.sender_index)
                    .ok_or_else(|| MlsError::Invalid("a message from no member".into()))?;
                Ok(Received::Message {
                    from,
                    data: description.data().to_vec(),
                })
            }
            ReceivedMessage::Commit(description) => {
                let (added, removed) = changes(&description.effect, &before);
                let removed_me = matches!(
                    description.effect,
                    mls_rs::group::CommitEffect::Removed { .. }
                );
                Ok(Received::Commit {
                    epoch: self.epoch(),
                    added,
                    removed,
                    removed_me,
                })
            }
            ReceivedMessage::Proposal(_) => Ok(Received::Proposal),
            other => Err(MlsError::Invalid(format!(
                "not a message of the group: {}",
                kind_of(&other)
            ))),
        }
    }
}

fn kind_of(message: &ReceivedMessage) -> &'static str {
    match message {
        ReceivedMessage::GroupInfo(_) => "a GroupInfo",
        ReceivedMessage::Welcome => "a Welcome",
        ReceivedMessage::KeyPackage(_) => "a key package",
        _ => "a message",
    }
}

fn unknown_group(group: &[u8]) -> MlsError {
    MlsError::UnknownGroup(String::from_utf8_lossy(group).into())
}

/// The users a commit added and removed, named by the roster before it.
fn changes(
    effect: &mls_rs::group::CommitEffect,
    before: &HashMap<u32, String>,
) -> (Vec<String>, Vec<String>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let epoch = match effect {
        mls_rs::group::CommitEffect::NewEpoch(epoch)
        | mls_rs::group::CommitEffect::Removed {
            new_epoch: epoch, ..
        } => epoch,
        _ => return (added, removed),
    };
    for proposal in epoch.applied_proposals() {
        match &proposal.proposal {
            Proposal::Add(add) => {
                added.push(user_of(add.key_package().signing_identity()).unwrap_or_default());
            }
            Proposal::Remove(remove) => {
                removed.push(before.get(&remove.to_remove()).cloned().unwrap_or_default());
            }
            _ => {}
        }
    }
    (added, removed)
}

fn commit(output: mls_rs::group::CommitOutput) -> Result<Commit, MlsError> {
    let welcome = match output.welcome_messages.first() {
        Some(welcome) => Some(welcome.to_bytes()?),
        None => None,
    };
    Ok(Commit {
        commit: output.commit_message.to_bytes()?,
        welcome,
    })
}

/// What a message's framing says, readable without any group secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    /// The group (the channel's name, as the creator set it).
    pub group: Vec<u8>,
    /// The epoch it was sent in.
    pub epoch: u64,
    /// What it is.
    pub kind: Kind,
}

/// The kinds of message a channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A handshake message in the clear (a proposal or a commit).
    Handshake,
    /// An encrypted message (application data).
    Encrypted,
}

/// What a commit the Delivery Service accepted did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The epoch it starts.
    pub epoch: u64,
    /// The users it added.
    pub added: Vec<String>,
    /// The users it removed.
    pub removed: Vec<String>,
}

/// The server's side of MLS: a Delivery Service with no group secret. It
/// has a signature key of its own, named in every group as the external
/// sender that may propose removals.
pub struct DeliveryService {
    client: ExternalClient<ServiceConfig>,
    identity: SigningIdentity,
    groups: HashMap<Vec<u8>, Followed>,
    max_proposals: usize,
}

/// The proposals a Delivery Service keeps per group and epoch, by default:
/// about 2 MB of Remove proposals, room for a mass ban before the next
/// commit.
pub const MAX_PROPOSALS_PER_EPOCH: usize = 10_000;

/// A group the Delivery Service follows, and the proposals it took in the
/// current epoch.
struct Followed {
    group: ExternalGroup<ServiceConfig>,
    proposals: usize,
}

impl fmt::Debug for DeliveryService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryService")
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

impl DeliveryService {
    /// A Delivery Service named `name` in its credential, with a fresh
    /// signature key.
    pub fn new(name: &str) -> Result<Self, MlsError> {
        let (secret, identity) = new_identity(name)?;
        let client = ExternalClient::builder()
            .identity_provider(BasicIdentityProvider)
            .crypto_provider(RustCryptoProvider::default())
            .signer(secret, identity.clone())
            .build();
        Ok(Self {
            client,
            identity,
            groups: HashMap::new(),
            max_proposals: MAX_PROPOSALS_PER_EPOCH,
        })
    }

    /// Keeps at most `max` proposals per group and epoch (default
    /// [`MAX_PROPOSALS_PER_EPOCH`]): past it, proposals are refused with
    /// [`MlsError::TooManyProposals`] until a commit takes them in, so no
    /// member can grow the server's memory by proposing.
    pub fn with_max_proposals(mut self, max: usize) -> Self {
        self.max_proposals = max;
        self
    }

    /// Its identity as groups name it in their external senders
    /// ([`Device::create_group`]).
    pub fn external_sender(&self) -> Result<Vec<u8>, MlsError> {
        self.identity.mls_encode_to_vec().map_err(invalid)
    }

    /// Checks a key package `user` uploads: it parses, its signature and
    /// lifetime verify, it is for ciphersuite 1, and its credential names
    /// `user`.
    pub fn check_key_package(&self, key_package: &[u8], user: &str) -> Result<(), MlsError> {
        let package = self
            .client
            .validate_key_package(parse(key_package)?, None)
            .map_err(invalid)?;
        if package.cipher_suite != CIPHERSUITE {
            return Err(MlsError::Invalid("not ciphersuite 1".into()));
        }
        let named = user_of(package.signing_identity()).unwrap_or_default();
        if named != user {
            return Err(MlsError::WrongIdentity {
                named,
                user: user.to_owned(),
            });
        }
        Ok(())
    }

    /// What a message's framing says: its group, epoch and kind.
    pub fn framing(message: &[u8]) -> Result<Framing, MlsError> {
        let message = parse(message)?;
        let kind = match message.wire_format() {
            WireFormat::PublicMessage => Kind::Handshake,
            WireFormat::PrivateMessage => Kind::Encrypted,
            other => return Err(MlsError::Invalid(format!("not a group message: {other:?}"))),
        };
        let (Some(group), Some(epoch)) = (message.group_id(), message.epoch()) else {
            return Err(MlsError::Invalid("a message without a group".into()));
        };
        Ok(Framing {
            group: group.to_vec(),
            epoch,
            kind,
        })
    }

    /// Starts following a group from its creator's GroupInfo.
    pub fn follow(&mut self, group_info: &[u8]) -> Result<u64, MlsError> {
        let group = self.client.observe_group(parse(group_info)?, None, None)?;
        let epoch = group.group_context().epoch;
        let id = group.group_context().group_id.clone();
        self.groups.insert(
            id,
            Followed {
                group,
                proposals: 0,
            },
        );
        Ok(epoch)
    }

    /// The epoch a followed group is at.
    pub fn epoch(&self, group: &[u8]) -> Option<u64> {
        self.groups
            .get(group)
            .map(|f| f.group.group_context().epoch)
    }

    /// Takes a handshake message for a followed group in channel order: a
    /// proposal is kept for the next commit; a commit is accepted only for
    /// the current epoch (the first wins; a later one is a
    /// [`MlsError::Conflict`]) and only if it verifies, and the group moves
    /// on. `Ok(None)` for a proposal; past the proposals it keeps per
    /// epoch, a proposal is [`MlsError::TooManyProposals`].
    pub fn accept(&mut self, message: &[u8]) -> Result<Option<Accepted>, MlsError> {
        let framing = Self::framing(message)?;
        if framing.kind != Kind::Handshake {
            return Err(MlsError::Invalid(
                "proposals and commits travel as public messages".into(),
            ));
        }
        let max = self.max_proposals;
        let followed = self
            .groups
            .get_mut(&framing.group)
            .ok_or_else(|| unknown_group(&framing.group))?;
        let group = &mut followed.group;
        let current = group.group_context().epoch;
        if framing.epoch != current {
            return Err(MlsError::Conflict {
                current,
                got: framing.epoch,
            });
        }
        let before: HashMap<u32, String> = group
            .roster()
            .members_iter()
            .map(|m| (m.index, user_of(&m.signing_identity).unwrap_or_default()))
            .collect();
        // Full: whether the message is a proposal shows only once it is
        // processed, so it is processed on a copy that stands only for a
        // commit.
        let mut copy = (followed.proposals >= max).then(|| group.clone());
        let target = copy.as_mut().unwrap_or(group);
        match target.process_incoming_message(parse(message)?)? {
            ExternalReceivedMessage::Proposal(_) if copy.is_some() => {
                Err(MlsError::TooManyProposals { max })
            }
            ExternalReceivedMessage::Proposal(_) => {
                followed.proposals += 1;
                Ok(None)
            }
            ExternalReceivedMessage::Commit(description) => {
                if let Some(copy) = copy {
                    followed.group = copy;
                }
                followed.proposals = 0;
                let group = &followed.group;
                let (added, removed) = changes(&description.effect, &before);
                Ok(Some(Accepted {
                    epoch: group.group_context().epoch,
                    added,
                    removed,
                }))
            }
            _ => Err(MlsError::Invalid("not a proposal or a commit".into())),
        }
    }

    /// Proposes, as the group's external sender, the removal of every
    /// device of `user` (kicked, banned, gone): the proposals to relay to
    /// the group, for the next member who commits.
    pub fn propose_remove(&mut self, group: &[u8], user: &str) -> Result<Vec<Vec<u8>>, MlsError> {
        let followed = &mut self
            .groups
            .get_mut(group)
            .ok_or_else(|| unknown_group(group))?
            .group;
        let leaves: Vec<u32> = followed
            .roster()
            .members_iter()
            .filter(|m| user_of(&m.signing_identity).as_deref() == Some(user))
            .map(|m| m.index)
            .collect();
        if leaves.is_empty() {
            return Err(MlsError::NotMember(user.to_owned()));
        }
        leaves
            .into_iter()
            .map(|leaf| Ok(followed.propose_remove(leaf, Vec::new())?.to_bytes()?))
            .collect()
    }
}

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
//! | the server (Delivery Service) | see each message's group, epoch and kind; order commits; propose removals | read an application message; add a device of its own by a proposal (members drop its Add from their commits and refuse a commit that carries one); for claims, see the next row | `members_talk_and_the_server_sees_only_framing`, `a_server_cannot_add_a_member_of_its_own`, `a_commit_that_carries_the_servers_add_is_refused_by_the_members` |
//! | the server answering a claim | hand out, for a user, a key package of a device of its own named as that user: a member that adds without checking (auto-add, which also adds a member's new devices whenever the member joins the channel) adds it, and it reads from then on, in every member's roster under its own fingerprint, not the user's | hand out one that names another user or does not verify (`MlsClient::claim`, `/mls.js` refuse it: [`MlsClientError::Forged`]), or give its device the user's fingerprint. Members who do not trust the server with membership check fingerprints before adding ([`MlsClient::claim`], [`MlsClient::add_claimed`]; the page's owner ticks *Check each new device*) | `ws-server/tests/mls_channels.rs::a_server_that_hands_out_a_key_package_in_another_name_is_caught`; `interop/node/page.mjs` |
//! | a member removed by a commit | read what was sent before | read anything sent after the commit | `a_member_the_server_asks_to_remove_reads_nothing_after_the_commit` |
//! | another Delivery Service (not the group's external sender) | nothing in the group | propose a removal: only the identity the group names signs one, and every node sharing the cluster's key is that identity | `nodes_sharing_a_secret_are_one_external_sender` |
//! | a member added late | read what is sent from its epoch on | read what was sent before it was added | `a_late_joiner_reads_nothing_sent_before_it_was_added` |
//! | a user uploading key packages | publish its own | publish one in another user's name | `a_key_package_in_another_users_name_is_refused` |
//! | another user, or the server, asking members to add a device again ([`RESYNC_KIND`]) | the server, in the user's name: have the user's real device added again (a new epoch, nothing more) | have any device added but the one named, from a key package that device signed; another user: anything (requests are taken for the sender's own devices only) | `ws-server/tests/mls_channels.rs::a_device_that_missed_commits_is_added_again_and_reads_on` |
//! | a member | add a device it made under any user's name (a basic credential is a name its holder signs), seen by all with that device's own fingerprint | pass it off under the real device's fingerprint. A channels server keeps key packages only in their makers' names and `claim` names each one's device, but it does not yet check a commit's adds against what was claimed, so members compare fingerprints | `a_member_can_name_a_device_anything_but_not_give_it_another_fingerprint` |
//! | anyone who can publish on the broker (a channels deployment's Redis or NATS) | see each message's framing and ciphertext; withhold or reorder what it reaches | have a commit, proposal or message it made applied or opened: members refuse each, their group unchanged | `ws-server/tests/mls_channels.rs::what_a_broker_client_injects_changes_no_group` |
//! | anyone holding a commit's GroupInfo (the server, a broker client) | see the roster's credentials and fingerprints | join by an external commit: members and channels nodes refuse it | `an_outsider_with_a_group_info_cannot_join_by_external_commit` |
//! | a member without a role in the group (whatever the server lets its session do) | read and send | commit: its own rules stop it, and members refuse a commit from it made past them; only an owner's commit changes the roles (the group's [`ROLES_EXTENSION`], made with the group, its creator the owner), in Rust and in `/mls.js` (`setRole`, on the page's patched bundle of ts-mls) | `only_members_the_group_lets_commit_can_commit`; `interop/node/mls.mjs` (a ts-mls member applies a Rust owner's role change); `interop/node/e2e.mjs` (a browser member without a role does not commit or change roles; a browser owner's role change read by a Rust member) |
//! | a script of the page's origin (an XSS, an extension with the site's access) while it runs, or whoever copies the browser's storage | read the device's group states (what the group sends until the device's next commit renews its secrets), and, while it runs in the page, have the page sign | copy the device's signing key: `/mls.js` keeps it as a non-extractable WebCrypto key (where the browser has WebCrypto Ed25519; the page says when it has not), and key packages and group states hold a handle in its place, so once the script is gone nobody signs as the device | `interop/node/page.mjs` (a script exports every key in the device's record and searches all of it for the signing key) |
//! | a member the group's roles let commit | add and remove anyone (it is trusted with membership); give the server a false GroupInfo with its commit, so the server's removal proposals miss or hit another device (nothing it could not do by its own commit); have a commit ordered that the others cannot apply (a changed membership tag, or path secrets encrypted to nobody: a Delivery Service holds no key to check either), which leaves them at that epoch until a new group is made | read without being a member, or sign as another member | `a_member_can_name_a_device_anything_but_not_give_it_another_fingerprint`, `a_commit_with_a_changed_membership_tag_passes_the_service_but_no_member` |
//! | two members committing at once | have one commit accepted | fork the group: the second is a `Conflict` and is made again on top | `of_two_commits_for_one_epoch_the_first_wins_and_the_second_is_made_again` |
//!
//! Ciphersuite 1 (`MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`) only.
//! Handshake messages (proposals, commits) travel as MLS public messages,
//! signed by their sender, so the Delivery Service can check and order
//! them; application messages are MLS private messages, which it cannot
//! open.

use std::collections::HashMap;
use std::fmt;

use identity::DeviceIdentityProvider;
use mls_rs::client_builder::{
    BaseConfig, IntoConfigOutput, WithCryptoProvider, WithGroupStateStorage, WithIdentityProvider,
    WithKeyPackageRepo, WithMlsRules,
};
use mls_rs::error::{IntoAnyError, MlsError as RsError};
use mls_rs::extension::ExtensionType;
use mls_rs::extension::built_in::ExternalSendersExt;
use mls_rs::external_client::builder::{
    ExternalBaseConfig, IntoConfigOutput as ExternalOutput,
    WithCryptoProvider as ExternalWithCrypto, WithIdentityProvider as ExternalWithIdentity,
};
use mls_rs::external_client::{ExternalClient, ExternalGroup, ExternalReceivedMessage};
use mls_rs::group::proposal::{BorrowedProposal, Proposal};
use mls_rs::group::{ContentType, ReceivedMessage, Sender};
use mls_rs::identity::SigningIdentity;
use mls_rs::identity::basic::BasicCredential;
use mls_rs::mls_rs_codec::{MlsDecode, MlsEncode};
use mls_rs::mls_rules::{
    CommitDirection, CommitOptions, CommitSource, EncryptionOptions, ProposalBundle,
};
use mls_rs::storage_provider::in_memory::InMemoryKeyPackageStorage;
use mls_rs::{
    CipherSuite, CipherSuiteProvider, Client, CryptoProvider, Extension, ExtensionList, MlsMessage,
    MlsMessageDescription, MlsRules, WireFormat,
};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;
use sha2::{Digest, Sha256};
use ws_channels::e2e::{CommitFrame, GroupReader, KeyPackageFrame, RemoveProposals};

mod client;
mod identity;
mod saved;

pub use client::{
    ClaimedDevice, DEFAULT_MAX_MESSAGE, MAX_REBASES, MESSAGE_KIND, MlsClient, MlsClientError,
    MlsEvent, RESYNC_KIND,
};
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

/// The GroupContext extension that holds a group's roles (a private-use
/// type, RFC 9420 §13.3): the JSON of [`GroupRoles`]. Every member's key
/// packages list it among their capabilities, the group's creator sets it
/// (itself the owner), and only an owner's commit changes it, so the
/// server cannot promote anyone. The browser's module (`/mls.js`) uses the
/// same type and encoding.
pub const ROLES_EXTENSION: u16 = 0xF5A1;

/// What a member may do in a group beyond reading and sending: members
/// without a role may not commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum GroupRole {
    /// Commits anything, roles included.
    Owner,
    /// Commits adds, removals and the server's proposals, not roles.
    Committer,
}

/// Users' roles in a group, by user.
pub type GroupRoles = std::collections::BTreeMap<String, GroupRole>;

/// The roles `extensions` (a group context's) hold; `None` for a group
/// made without them (any member may commit there).
fn roles_of(extensions: &ExtensionList) -> Result<Option<GroupRoles>, RuleViolation> {
    extensions
        .get(ExtensionType::new(ROLES_EXTENSION))
        .map(|roles| {
            serde_json::from_slice(&roles.extension_data)
                .map_err(|e| RuleViolation(format!("the group's roles do not read: {e}")))
        })
        .transpose()
}

fn roles_extension(roles: &GroupRoles) -> Extension {
    let data = serde_json::to_vec(roles).expect("roles are JSON");
    Extension::new(ExtensionType::new(ROLES_EXTENSION), data)
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
        source: CommitSource,
        _current_roster: &mls_rs::group::Roster<'_>,
        current_context: &mls_rs::group::GroupContext,
        mut proposals: ProposalBundle,
    ) -> Result<ProposalBundle, Self::Error> {
        // Who may commit, from the roles the group itself holds.
        if let (CommitSource::ExistingMember(member), Some(roles)) =
            (&source, roles_of(&current_context.extensions)?)
        {
            let user = user_of(&member.signing_identity).unwrap_or_default();
            let changes_roles = proposals
                .iter_proposals()
                .any(|p| matches!(p.proposal, BorrowedProposal::GroupContextExtensions(_)));
            match roles.get(&user) {
                None => {
                    return Err(RuleViolation(format!(
                        "{user:?} has no role in this group that lets it commit"
                    )));
                }
                Some(GroupRole::Committer) if changes_roles => {
                    return Err(RuleViolation(format!(
                        "{user:?} may commit but not change the group's roles or extensions"
                    )));
                }
                Some(_) => {}
            }
        }
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
        // The GroupInfo made for external commits is what the Delivery
        // Service proposes removals from; external commits themselves are
        // refused above (their proposals come from outside the group).
        Ok(CommitOptions::new()
            .with_ratchet_tree_extension(true)
            .with_single_welcome_message(true)
            .with_allow_external_commit(true))
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
                    WithIdentityProvider<DeviceIdentityProvider, BaseConfig>,
                >,
            >,
        >,
    >,
>;

type ServiceConfig = ExternalOutput<
    ExternalWithCrypto<
        RustCryptoProvider,
        ExternalWithIdentity<DeviceIdentityProvider, ExternalBaseConfig>,
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

/// The epoch a group message (a commit, a proposal, an application
/// message) was made in, as its framing says in the clear.
pub(crate) fn epoch_of(message: &[u8]) -> Option<u64> {
    parse(message).ok()?.epoch()
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
            .identity_provider(DeviceIdentityProvider)
            .crypto_provider(RustCryptoProvider::default())
            .mls_rules(ChannelRules)
            .extension_type(ExtensionType::new(ROLES_EXTENSION))
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
        extensions.set(roles_extension(&GroupRoles::from([(
            self.user.clone(),
            GroupRole::Owner,
        )])));
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
    /// The GroupInfo of the epoch the commit starts, with the ratchet
    /// tree: what the Delivery Service needs to propose removals in it
    /// ([`DeliveryService::propose_remove_from`]). It names no secret.
    pub group_info: Option<Vec<u8>>,
    /// The users whose devices the Welcome adds, each once: a channels
    /// server delivers the Welcome to their sessions only (it carries the
    /// ratchet tree: about 177 KB in a group of 1,000).
    pub welcome_to: Vec<String>,
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
        /// The users it added, by name, each once.
        added: Vec<String>,
        /// The users it removed, by name, each once.
        removed: Vec<String>,
        /// Whether this device was removed: the group is over for it.
        removed_me: bool,
    },
    /// A proposal, kept for the next commit.
    Proposal,
    /// A message this device sent itself (a server echoes publications to
    /// their publisher): nothing to open, nothing changed.
    Own,
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
        let mut users = Vec::new();
        for key_package in key_packages {
            let key_package = parse(key_package)?;
            users.extend(users_of([&key_package]));
            builder = builder.add_member(key_package)?;
        }
        Ok(commit(builder.build()?)?.to(users))
    }

    /// Commits the removal of the device at `leaf` and its addition again
    /// from `key_package` (one the device made since), with every proposal
    /// received since the last commit: a device that fell behind the
    /// group (it missed commits) comes back in at the new epoch, through
    /// the commit's Welcome.
    pub fn readd(&mut self, leaf: u32, key_package: &[u8]) -> Result<Commit, MlsError> {
        let key_package = parse(key_package)?;
        let users: Vec<String> = users_of([&key_package]).collect();
        Ok(commit(
            self.inner
                .commit_builder()
                .remove_member(leaf)?
                .add_member(key_package)?
                .build()?,
        )?
        .to(users))
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

    /// The group's roles (empty for a group made without them, where any
    /// member may commit).
    pub fn roles(&self) -> GroupRoles {
        roles_of(&self.inner.context().extensions)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Commits `user`'s new role (`None`: none, so it may no longer
    /// commit). Only an owner's commit changing roles is applied by the
    /// others.
    pub fn set_role(&mut self, user: &str, role: Option<GroupRole>) -> Result<Commit, MlsError> {
        let mut extensions = self.inner.context().extensions.clone();
        let mut roles = roles_of(&extensions).map_err(invalid)?.unwrap_or_default();
        match role {
            Some(role) => roles.insert(user.to_owned(), role),
            None => roles.remove(user),
        };
        extensions.set(roles_extension(&roles));
        commit(
            self.inner
                .commit_builder()
                .set_group_context_ext(extensions)?
                .build()?,
        )
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
        let processed = match self.inner.process_incoming_message(parse(message)?) {
            Err(RsError::CantProcessMessageFromSelf) => return Ok(Received::Own),
            processed => processed?,
        };
        match processed {
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
    // By name, each once (a user may have several devices), whatever order
    // the proposals came in.
    for users in [&mut added, &mut removed] {
        users.sort();
        users.dedup();
    }
    (added, removed)
}

fn commit(output: mls_rs::group::CommitOutput) -> Result<Commit, MlsError> {
    let welcome = match output.welcome_messages.first() {
        Some(welcome) => Some(welcome.to_bytes()?),
        None => None,
    };
    let group_info = match &output.external_commit_group_info {
        Some(info) => Some(info.to_bytes()?),
        None => None,
    };
    Ok(Commit {
        commit: output.commit_message.to_bytes()?,
        welcome,
        group_info,
        welcome_to: Vec::new(),
    })
}

impl Commit {
    /// With its Welcome addressed to `users` (sorted, each once).
    fn to(mut self, mut users: Vec<String>) -> Self {
        users.sort();
        users.dedup();
        self.welcome_to = users;
        self
    }
}

/// The users key packages name.
fn users_of<'a>(
    key_packages: impl IntoIterator<Item = &'a MlsMessage>,
) -> impl Iterator<Item = String> {
    key_packages
        .into_iter()
        .filter_map(|message| user_of(message.as_key_package()?.signing_identity()))
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
    /// The users it added, by name, each once.
    pub added: Vec<String>,
    /// The users it removed, by name, each once.
    pub removed: Vec<String>,
}

/// The server's side of MLS: a Delivery Service with no group secret. It
/// has a signature key of its own, named in every group as the external
/// sender that may propose removals. A clone follows the same groups from
/// where the original is, and goes on alone.
#[derive(Clone)]
pub struct DeliveryService {
    // Shared by clones: it holds only configuration.
    client: std::sync::Arc<ExternalClient<ServiceConfig>>,
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
#[derive(Clone)]
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
        Ok(Self::with_identity(secret, identity))
    }

    /// A Delivery Service named `name` whose signature key is derived from
    /// `secret` (32 bytes or more; HKDF-SHA256 to an Ed25519 seed), so that
    /// every node sharing the secret (a cluster's key) signs as the one
    /// external sender the groups name, before and after restarts.
    pub fn from_secret(name: &str, secret: &[u8]) -> Result<Self, MlsError> {
        if secret.len() < 32 {
            return Err(MlsError::Invalid(
                "a Delivery Service's secret has at least 32 bytes".into(),
            ));
        }
        if name.is_empty() || name.len() > MAX_USER_LEN {
            return Err(MlsError::Invalid(format!(
                "a name is 1 to {MAX_USER_LEN} bytes"
            )));
        }
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<Sha256>::new(None, secret)
            .expand(b"ws-crypto mls external sender v1", &mut *seed)
            .map_err(invalid)?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let keypair = zeroize::Zeroizing::new(signing.to_keypair_bytes());
        let secret = mls_rs::crypto::SignatureSecretKey::new(keypair.to_vec());
        let public =
            mls_rs::crypto::SignaturePublicKey::new(signing.verifying_key().to_bytes().to_vec());
        let credential = BasicCredential::new(name.as_bytes().to_vec()).into_credential();
        Ok(Self::with_identity(
            secret,
            SigningIdentity::new(credential, public),
        ))
    }

    fn with_identity(
        secret: mls_rs::crypto::SignatureSecretKey,
        identity: SigningIdentity,
    ) -> Self {
        let client = ExternalClient::builder()
            .identity_provider(DeviceIdentityProvider)
            .crypto_provider(RustCryptoProvider::default())
            .signer(secret, identity.clone())
            .build();
        Self {
            client: std::sync::Arc::new(client),
            identity,
            groups: HashMap::new(),
            max_proposals: MAX_PROPOSALS_PER_EPOCH,
        }
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
        let package = checked_key_package(&self.client, key_package)?;
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
    /// device of `user` in the group whose GroupInfo (with its ratchet
    /// tree) this is, without following the group: the epoch the proposals
    /// are for and the proposals, or [`MlsError::NotMember`].
    pub fn propose_remove_from(
        &self,
        group_info: &[u8],
        user: &str,
    ) -> Result<(u64, Vec<Vec<u8>>), MlsError> {
        let mut group = self.client.observe_group(parse(group_info)?, None, None)?;
        let epoch = group.group_context().epoch;
        Ok((epoch, propose_removal(&mut group, user)?))
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
        propose_removal(followed, user)
    }
}

/// One Remove proposal, signed as the external sender, per device of
/// `user` in `group`; [`MlsError::NotMember`] when it has none.
fn propose_removal(
    group: &mut ExternalGroup<ServiceConfig>,
    user: &str,
) -> Result<Vec<Vec<u8>>, MlsError> {
    let leaves: Vec<u32> = group
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
        .map(|leaf| Ok(group.propose_remove(leaf, Vec::new())?.to_bytes()?))
        .collect()
}

/// What a channels node reads of MLS messages
/// ([`ws_channels::e2e::GroupReader`]; set it as
/// [`ChannelsConfig::group_reader`](ws_channels::ChannelsConfig::group_reader)):
/// the group and epoch of a commit a member sent in the clear, and whose
/// a key package is. It takes no group state and verifies no commit's
/// signature (the members do, each refusing a commit that does not
/// verify); it refuses what no member would take: anything that is not a
/// member's commit as an MLS public message, and key packages that do not
/// verify, have expired or are not for ciphersuite 1.
pub struct MlsReader {
    client: ExternalClient<ServiceConfig>,
    /// The Delivery Service's identity, as groups name it.
    external_sender: Option<Vec<u8>>,
    /// It, to propose removals.
    service: Option<DeliveryService>,
}

impl fmt::Debug for MlsReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MlsReader")
    }
}

impl Default for MlsReader {
    fn default() -> Self {
        Self::new()
    }
}

impl MlsReader {
    /// A reader; it holds no key and names no external sender.
    pub fn new() -> Self {
        Self {
            client: ExternalClient::builder()
                .identity_provider(DeviceIdentityProvider)
                .crypto_provider(RustCryptoProvider::default())
                .build(),
            external_sender: None,
            service: None,
        }
    }

    /// A reader that gives members `service`'s identity, for their groups'
    /// external senders, and proposes removals as `service`.
    pub fn with_service(mut self, service: DeliveryService) -> Result<Self, MlsError> {
        self.external_sender = Some(service.external_sender()?);
        self.service = Some(service);
        Ok(self)
    }
}

impl GroupReader for MlsReader {
    fn read_commit(&self, commit: &[u8]) -> Result<CommitFrame, String> {
        let message = parse(commit).map_err(|e| e.to_string())?;
        match message.description() {
            MlsMessageDescription::PublicProtocolMessage {
                group_id,
                epoch_id,
                content_type: ContentType::Commit,
                sender: Sender::Member(_),
                ..
            } => Ok(CommitFrame {
                group: group_id.to_vec(),
                epoch: epoch_id,
            }),
            MlsMessageDescription::PublicProtocolMessage { .. } => {
                Err("a handshake message that is not a member's commit".into())
            }
            _ => Err("not an MLS commit in the clear (a public message)".into()),
        }
    }

    fn external_sender(&self) -> Option<Vec<u8>> {
        self.external_sender.clone()
    }

    fn propose_remove(
        &self,
        group_info: &[u8],
        user: &str,
    ) -> Result<Option<RemoveProposals>, String> {
        let Some(service) = &self.service else {
            return Ok(None);
        };
        match service.propose_remove_from(group_info, user) {
            Ok((epoch, proposals)) => Ok(Some(RemoveProposals { epoch, proposals })),
            Err(MlsError::NotMember(_)) => Ok(None),
            Err(error) => Err(error.to_string()),
        }
    }

    fn read_key_package(&self, key_package: &[u8]) -> Result<KeyPackageFrame, String> {
        let package = checked_key_package(&self.client, key_package).map_err(|e| e.to_string())?;
        let identity = package.signing_identity();
        Ok(KeyPackageFrame {
            user: user_of(identity).ok_or("a credential that names no user")?,
            device: fingerprint_of(identity),
            expires: package
                .expiration()
                .map_err(|e| e.to_string())?
                .seconds_since_epoch(),
        })
    }
}

/// A key package that parses, verifies, is valid now and is for
/// ciphersuite 1.
fn checked_key_package(
    client: &ExternalClient<ServiceConfig>,
    key_package: &[u8],
) -> Result<mls_rs::KeyPackage, MlsError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let package = client
        .validate_key_package(
            parse(key_package)?,
            Some(mls_rs::time::MlsTime::from_duration_since_epoch(now)),
        )
        .map_err(invalid)?;
    if package.cipher_suite != CIPHERSUITE {
        return Err(MlsError::Invalid("not ciphersuite 1".into()));
    }
    Ok(package)
}

//! What a node needs to serve end-to-end encrypted channels' groups
//! without being able to read them: a [`GroupReader`] that reads a
//! commit's framing (the group and epoch it is made in) and checks a key
//! package (whose it is, which device made it, until when it is valid),
//! implemented for MLS by `ws_crypto::mls::MlsReader`. With one in
//! [`ChannelsConfig::group_reader`](crate::ChannelsConfig::group_reader):
//!
//! - an encrypted channel takes the `commit` command: the node reads the
//!   commit's epoch and publishes it only if the channel's group is at that
//!   epoch ([`Broker::publish_commit`](crate::backend::Broker::publish_commit)),
//!   so every member applies the same commits in the same order and a
//!   commit that lost the race gets `conflict`;
//! - users upload key packages in their own name (`key_packages`) to the
//!   [`KeyPackageDirectory`](crate::backend::KeyPackageDirectory), and a
//!   member who may commit claims one per device of a user it adds
//!   (`claim`).

use std::fmt;

/// The `e2e` kind of a group's commit as members receive it, published by
/// `commit`: `{"e2e": "commit", "epoch": E, "commit": "<base64>",
/// "welcome": "<base64>"}` (`epoch`: the one it was made in).
pub const COMMIT_KIND: &str = "commit";

/// The `e2e` kind of the server's proposals to remove a user from a
/// channel's group, published after a kick or a ban: `{"e2e": "proposal",
/// "epoch": E, "user": "<name>", "proposals": ["<base64>", ...]}`. Only
/// the server publishes it.
pub const PROPOSAL_KIND: &str = "proposal";

/// The largest key package the directory keeps, in bytes of base64 (a
/// ciphersuite 1 package with a basic credential is under 1 KB), so a
/// user's share of the directory is bounded by bytes too: at most
/// `max_devices_per_user` x (`max_key_packages_per_device` + 1) of these.
pub const MAX_KEY_PACKAGE_BYTES: usize = 4096;

/// Reads what the node needs of an end-to-end group's messages. Holds no
/// group secret: members verify every commit again; the node uses what it
/// reads to order commits and to keep key packages in their makers' names.
pub trait GroupReader: fmt::Debug + Send + Sync + 'static {
    /// The group and epoch `commit` is made in, or why it is not a commit
    /// a channel carries (not a commit, not readable, not in the clear).
    fn read_commit(&self, commit: &[u8]) -> Result<CommitFrame, String>;

    /// Checks a key package (it parses, its signature verifies, it is
    /// valid now, in a ciphersuite the groups use) and says whose it is,
    /// or why it is refused.
    fn read_key_package(&self, key_package: &[u8]) -> Result<KeyPackageFrame, String>;

    /// The server's identity as groups name it among their external
    /// senders (for MLS, a `SigningIdentity`), given to members in the
    /// reply to `create` and `join`; `None` (the default) for none.
    fn external_sender(&self) -> Option<Vec<u8>> {
        None
    }

    /// Proposes, as the server, the removal of every device of `user` from
    /// the group whose GroupInfo (the newest a member gave with its
    /// commit) this is; `None` when the user has no device there or the
    /// reader cannot propose (the default).
    fn propose_remove(
        &self,
        group_info: &[u8],
        user: &str,
    ) -> Result<Option<RemoveProposals>, String> {
        let _ = (group_info, user);
        Ok(None)
    }
}

/// The server's proposals to remove a user's devices from a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveProposals {
    /// The epoch they are for: members take them only in that epoch.
    pub epoch: u64,
    /// One proposal per device (MLS public messages).
    pub proposals: Vec<Vec<u8>>,
}

/// What a key package says of itself, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPackageFrame {
    /// The user its credential names.
    pub user: String,
    /// The device that made it: its signature key's fingerprint.
    pub device: String,
    /// When its lifetime ends, in seconds since the Unix epoch.
    pub expires: u64,
}

/// What a commit's framing says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitFrame {
    /// The group's id: for a channel's group, the channel's name.
    pub group: Vec<u8>,
    /// The epoch the commit is made in; it starts `epoch + 1`.
    pub epoch: u64,
}

//! A device that fell behind its group, and the members who add it again.
//!
//! A device away longer than the channel keeps what was sent (or from
//! whom the server withheld commits) holds an epoch the group left: it
//! reads nothing more. It asks to be added again ([`RESYNC_KIND`]) with a
//! fresh key package of its own in the directory; a member who adds
//! (`with_auto_add`) commits the removal of its old leaf and its addition
//! from that package in one commit, and the commit's Welcome brings the
//! device back at the new epoch. A key package is signed by its device, so
//! a request the server forges can at most have a real device added again.

use serde_json::{Value, json};
use ws_channels::e2e::GroupReader as _;
use ws_channels::protocol::Command;

use super::{MlsClient, MlsClientError, MlsEvent, RESYNC_KIND, data_of};
use crate::mls::{Group, MlsError, MlsReader};

impl MlsClient {
    /// Joins `channel`'s group from the Welcome `data` (a commit) carries,
    /// if it is for this device: `None` when there is none for it.
    pub(super) fn join_from(
        &mut self,
        channel: &str,
        data: &Value,
    ) -> Option<Result<MlsEvent, MlsClientError>> {
        if data.get("welcome").is_none_or(Value::is_null) {
            return None;
        }
        let joined = data_of(data, "welcome")
            .and_then(|welcome| self.device.join(&welcome).map_err(MlsClientError::from));
        match joined {
            Ok(group) => {
                let epoch = group.epoch();
                self.groups.insert(channel.to_owned(), group);
                self.behind.remove(channel);
                self.to_ask.remove(channel);
                Some(Ok(MlsEvent::Joined {
                    channel: channel.to_owned(),
                    epoch,
                }))
            }
            // A Welcome for other devices.
            Err(MlsClientError::Mls(MlsError::Mls(
                mls_rs::error::MlsError::WelcomeKeyPackageNotFound,
            ))) => None,
            // One that does not open at all: said, not dropped.
            Err(error) => Some(Err(error)),
        }
    }

    /// This device missed commits of `channel`'s group: it asks, once for
    /// the epoch it has, to be added again. The event that says so.
    /// The event that says so the first time; what follows from a later
    /// epoch is unreadable.
    pub(super) fn fell_behind(&mut self, channel: &str) -> MlsEvent {
        let epoch = self.groups.get(channel).map_or(0, Group::epoch);
        if self.behind.insert(channel.to_owned(), epoch) == Some(epoch) {
            return MlsEvent::Unreadable {
                channel: channel.to_owned(),
                error: format!(
                    "from an epoch after {epoch}, the last this device has: it asked to be added again"
                ),
            };
        }
        self.to_ask.insert(channel.to_owned());
        MlsEvent::Behind {
            channel: channel.to_owned(),
            epoch,
        }
    }

    /// Leaves a fresh key package in the directory and publishes the
    /// request to be added again.
    pub(super) async fn ask_to_be_added_again(
        &mut self,
        channel: &str,
    ) -> Result<(), MlsClientError> {
        let Some(&epoch) = self.behind.get(channel) else {
            return Ok(());
        };
        self.publish_key_packages(1).await?;
        let request = json!({
            "e2e": RESYNC_KIND,
            "device": self.device.fingerprint(),
            "epoch": epoch,
        });
        self.publish(channel, &request).await
    }

    /// A request to be added again from `from` (the server names the
    /// sender): kept for `next_event` when this client adds, the device
    /// is `from`'s and in the group, and the group has moved past the
    /// epoch the device has.
    pub(super) fn asked_to_add_again(&mut self, channel: &str, from: Option<String>, data: &Value) {
        let (Some(user), Some(device), Some(epoch)) =
            (from, data["device"].as_str(), data["epoch"].as_u64())
        else {
            return;
        };
        let Some(group) = self.groups.get(channel) else {
            return;
        };
        let in_group = group
            .members()
            .iter()
            .any(|m| m.user == user && m.fingerprint == device);
        if self.auto_add && in_group && epoch < group.epoch() {
            self.to_add_again
                .entry(channel.to_owned())
                .or_default()
                .insert((device.to_owned(), user));
        }
    }

    /// Commits the removal of `user`'s device `fingerprint` and its
    /// addition from a key package it left since. What to tell the
    /// application: the epoch, why it failed, or nothing (no package).
    pub(super) async fn add_again(
        &mut self,
        channel: &str,
        user: &str,
        fingerprint: &str,
    ) -> Option<MlsEvent> {
        let failed = |error: String| MlsEvent::AddFailed {
            channel: channel.to_owned(),
            users: vec![user.to_owned()],
            error,
        };
        // Every other device of the user in the group is left out of the
        // claim: this one's package is what is wanted.
        let except: Vec<String> = self
            .roster(channel)
            .into_iter()
            .filter(|m| m.user == user && m.fingerprint != fingerprint)
            .map(|m| m.fingerprint)
            .collect();
        let claim = Command::Claim {
            user: user.to_owned(),
            except,
        };
        let reply = self.channels.command(channel, claim).await;
        self.take_buffered();
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => return Some(failed(error.to_string())),
        };
        let reader = MlsReader::new();
        let package = reply["key_packages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| data_of(entry, "key_package").ok())
            .find(|package| {
                reader
                    .read_key_package(package)
                    .is_ok_and(|frame| frame.user == user && frame.device == fingerprint)
            })?;
        let readd = |group: &mut Group| {
            let leaf = group
                .members()
                .into_iter()
                .find(|m| m.user == user && m.fingerprint == fingerprint)
                .map(|m| m.index);
            match leaf {
                Some(leaf) => group.readd(leaf, &package).map(Some),
                // Removed meanwhile: nothing to add it again to.
                None => Ok(None),
            }
        };
        match self.commit_with(channel, readd).await {
            Ok(epoch) => Some(MlsEvent::Epoch {
                channel: channel.to_owned(),
                epoch,
                added: vec![user.to_owned()],
                removed: vec![user.to_owned()],
            }),
            Err(error) => Some(failed(error.to_string())),
        }
    }
}

//! The key package directory: each user's devices upload one-time key
//! packages (and one last-resort package each) for end-to-end groups, and
//! a member adding the user to a group claims one per device. The rules
//! live here once ([`UserKeyPackages`]); each backend stores one user's
//! packages as one value it changes atomically.

use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::BoxFuture;
use crate::types::{ChannelError, ErrorCode};

/// Keeps users' key packages. Implemented by every backend; the checks
/// (who may upload in whose name, what a package is) are the node's, done
/// before it gets here.
pub trait KeyPackageDirectory: Send + Sync + 'static {
    /// Adds what one device of `user` uploads
    /// ([`UserKeyPackages::upload`]): all of it, or nothing with
    /// [`ErrorCode::Limit`] past `limits`. The counts of every device of
    /// the user after it.
    fn upload_key_packages<'a>(
        &'a self,
        user: &'a str,
        upload: KeyPackageUpload,
        limits: KeyPackageLimits,
    ) -> BoxFuture<'a, Result<Vec<DeviceKeyPackages>, ChannelError>>;

    /// Takes one package per device of `user`, except the devices in
    /// `except` ([`UserKeyPackages::claim`]): a one-time package is handed
    /// out once, however many claim at the same time.
    fn claim_key_packages<'a>(
        &'a self,
        user: &'a str,
        except: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<ClaimedKeyPackage>, ChannelError>>;
}

/// Where a backend keeps users' packages: one value per user, changed in
/// one step (compare-and-set on Redis and NATS). Every such store is a
/// [`KeyPackageDirectory`] through the rules of [`UserKeyPackages`],
/// written once here.
pub(crate) trait KeyPackageStore: Send + Sync + 'static {
    /// Reads `user`'s packages, lets `change` edit them (given the time
    /// now, seconds since the Unix epoch) and keeps what it left, in one
    /// step: `change` runs again on a fresh read when another node wrote
    /// in between. A user left with no package may be forgotten.
    fn change_key_packages<'a, T: Send + 'a>(
        &'a self,
        user: &'a str,
        change: impl Fn(&mut UserKeyPackages, u64) -> Result<T, ChannelError> + Send + Sync + 'a,
    ) -> BoxFuture<'a, Result<T, ChannelError>>;
}

impl<S: KeyPackageStore> KeyPackageDirectory for S {
    fn upload_key_packages<'a>(
        &'a self,
        user: &'a str,
        upload: KeyPackageUpload,
        limits: KeyPackageLimits,
    ) -> BoxFuture<'a, Result<Vec<DeviceKeyPackages>, ChannelError>> {
        self.change_key_packages(user, move |packages, now| {
            packages
                .upload(upload.clone(), limits, now)
                .map(|()| packages.counts())
        })
    }

    fn claim_key_packages<'a>(
        &'a self,
        user: &'a str,
        except: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<ClaimedKeyPackage>, ChannelError>> {
        self.change_key_packages(user, |packages, now| Ok(packages.claim(now, except)))
    }
}

/// A key package as the directory keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKeyPackage {
    /// The package, base64, as uploaded.
    pub package: String,
    /// When it stops being valid, in seconds since the Unix epoch (its
    /// lifetime's end): it is dropped then, never handed out.
    pub expires: u64,
}

/// What one device uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPackageUpload {
    /// The device, by its signature key's fingerprint.
    pub device: String,
    /// One-time packages, each handed out once.
    pub one_time: Vec<StoredKeyPackage>,
    /// The package handed out when the one-time ones are gone, kept after
    /// each claim (RFC 9420, section 16.8); replaces the device's earlier
    /// one.
    pub last_resort: Option<StoredKeyPackage>,
}

/// How much a user may keep in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPackageLimits {
    /// One-time packages kept per device.
    pub per_device: usize,
    /// Devices per user.
    pub devices: usize,
}

/// What a device has in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeyPackages {
    /// The device's fingerprint.
    pub device: String,
    /// One-time packages left.
    pub one_time: usize,
    /// Whether it has a last-resort package.
    pub last_resort: bool,
}

/// A package handed out by a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedKeyPackage {
    /// The device's fingerprint.
    pub device: String,
    /// The package, base64.
    pub key_package: String,
    /// Whether it is the device's last-resort package (handed out again
    /// until the device uploads more).
    pub last_resort: bool,
}

/// One user's packages, by device: what every backend stores per user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserKeyPackages {
    devices: BTreeMap<String, DeviceEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct DeviceEntry {
    one_time: VecDeque<StoredKeyPackage>,
    last_resort: Option<StoredKeyPackage>,
}

impl DeviceEntry {
    fn drop_expired(&mut self, now: u64) {
        self.one_time.retain(|p| p.expires > now);
        if self.last_resort.as_ref().is_some_and(|p| p.expires <= now) {
            self.last_resort = None;
        }
    }

    fn is_empty(&self) -> bool {
        self.one_time.is_empty() && self.last_resort.is_none()
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl UserKeyPackages {
    /// Drops expired packages and devices left with none.
    fn drop_expired(&mut self, now: u64) {
        for entry in self.devices.values_mut() {
            entry.drop_expired(now);
        }
        self.devices.retain(|_, entry| !entry.is_empty());
    }

    /// Adds a device's upload: all of it, or nothing when the device would
    /// keep more than `limits.per_device` one-time packages, or the user
    /// more than `limits.devices` devices ([`ErrorCode::Limit`]). Expired
    /// packages go first, the uploaded ones among them.
    pub fn upload(
        &mut self,
        mut upload: KeyPackageUpload,
        limits: KeyPackageLimits,
        now: u64,
    ) -> Result<(), ChannelError> {
        self.drop_expired(now);
        upload.one_time.retain(|p| p.expires > now);
        upload.last_resort = upload.last_resort.filter(|p| p.expires > now);
        if upload.one_time.is_empty() && upload.last_resort.is_none() {
            // Nothing to keep: a question about the devices.
            return Ok(());
        }
        let known = self.devices.contains_key(&upload.device);
        if !known && self.devices.len() >= limits.devices {
            return Err(ChannelError::new(
                ErrorCode::Limit,
                format!(
                    "a user keeps key packages for at most {} devices",
                    limits.devices
                ),
            ));
        }
        let held = self
            .devices
            .get(&upload.device)
            .map_or(0, |entry| entry.one_time.len());
        if held + upload.one_time.len() > limits.per_device {
            return Err(ChannelError::new(
                ErrorCode::Limit,
                format!(
                    "a device keeps at most {} one-time key packages; it has {held}",
                    limits.per_device
                ),
            ));
        }
        let entry = self.devices.entry(upload.device).or_default();
        entry.one_time.extend(upload.one_time);
        if let Some(last_resort) = upload.last_resort {
            entry.last_resort = Some(last_resort);
        }
        self.devices.retain(|_, entry| !entry.is_empty());
        Ok(())
    }

    /// One package per device not in `except` (by fingerprint: the
    /// devices already in the group a member adds to): the oldest one-time
    /// package (removed), or the last-resort one (kept) when none is left.
    /// Devices with neither are left out; those in `except` keep theirs.
    pub fn claim(&mut self, now: u64, except: &[String]) -> Vec<ClaimedKeyPackage> {
        self.drop_expired(now);
        let mut claimed = Vec::new();
        for (device, entry) in &mut self.devices {
            if except.contains(device) {
                continue;
            }
            let (package, last_resort) = match entry.one_time.pop_front() {
                Some(package) => (package, false),
                None => match &entry.last_resort {
                    Some(package) => (package.clone(), true),
                    None => continue,
                },
            };
            claimed.push(ClaimedKeyPackage {
                device: device.clone(),
                key_package: package.package,
                last_resort,
            });
        }
        self.devices.retain(|_, entry| !entry.is_empty());
        claimed
    }

    /// What each device has.
    pub fn counts(&self) -> Vec<DeviceKeyPackages> {
        self.devices
            .iter()
            .map(|(device, entry)| DeviceKeyPackages {
                device: device.clone(),
                one_time: entry.one_time.len(),
                last_resort: entry.last_resort.is_some(),
            })
            .collect()
    }

    /// Whether no device has a package.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// When the last package expires, in seconds since the Unix epoch: a
    /// store may forget the user then.
    pub fn expires(&self) -> u64 {
        self.devices
            .values()
            .flat_map(|entry| entry.one_time.iter().chain(&entry.last_resort))
            .map(|p| p.expires)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, expires: u64) -> StoredKeyPackage {
        StoredKeyPackage {
            package: name.to_owned(),
            expires,
        }
    }

    const LIMITS: KeyPackageLimits = KeyPackageLimits {
        per_device: 3,
        devices: 2,
    };

    fn upload(device: &str, one_time: &[&str], last: Option<&str>) -> KeyPackageUpload {
        KeyPackageUpload {
            device: device.to_owned(),
            one_time: one_time.iter().map(|n| package(n, 100)).collect(),
            last_resort: last.map(|n| package(n, 100)),
        }
    }

    #[test]
    fn one_time_packages_go_once_then_the_last_resort_stays() {
        let mut user = UserKeyPackages::default();
        user.upload(upload("d1", &["a", "b"], Some("z")), LIMITS, 10)
            .unwrap();
        user.upload(upload("d2", &["c"], None), LIMITS, 10).unwrap();
        let names = |claimed: Vec<ClaimedKeyPackage>| -> Vec<(String, bool)> {
            claimed
                .into_iter()
                .map(|c| (c.key_package, c.last_resort))
                .collect()
        };
        let first = names(user.claim(10, &[]));
        assert_eq!(
            first,
            [("a".to_owned(), false), ("c".to_owned(), false)],
            "one per device"
        );
        assert_eq!(names(user.claim(10, &[])), [("b".to_owned(), false)]);
        assert_eq!(names(user.claim(10, &[])), [("z".to_owned(), true)]);
        assert_eq!(names(user.claim(10, &[])), [("z".to_owned(), true)]);
        assert_eq!(
            user.counts(),
            [DeviceKeyPackages {
                device: "d1".into(),
                one_time: 0,
                last_resort: true
            }]
        );
    }

    // A member adding a user's new device names the devices already in
    // the group: their packages stay for other groups, so a device that
    // reconnects (a join event like a new device's) costs it nothing.
    #[test]
    fn a_claim_leaves_out_the_devices_already_in_the_group() {
        let mut user = UserKeyPackages::default();
        user.upload(upload("d1", &["a"], Some("y")), LIMITS, 10)
            .unwrap();
        user.upload(upload("d2", &["c"], Some("z")), LIMITS, 10)
            .unwrap();
        let claimed = user.claim(10, &["d1".to_owned()]);
        assert_eq!(claimed.len(), 1, "{claimed:?}");
        assert_eq!(
            (claimed[0].device.as_str(), claimed[0].key_package.as_str()),
            ("d2", "c")
        );
        assert!(
            user.claim(10, &["d1".to_owned(), "d2".to_owned()])
                .is_empty()
        );
        let counts = user.counts();
        assert_eq!(counts[0].one_time, 1, "d1 keeps its package: {counts:?}");
        assert_eq!(counts[1].one_time, 0, "{counts:?}");
    }

    #[test]
    fn uploads_past_the_limits_store_nothing() {
        let mut user = UserKeyPackages::default();
        user.upload(upload("d1", &["a", "b"], None), LIMITS, 10)
            .unwrap();
        let before = user.clone();
        let error = user
            .upload(upload("d1", &["c", "d"], None), LIMITS, 10)
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::Limit);
        user.upload(upload("d2", &["c"], None), LIMITS, 10).unwrap();
        let error = user
            .upload(upload("d3", &["e"], None), LIMITS, 10)
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::Limit, "{error}");
        assert_eq!(user.counts().len(), 2);
        assert_ne!(user, before);
    }

    #[test]
    fn expired_packages_are_never_handed_out() {
        let mut user = UserKeyPackages::default();
        let mut old = upload("d1", &["a"], Some("z"));
        old.one_time[0].expires = 20;
        old.last_resort.as_mut().unwrap().expires = 30;
        user.upload(old, LIMITS, 10).unwrap();
        assert_eq!(user.expires(), 30);
        assert_eq!(user.claim(25, &[]).len(), 1, "the last resort, still valid");
        assert!(user.claim(30, &[]).is_empty());
        assert!(user.is_empty());
        // Expired on arrival: not stored, and they count for no limit.
        let mut stale = upload("d2", &["x"], None);
        stale.one_time[0].expires = 5;
        user.upload(stale, LIMITS, 10).unwrap();
        assert!(user.is_empty());
        // Nor is an upload of nothing, even past the devices limit.
        user.upload(upload("d1", &["a"], None), LIMITS, 10).unwrap();
        user.upload(upload("d2", &["b"], None), LIMITS, 10).unwrap();
        user.upload(upload("", &[], None), LIMITS, 10).unwrap();
        assert_eq!(user.counts().len(), 2);
    }
}

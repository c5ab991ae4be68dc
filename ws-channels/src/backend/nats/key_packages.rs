//! The key package directory on NATS: one JSON entry per user in the
//! bucket `<prefix>-keys`, changed by compare-and-set on its revision.

use super::*;
use crate::backend::key_packages::unix_now;
use crate::backend::{
    ClaimedKeyPackage, DeviceKeyPackages, KeyPackageDirectory, KeyPackageLimits, KeyPackageUpload,
    UserKeyPackages,
};

impl KeyPackageDirectory for NatsBackend {
    fn upload_key_packages<'a>(
        &'a self,
        user: &'a str,
        upload: KeyPackageUpload,
        limits: KeyPackageLimits,
    ) -> BoxFuture<'a, Result<Vec<DeviceKeyPackages>, ChannelError>> {
        Box::pin(self.shared.change_key_packages(user, move |packages, now| {
            packages
                .upload(upload.clone(), limits, now)
                .map(|()| packages.counts())
        }))
    }

    fn claim_key_packages<'a>(
        &'a self,
        user: &'a str,
        except: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<ClaimedKeyPackage>, ChannelError>> {
        Box::pin(
            self.shared
                .change_key_packages(user, |packages, now| Ok(packages.claim(now, except))),
        )
    }
}

impl Shared {
    /// Reads `user`'s packages, lets `change` edit them and writes them
    /// back unless another node wrote in between (then reads again).
    async fn change_key_packages<T>(
        &self,
        user: &str,
        change: impl Fn(&mut UserKeyPackages, u64) -> Result<T, ChannelError>,
    ) -> Result<T, ChannelError> {
        self.connected()?;
        entry::change(
            &self.keys,
            &hex(user),
            "a user's key packages",
            |packages: &mut UserKeyPackages| {
                let read = packages.clone();
                let result = change(packages, unix_now())?;
                let changed = *packages != read;
                Ok((result, changed))
            },
        )
        .await
    }
}

//! The key package directory on NATS: one JSON entry per user in the
//! bucket `<prefix>-keys`, changed by compare-and-set on its revision.

use super::*;
use crate::backend::UserKeyPackages;
use crate::backend::key_packages::KeyPackageStore;
use crate::backend::key_packages::unix_now;

impl KeyPackageStore for NatsBackend {
    fn change_key_packages<'a, T: Send + 'a>(
        &'a self,
        user: &'a str,
        change: impl Fn(&mut UserKeyPackages, u64) -> Result<T, ChannelError> + Send + Sync + 'a,
    ) -> BoxFuture<'a, Result<T, ChannelError>> {
        Box::pin(self.shared.change_key_packages(user, change))
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

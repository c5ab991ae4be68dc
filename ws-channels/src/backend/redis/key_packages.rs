//! The key package directory on Redis: one JSON value per user, changed by
//! compare-and-set, living until its last package expires.

use super::*;
use crate::backend::UserKeyPackages;
use crate::backend::key_packages::KeyPackageStore;
use crate::backend::key_packages::unix_now;

impl KeyPackageStore for RedisBackend {
    fn change_key_packages<'a, T: Send + 'a>(
        &'a self,
        user: &'a str,
        change: impl Fn(&mut UserKeyPackages, u64) -> Result<T, ChannelError> + Send + Sync + 'a,
    ) -> BoxFuture<'a, Result<T, ChannelError>> {
        Box::pin(self.shared.change_key_packages(user, change))
    }
}

impl Shared {
    /// The key of `user`'s key packages.
    fn key_packages_key(&self, user: &str) -> String {
        format!("{}:keys:{}", self.config.prefix, to_hex(user.as_bytes()))
    }

    /// Reads `user`'s packages, lets `change` edit them and writes them
    /// back unless another node wrote in between (then reads again).
    async fn change_key_packages<T>(
        &self,
        user: &str,
        change: impl Fn(&mut UserKeyPackages, u64) -> Result<T, ChannelError>,
    ) -> Result<T, ChannelError> {
        let key = self.key_packages_key(user);
        for _ in 0..64 {
            let read: Option<String> = self.command(redis::cmd("GET").arg(&key)).await?;
            let read = read.unwrap_or_default();
            let mut packages: UserKeyPackages = if read.is_empty() {
                UserKeyPackages::default()
            } else {
                serde_json::from_str(&read).unwrap_or_default()
            };
            let now = unix_now();
            let result = change(&mut packages, now)?;
            let (written, ttl_ms) = if packages.is_empty() {
                (String::new(), 0)
            } else {
                let left = packages.expires().saturating_sub(now).max(1);
                (
                    serde_json::to_string(&packages).map_err(unavailable)?,
                    left.saturating_mul(1000),
                )
            };
            if written == read {
                return Ok(result);
            }
            let mut invocation = self.scripts.set_if.prepare_invoke();
            invocation.key(&key).arg(read).arg(written).arg(ttl_ms);
            let mut conn = self.conn();
            let set: i64 = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if set == 1 {
                return Ok(result);
            }
        }
        Err(ChannelError::unavailable(
            "redis: a user's key packages changed too often to update",
        ))
    }
}

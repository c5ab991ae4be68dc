//! One JSON value per key in a key-value bucket, changed by compare-and-set
//! on the entry's revision: the user-level entries (created channels, key
//! packages) and the channels' GroupInfo.

use super::*;

/// Reads `key`'s value in `store` (the default when absent, deleted or
/// unreadable), with the revision to write it back at.
pub(super) async fn read<T: serde::de::DeserializeOwned + Default>(
    store: &kv::Store,
    key: &str,
) -> Result<(T, Option<u64>), ChannelError> {
    let entry = store.entry(key).await.map_err(unavailable)?;
    Ok(match entry {
        Some(entry) if entry.operation == kv::Operation::Put => (
            serde_json::from_slice(&entry.value).unwrap_or_default(),
            Some(entry.revision),
        ),
        Some(entry) => (T::default(), Some(entry.revision)),
        None => (T::default(), None),
    })
}

/// Reads `key`'s value, lets `change` edit it (its result, and whether to
/// write) and writes it back unless another node wrote in between; then
/// reads again. `what` names the value in the error of a key changed too
/// often.
pub(super) async fn change<T, R>(
    store: &kv::Store,
    key: &str,
    what: &str,
    mut change: impl FnMut(&mut T) -> Result<(R, bool), ChannelError>,
) -> Result<R, ChannelError>
where
    T: serde::de::DeserializeOwned + Serialize + Default,
{
    for _ in 0..64 {
        let (mut value, revision) = read::<T>(store, key).await?;
        let (result, write) = change(&mut value)?;
        if !write {
            return Ok(result);
        }
        let bytes: bytes::Bytes = serde_json::to_vec(&value).map_err(unavailable)?.into();
        let written = match revision {
            Some(revision) => store
                .update(key, bytes, revision)
                .await
                .map(drop)
                .map_err(|e| {
                    (
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                }),
            None => store.create(key, bytes).await.map(drop).map_err(|e| {
                (
                    e.kind() == kv::CreateErrorKind::AlreadyExists,
                    e.to_string(),
                )
            }),
        };
        match written {
            Ok(()) => return Ok(result),
            Err((true, _)) => continue,
            Err((false, error)) => return Err(unavailable(error)),
        }
    }
    Err(ChannelError::unavailable(format!(
        "nats: {what} changed too often to update"
    )))
}

//! What a device keeps, so that it survives a restart or a reload: its
//! signature key, its unused key packages and the state of its groups
//! (the last few epochs of each, for messages that arrive late), in
//! memory while it runs and as one blob ([`Device::export`]) to put
//! where the application keeps secrets.
//!
//! [`Device::export`]: super::Device::export

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mls_rs::GroupStateStorage;
use mls_rs::mls_rs_codec::{MlsDecode, MlsEncode};
use mls_rs::storage_provider::KeyPackageData;
use mls_rs_core::group::{EpochRecord, GroupState};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Epochs of a group kept beyond the current one, for messages sent
/// before a commit that arrive after it.
const EPOCHS_KEPT: usize = 3;

#[derive(Default)]
struct StoredGroup {
    state: Zeroizing<Vec<u8>>,
    epochs: BTreeMap<u64, Zeroizing<Vec<u8>>>,
}

/// The groups' states, shared between a device and the library's view of
/// its groups.
#[derive(Clone, Default)]
pub(super) struct GroupStates(Arc<Mutex<HashMap<Vec<u8>, StoredGroup>>>);

impl GroupStates {
    fn lock(&self) -> MutexGuard<'_, HashMap<Vec<u8>, StoredGroup>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl GroupStateStorage for GroupStates {
    type Error = Infallible;

    fn state(&self, group_id: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, Self::Error> {
        Ok(self.lock().get(group_id).map(|g| g.state.clone()))
    }

    fn epoch(
        &self,
        group_id: &[u8],
        epoch_id: u64,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, Self::Error> {
        Ok(self
            .lock()
            .get(group_id)
            .and_then(|g| g.epochs.get(&epoch_id).cloned()))
    }

    fn write(
        &mut self,
        state: GroupState,
        epoch_inserts: Vec<EpochRecord>,
        epoch_updates: Vec<EpochRecord>,
    ) -> Result<(), Self::Error> {
        let mut groups = self.lock();
        let group = groups.entry(state.id).or_default();
        group.state = state.data;
        for epoch in epoch_inserts.into_iter().chain(epoch_updates) {
            group.epochs.insert(epoch.id, epoch.data);
        }
        while group.epochs.len() > EPOCHS_KEPT {
            group.epochs.pop_first();
        }
        Ok(())
    }

    fn max_epoch_id(&self, group_id: &[u8]) -> Result<Option<u64>, Self::Error> {
        Ok(self
            .lock()
            .get(group_id)
            .and_then(|g| g.epochs.keys().next_back().copied()))
    }
}

/// The exported form: every binary field is base64 of its MLS encoding.
#[derive(Serialize, Deserialize)]
struct Exported {
    version: u32,
    user: String,
    secret: String,
    identity: String,
    key_packages: Vec<(String, String)>,
    groups: Vec<ExportedGroup>,
}

#[derive(Serialize, Deserialize)]
struct ExportedGroup {
    id: String,
    state: String,
    epochs: Vec<(u64, String)>,
}

/// What [`Device::import`](super::Device::import) rebuilds a device from.
pub(super) struct Imported {
    pub(super) user: String,
    pub(super) secret: mls_rs::crypto::SignatureSecretKey,
    pub(super) identity: mls_rs::identity::SigningIdentity,
    pub(super) key_packages: Vec<(Vec<u8>, KeyPackageData)>,
    pub(super) groups: GroupStates,
}

fn encode(value: &impl MlsEncode) -> Result<String, super::MlsError> {
    Ok(STANDARD.encode(value.mls_encode_to_vec().map_err(super::invalid)?))
}

fn decode<T: MlsDecode>(text: &str) -> Result<T, super::MlsError> {
    let bytes = STANDARD.decode(text).map_err(super::invalid)?;
    T::mls_decode(&mut &*bytes).map_err(super::invalid)
}

pub(super) fn export(
    user: &str,
    secret: &mls_rs::crypto::SignatureSecretKey,
    identity: &mls_rs::identity::SigningIdentity,
    key_packages: Vec<(Vec<u8>, KeyPackageData)>,
    groups: &GroupStates,
) -> Result<Vec<u8>, super::MlsError> {
    let exported = Exported {
        version: 1,
        user: user.to_owned(),
        secret: encode(secret)?,
        identity: encode(identity)?,
        key_packages: key_packages
            .into_iter()
            .map(|(id, data)| Ok((STANDARD.encode(id), encode(&data)?)))
            .collect::<Result<_, super::MlsError>>()?,
        groups: groups
            .lock()
            .iter()
            .map(|(id, group)| ExportedGroup {
                id: STANDARD.encode(id),
                state: STANDARD.encode(&*group.state),
                epochs: group
                    .epochs
                    .iter()
                    .map(|(epoch, data)| (*epoch, STANDARD.encode(&**data)))
                    .collect(),
            })
            .collect(),
    };
    serde_json::to_vec(&exported).map_err(super::invalid)
}

pub(super) fn import(bytes: &[u8]) -> Result<Imported, super::MlsError> {
    let exported: Exported = serde_json::from_slice(bytes).map_err(super::invalid)?;
    if exported.version != 1 {
        return Err(super::MlsError::Invalid(format!(
            "a saved device of version {}",
            exported.version
        )));
    }
    let bytes = |text: &str| STANDARD.decode(text).map_err(super::invalid);
    let groups = GroupStates::default();
    {
        let mut stored = groups.lock();
        for group in &exported.groups {
            let mut epochs = BTreeMap::new();
            for (epoch, data) in &group.epochs {
                epochs.insert(*epoch, Zeroizing::new(bytes(data)?));
            }
            stored.insert(
                bytes(&group.id)?,
                StoredGroup {
                    state: Zeroizing::new(bytes(&group.state)?),
                    epochs,
                },
            );
        }
    }
    Ok(Imported {
        secret: decode(&exported.secret)?,
        identity: decode(&exported.identity)?,
        key_packages: exported
            .key_packages
            .iter()
            .map(|(id, data)| Ok((bytes(id)?, decode(data)?)))
            .collect::<Result<_, super::MlsError>>()?,
        user: exported.user,
        groups,
    })
}

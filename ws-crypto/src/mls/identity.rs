//! Who a leaf is, for mls-rs: basic credentials (a user's name), where
//! one user may have several devices in a group.
//!
//! mls-rs refuses two leaves with the same identity, and its
//! `BasicIdentityProvider` makes a basic credential's name the identity,
//! so a user's second device could never be added. Here a leaf's identity
//! is its user's name and its signature key (RFC 9420, section 5.3.1
//! leaves it to the application), which is what ts-mls compares too; the
//! checks of the credential itself stay `BasicIdentityProvider`'s, and a
//! leaf's successor (an update) must name the same user.

use mls_rs::identity::basic::{BasicIdentityProvider, BasicIdentityProviderError};
use mls_rs_core::extension::ExtensionList;
use mls_rs_core::identity::{
    CredentialType, IdentityProvider, MemberValidationContext, SigningIdentity,
};
use mls_rs_core::time::MlsTime;

/// Basic credentials, one identity per device: the user's name and the
/// device's signature key.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DeviceIdentityProvider;

impl IdentityProvider for DeviceIdentityProvider {
    type Error = BasicIdentityProviderError;

    fn validate_member(
        &self,
        signing_identity: &SigningIdentity,
        timestamp: Option<MlsTime>,
        context: MemberValidationContext<'_>,
    ) -> Result<(), Self::Error> {
        BasicIdentityProvider.validate_member(signing_identity, timestamp, context)
    }

    fn validate_external_sender(
        &self,
        signing_identity: &SigningIdentity,
        timestamp: Option<MlsTime>,
        extensions: Option<&ExtensionList>,
    ) -> Result<(), Self::Error> {
        BasicIdentityProvider.validate_external_sender(signing_identity, timestamp, extensions)
    }

    /// The signature key, length-prefixed, then the user's name: no two
    /// (key, name) pairs give the same bytes.
    fn identity(
        &self,
        signing_identity: &SigningIdentity,
        extensions: &ExtensionList,
    ) -> Result<Vec<u8>, Self::Error> {
        let user = BasicIdentityProvider.identity(signing_identity, extensions)?;
        let key = signing_identity.signature_key.as_bytes();
        let length = u32::try_from(key.len()).unwrap_or(u32::MAX);
        let mut identity = Vec::with_capacity(4 + key.len() + user.len());
        identity.extend_from_slice(&length.to_be_bytes());
        identity.extend_from_slice(key);
        identity.extend_from_slice(&user);
        Ok(identity)
    }

    /// The same user, whatever its key.
    fn valid_successor(
        &self,
        predecessor: &SigningIdentity,
        successor: &SigningIdentity,
        extensions: &ExtensionList,
    ) -> Result<bool, Self::Error> {
        BasicIdentityProvider.valid_successor(predecessor, successor, extensions)
    }

    fn supported_types(&self) -> Vec<CredentialType> {
        BasicIdentityProvider.supported_types()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mls_rs::crypto::SignaturePublicKey;
    use mls_rs::identity::basic::BasicCredential;

    fn leaf(user: &str, key: &[u8]) -> SigningIdentity {
        SigningIdentity::new(
            BasicCredential::new(user.as_bytes().to_vec()).into_credential(),
            SignaturePublicKey::new(key.to_vec()),
        )
    }

    #[test]
    fn two_devices_of_one_user_are_two_identities_and_successors_keep_the_user() {
        let none = ExtensionList::default();
        let identity = |user, key| {
            DeviceIdentityProvider
                .identity(&leaf(user, key), &none)
                .unwrap()
        };
        assert_ne!(identity("bo", b"laptop"), identity("bo", b"phone"));
        assert_ne!(identity("bo", b"key"), identity("cy", b"key"));
        // The length prefix keeps the key and the name apart.
        assert_ne!(identity("xbo", b"k"), identity("bo", b"kx"));
        assert_eq!(identity("bo", b"phone"), identity("bo", b"phone"));
        let successor = |a, b| {
            DeviceIdentityProvider
                .valid_successor(&a, &b, &none)
                .unwrap()
        };
        assert!(successor(leaf("bo", b"old"), leaf("bo", b"new")));
        assert!(!successor(leaf("bo", b"key"), leaf("cy", b"key")));
    }
}

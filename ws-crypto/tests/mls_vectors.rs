//! The MLS working group's interoperability test vectors (RFC 9420), run
//! against mls-rs as `ws_crypto::mls` builds it (its RustCrypto provider,
//! the features this workspace turns on): a passive client joins from a
//! Welcome with the key package and private keys the vector gives, takes
//! every proposal and commit of every epoch, and must reach the same
//! epoch authenticator as the implementations that made the vector.
//!
//! `tests/vectors/*.json` are the ciphersuite-1 cases of
//! `test-vectors/passive-client-welcome.json` and
//! `test-vectors/passive-client-handling-commit.json` from
//! github.com/mlswg/mls-implementations at
//! cfd450286d1bfd9cd2519b95c80f9771f94a5b1a, unchanged but for the
//! filter.
#![cfg(feature = "mls")]

use mls_rs::group::ExportedTree;
use mls_rs::identity::basic::BasicIdentityProvider;
use mls_rs::mls_rs_codec::MlsEncode;
use mls_rs::psk::{ExternalPskId, PreSharedKey};
use mls_rs::storage_provider::KeyPackageData;
use mls_rs::storage_provider::in_memory::InMemoryKeyPackageStorage;
use mls_rs::{Client, CryptoProvider, MlsMessage};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;
use serde_json::Value;

fn hex(value: &Value) -> Vec<u8> {
    let text = value.as_str().expect("a hex string");
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex"))
        .collect()
}

/// Runs every case of a vector file; how many epochs it went through.
fn passive_client(file: &str) -> (usize, usize) {
    let cases: Vec<Value> = serde_json::from_str(file).unwrap();
    let mut epochs = 0;
    for (number, case) in cases.iter().enumerate() {
        assert_eq!(case["cipher_suite"], 1);
        let crypto = RustCryptoProvider::default();
        let suite = crypto
            .cipher_suite_provider(ws_crypto::mls::CIPHERSUITE)
            .unwrap();
        let key_package = MlsMessage::from_bytes(&hex(&case["key_package"]))
            .unwrap()
            .into_key_package()
            .expect("a key package");
        let identity = key_package.signing_identity().clone();
        let storage = InMemoryKeyPackageStorage::new();
        storage.insert(
            key_package.to_reference(&suite).unwrap().to_vec(),
            KeyPackageData::new(
                key_package.mls_encode_to_vec().unwrap(),
                hex(&case["init_priv"]).into(),
                hex(&case["encryption_priv"]).into(),
                u64::MAX,
            ),
        );
        let mut builder = Client::builder()
            .crypto_provider(crypto)
            .identity_provider(BasicIdentityProvider)
            .key_package_repo(storage);
        for psk in case["external_psks"].as_array().unwrap() {
            builder = builder.psk(
                ExternalPskId::new(hex(&psk["psk_id"])),
                PreSharedKey::new(hex(&psk["psk"])),
            );
        }
        let client = builder
            .signing_identity(
                identity,
                hex(&case["signature_priv"]).into(),
                ws_crypto::mls::CIPHERSUITE,
            )
            .build();
        let tree = case["ratchet_tree"]
            .as_str()
            .map(|_| hex(&case["ratchet_tree"]));
        let tree = tree
            .as_deref()
            .map(|t| ExportedTree::from_bytes(t).unwrap());
        let welcome = MlsMessage::from_bytes(&hex(&case["welcome"])).unwrap();
        let (mut group, _) = client
            .join_group(tree, &welcome, None)
            .unwrap_or_else(|e| panic!("case {number}: join: {e}"));
        assert_eq!(
            group.epoch_authenticator().unwrap().to_vec(),
            hex(&case["initial_epoch_authenticator"]),
            "case {number}: the epoch authenticator after the Welcome"
        );
        for (at, epoch) in case["epochs"].as_array().unwrap().iter().enumerate() {
            for proposal in epoch["proposals"].as_array().unwrap() {
                group
                    .process_incoming_message(MlsMessage::from_bytes(&hex(proposal)).unwrap())
                    .unwrap_or_else(|e| panic!("case {number}, epoch {at}: proposal: {e}"));
            }
            group
                .process_incoming_message(MlsMessage::from_bytes(&hex(&epoch["commit"])).unwrap())
                .unwrap_or_else(|e| panic!("case {number}, epoch {at}: commit: {e}"));
            assert_eq!(
                group.epoch_authenticator().unwrap().to_vec(),
                hex(&epoch["epoch_authenticator"]),
                "case {number}, epoch {at}"
            );
            epochs += 1;
        }
    }
    (cases.len(), epochs)
}

#[test]
fn a_passive_client_joins_from_every_welcome() {
    let (cases, _) = passive_client(include_str!("vectors/passive-client-welcome.json"));
    assert_eq!(cases, 8);
}

#[test]
fn a_passive_client_follows_every_commit() {
    let (cases, epochs) =
        passive_client(include_str!("vectors/passive-client-handling-commit.json"));
    assert_eq!((cases, epochs), (13, 26));
}

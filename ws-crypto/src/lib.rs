#![doc = include_str!("../README.md")]

pub mod channel;
pub mod client;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod keys;
pub mod sealed;
pub mod session;

pub use keys::{InvalidPublicKey, KeyPair, PublicKey, Suite};

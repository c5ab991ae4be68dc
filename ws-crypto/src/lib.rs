#![doc = include_str!("../README.md")]

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod keys;
#[cfg(feature = "mls")]
pub mod mls;
pub mod sealed;
pub mod session;

pub use keys::{InvalidPublicKey, KeyPair, PublicKey, Suite};

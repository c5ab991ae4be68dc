//! The adapter test suite (`adapter-tests/`, shared with ws-tokio), run on
//! smol's executor.

#![allow(unreachable_pub)]

#[path = "futures_rt/mod.rs"]
mod futures_rt;

mod rt {
    use std::future::Future;

    pub use crate::futures_rt::*;
    pub use ws_smol as ws;

    pub fn spawn<F>(future: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_with(|task| smol::spawn(task).detach(), future)
    }
}

macro_rules! adapter_tests {
    ($($name:ident),* $(,)?) => {
        mod on_smol {
            $(
                #[test]
                fn $name() {
                    smol::block_on(super::$name());
                }
            )*
        }
    };
}

#[path = "../../adapter-tests/mod.rs"]
mod suite;

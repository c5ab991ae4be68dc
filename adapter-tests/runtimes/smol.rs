// The runtime under test, for a test root under `<crate>/tests/` that
// `include!`s this file: `mod rt` (smol's executor over async-io, and
// `rt::ws`, ws-smol) and the `adapter_tests!` macro.

#[path = "futures_rt.rs"]
mod futures_rt;

// Not every suite uses every piece.
#[allow(dead_code, unused_imports)]
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

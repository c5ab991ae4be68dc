//! The adapter test suite (`adapter-tests/`, shared with ws-tokio), run on
//! async-std's executor: servers and clients spawn their connection tasks
//! with `async_std::task::spawn`.

#![allow(unreachable_pub)]

#[path = "futures_rt/mod.rs"]
mod futures_rt;

mod rt {
    use std::future::Future;

    pub use crate::futures_rt::*;

    /// ws-smol with async-std's spawner wherever a runtime is chosen.
    pub mod ws {
        pub use ws_smol::*;

        fn runtime() -> SmolRuntime {
            SmolRuntime::with_spawner(|task| {
                async_std::task::spawn(task);
            })
        }

        pub fn server() -> ServerBuilder {
            ServerBuilder::new(runtime())
        }

        pub fn client(request: impl IntoClientRequest) -> Result<Client, ConnectError> {
            Client::new(runtime(), request)
        }

        pub async fn connect(
            request: impl IntoClientRequest,
        ) -> Result<(WebSocket, http::Response<()>), ConnectError> {
            client(request)?.connect().await
        }
    }

    pub fn spawn<F>(future: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_with(
            |task| {
                async_std::task::spawn(task);
            },
            future,
        )
    }
}

macro_rules! adapter_tests {
    ($($name:ident),* $(,)?) => {
        mod on_async_std {
            $(
                #[test]
                fn $name() {
                    async_std::task::block_on(super::$name());
                }
            )*
        }
    };
}

#[path = "../../adapter-tests/mod.rs"]
mod suite;

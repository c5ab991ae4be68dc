// The runtime under test, for a test root under `<crate>/tests/` that
// `include!`s this file: `mod rt` (async-std's executor; ws-smol with
// async-std's spawner wherever a runtime is chosen) and the
// `adapter_tests!` macro.

#[path = "futures_rt.rs"]
mod futures_rt;

// Not every suite uses every piece.
#[allow(dead_code, unused_imports)]
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

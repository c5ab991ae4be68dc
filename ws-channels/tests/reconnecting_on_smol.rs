//! `ReconnectingClient` on smol (the tokio tests are in `reconnecting.rs`):
//! the same client, generic over ws-async's runtime, through a proxy the
//! test cuts, recovers what was published while it was away, once and in
//! order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use futures_lite::future;
use serde_json::json;
use ws_channels::reconnect::{ClientEvent, ConnectionState, ReconnectConfig};
use ws_channels::{Channels, ChannelsClient, ChannelsConfig, ReconnectingClient};
use ws_smol::SmolRuntime;

mod support;
use support::numbers;

const WAIT: Duration = Duration::from_secs(10);

/// A TCP proxy to `upstream` whose connections the test can cut.
struct Proxy {
    addr: std::net::SocketAddr,
    links: Arc<Mutex<Vec<smol::Task<()>>>>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<smol::Task<()>>>> = Arc::default();
        let kept = links.clone();
        smol::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let link = smol::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let up = futures_lite::io::copy(inbound.clone(), outbound.clone());
                    let down = futures_lite::io::copy(outbound, inbound);
                    let _ = future::or(up, down).await;
                });
                kept.lock().unwrap().push(link);
            }
        })
        .detach();
        Self { addr, links }
    }

    /// Drops every connection through it (its tasks, and with them the
    /// sockets), as a network cut does.
    fn cut(&self) {
        self.links.lock().unwrap().clear();
    }
}

async fn read_until(
    client: &mut ReconnectingClient<SmolRuntime>,
    mut enough: impl FnMut(&[ClientEvent]) -> bool,
) -> Vec<ClientEvent> {
    let mut seen = Vec::new();
    let reading = async {
        while !enough(&seen) {
            seen.push(client.next_event().await.expect("an event"));
        }
        true
    };
    let late = async {
        smol::Timer::after(WAIT).await;
        false
    };
    assert!(future::or(reading, late).await, "not in time");
    seen
}

#[test]
fn what_was_published_during_a_cut_arrives_once_and_in_order() {
    smol::block_on(async {
        let config = ChannelsConfig {
            allow_anonymous: true,
            ..ChannelsConfig::default()
        };
        let channels = Channels::builder(config).build();
        let server = ws_smol::server()
            .route("/channels", channels.endpoint())
            .build();
        let listener = ws_smol::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        smol::spawn(async move { server.serve(listener).await }).detach();
        let proxy = Proxy::start(addr).await;

        let (socket, _) = ws_smol::connect(&format!("ws://{addr}/channels"))
            .await
            .unwrap();
        let mut publisher = ChannelsClient::new(socket);
        let create = ws_channels::protocol::Command::Create {
            max_participants: None,
            history_size: Some(100),
            history_ttl: Some(300),
            presence_events: false,
            encrypted: false,
            info: None,
        };
        publisher.create("room", Some(create)).await.unwrap();

        let config = ReconnectConfig {
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(400),
            ..ReconnectConfig::default()
        };
        let through = proxy.addr;
        let mut client = ReconnectingClient::new(SmolRuntime::new(), config, move || async move {
            ws_smol::connect(&format!("ws://{through}/channels"))
                .await
                .map(|(socket, _)| socket)
        });
        client.join("room", None);
        let mut all = read_until(&mut client, |seen| {
            seen.iter().any(|e| matches!(e, ClientEvent::Joined { .. }))
        })
        .await;
        for n in 1..=2 {
            publisher.publish("room", &json!({"n": n})).await.unwrap();
        }
        all.extend(read_until(&mut client, |seen| numbers(seen).len() == 2).await);
        proxy.cut();
        for n in 3..=4 {
            publisher.publish("room", &json!({"n": n})).await.unwrap();
        }
        let back = read_until(&mut client, |seen| numbers(seen).len() == 2).await;
        assert!(
            back.iter().any(|e| matches!(
                e,
                ClientEvent::State {
                    state: ConnectionState::Disconnected,
                    ..
                }
            )),
            "{back:?}"
        );
        all.extend(back);
        assert_eq!(numbers(&all), [1, 2, 3, 4]);
        let reply = client.publish("room", &json!({"n": 5})).await.unwrap();
        assert_eq!(reply.offset, Some(5));
    });
}

//! `ReconnectingClient` over real connections on tokio, through a proxy
//! the test cuts: what was published while it was away arrives once and
//! in order; a deliberate disconnect (4009) ends it; a command nobody
//! answers times out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use ws_channels::Target;
use ws_channels::reconnect::{ClientEvent, ConnectionState, ReconnectConfig};
use ws_channels::{Channels, ChannelsClient, ChannelsConfig, ReconnectingClient};
use ws_tokio::TokioRuntime;

mod support;
use support::{NameFromQuery, numbers};

const WAIT: Duration = Duration::from_secs(10);

/// A TCP proxy to `upstream` whose connections the test can cut.
struct Proxy {
    addr: std::net::SocketAddr,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let kept = links.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                kept.lock().unwrap().push(link);
            }
        });
        Self { addr, links }
    }

    /// Drops every connection through it, as a network cut does.
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

async fn server() -> (std::net::SocketAddr, ws_channels::ChannelsHandle) {
    let channels = Channels::builder(ChannelsConfig::default()).build();
    let handle = channels.handle();
    let endpoint = channels.endpoint().authenticator(NameFromQuery);
    let server = ws_tokio::server().route("/channels", endpoint).build();
    let listener = ws_tokio::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener).await });
    (addr, handle)
}

async fn direct(addr: std::net::SocketAddr, user: &str) -> ChannelsClient {
    let url = format!("ws://{addr}/channels?user={user}");
    ChannelsClient::new(ws_tokio::connect(&url).await.unwrap().0)
}

fn through(addr: std::net::SocketAddr, user: &'static str) -> ReconnectingClient<TokioRuntime> {
    let config = ReconnectConfig {
        min_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(400),
        ..ReconnectConfig::default()
    };
    ReconnectingClient::new(TokioRuntime, config, move || async move {
        let url = format!("ws://{addr}/channels?user={user}");
        ws_tokio::connect(&url).await.map(|(socket, _)| socket)
    })
}

/// Reads events until `enough` says so; every event seen, in order.
async fn read_until(
    client: &mut ReconnectingClient<TokioRuntime>,
    mut enough: impl FnMut(&[ClientEvent]) -> bool,
) -> Vec<ClientEvent> {
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !enough(&seen) {
            seen.push(client.next_event().await.expect("an event"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not in time: {seen:?}"));
    seen
}

#[tokio::test]
async fn what_was_published_during_a_cut_arrives_once_and_in_order() {
    let (addr, _handle) = server().await;
    let proxy = Proxy::start(addr).await;
    let mut publisher = direct(addr, "pat").await;
    let create = ws_channels::protocol::Command::Create {
        max_participants: None,
        history_size: Some(100),
        history_ttl: Some(300),
        presence_events: false,
        encrypted: false,
        info: None,
    };
    publisher.create("room", Some(create)).await.unwrap();
    let mut client = through(proxy.addr, "cat");
    client.join("room", None);
    read_until(&mut client, |seen| {
        seen.iter().any(|e| matches!(e, ClientEvent::Joined { .. }))
    })
    .await;
    let mut all = Vec::new();
    for n in 1..=3 {
        publisher.publish("room", &json!({"n": n})).await.unwrap();
    }
    all.extend(read_until(&mut client, |seen| numbers(seen).len() == 3).await);
    proxy.cut();
    // Published while the client is cut off.
    for n in 4..=6 {
        publisher.publish("room", &json!({"n": n})).await.unwrap();
    }
    let back = read_until(&mut client, |seen| numbers(seen).len() == 3).await;
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
    assert!(
        back.iter().any(|e| matches!(
            e,
            ClientEvent::Joined {
                recovered: Some(true),
                ..
            }
        )),
        "{back:?}"
    );
    all.extend(back);
    // Live again.
    publisher.publish("room", &json!({"n": 7})).await.unwrap();
    all.extend(read_until(&mut client, |seen| numbers(seen).len() == 1).await);
    assert_eq!(numbers(&all), [1, 2, 3, 4, 5, 6, 7]);
    // A command with its acknowledgment.
    let reply = client.publish("room", &json!({"n": 8})).await.unwrap();
    assert_eq!(reply.offset, Some(8));
}

#[tokio::test]
async fn a_deliberate_disconnect_ends_it() {
    let (addr, handle) = server().await;
    let mut client = through(addr, "dan");
    client.join("room", None);
    // The join fails (no such channel): said, and not tried again.
    let seen = read_until(&mut client, |seen| {
        seen.iter()
            .any(|e| matches!(e, ClientEvent::JoinFailed { .. }))
    })
    .await;
    assert!(
        seen.iter().any(|e| matches!(
            e,
            ClientEvent::State {
                state: ConnectionState::Connected,
                ..
            }
        )),
        "{seen:?}"
    );
    handle
        .disconnect(Target::User("dan".into()), "go away")
        .await
        .unwrap();
    let seen = read_until(&mut client, |seen| {
        seen.iter().any(|e| {
            matches!(
                e,
                ClientEvent::State {
                    state: ConnectionState::Closed,
                    ..
                }
            )
        })
    })
    .await;
    assert!(format!("{seen:?}").contains("4009"), "{seen:?}");
    assert!(
        tokio::time::timeout(WAIT, client.next_event())
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        client.publish("room", &json!({})).await,
        Err(ws_channels::ClientError::Closed)
    ));
}

/// A server that takes every message and answers none.
struct Silent;

impl ws_tokio::Handler for Silent {
    async fn on_message(&mut self, _: &mut ws_tokio::Ctx, _: ws_tokio::Message) {}
}

#[tokio::test]
async fn a_command_without_a_reply_times_out() {
    let server = ws_tokio::server()
        .route("/channels", ws_tokio::Endpoint::new(|_| Silent))
        .build();
    let listener = ws_tokio::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener).await });
    let mut client = through(addr, "eve").with_command_timeout(Duration::from_millis(200));
    read_until(&mut client, |seen| {
        seen.iter().any(|e| {
            matches!(
                e,
                ClientEvent::State {
                    state: ConnectionState::Connected,
                    ..
                }
            )
        })
    })
    .await;
    let result = client.publish("room", &json!({})).await;
    assert!(
        matches!(result, Err(ws_channels::ClientError::TimedOut { after }) if after == Duration::from_millis(200)),
        "{result:?}"
    );
}

const JWT_SECRET: &[u8] = b"a-secret-of-at-least-thirty-two-bytes!!";

/// A JWT for `user` that ends `seconds` from now.
fn jwt(user: &str, seconds: u64) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + seconds;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": user, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET),
    )
    .unwrap()
}

/// Sessions that authenticate with JWTs, and end with them unless
/// refreshed.
async fn jwt_server() -> std::net::SocketAddr {
    use ws_tokio::auth::{BearerJwt, HeaderOrQuery};
    let channels = Channels::builder(ChannelsConfig::default())
        .refresh_tokens(BearerJwt::hs256(JWT_SECRET))
        .build();
    let endpoint = channels.endpoint().authenticator(HeaderOrQuery::new(
        BearerJwt::hs256(JWT_SECRET),
        "Bearer",
        "token",
    ));
    let server = ws_tokio::server().route("/channels", endpoint).build();
    let listener = ws_tokio::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener).await });
    addr
}

/// Tokens that last 3 s: a client that refreshes them stays on one
/// connection past several; one that does not is closed at each end
/// (4011) and comes back with a new token from `connect`.
#[tokio::test]
async fn a_client_refreshes_its_token_before_it_ends() {
    let addr = jwt_server().await;
    let connect = move || async move {
        let url = format!("ws://{addr}/channels?token={}", jwt("ann", 3));
        ws_tokio::connect(&url).await.map(|(socket, _)| socket)
    };
    let fetched = Arc::new(Mutex::new(0));
    let counter = fetched.clone();
    let mut refreshing = ReconnectingClient::new(TokioRuntime, ReconnectConfig::default(), connect)
        .with_token_refresh(move || {
            *counter.lock().unwrap() += 1;
            async { Some(jwt("ann", 3)) }
        });
    let seen = read_until(&mut refreshing, |seen| {
        seen.iter()
            .filter(|e| {
                matches!(
                    e,
                    ClientEvent::Other(ws_channels::protocol::Event::Expiring { .. })
                )
            })
            .count()
            == 3
    })
    .await;
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            ClientEvent::State {
                state: ConnectionState::Disconnected,
                ..
            }
        )),
        "one connection throughout: {seen:?}"
    );
    assert_eq!(*fetched.lock().unwrap(), 3);

    let plain = ReconnectConfig {
        min_delay: Duration::from_millis(50),
        ..ReconnectConfig::default()
    };
    let mut expiring = ReconnectingClient::new(TokioRuntime, plain, connect);
    let seen = read_until(&mut expiring, |seen| {
        seen.iter()
            .filter(|e| {
                matches!(
                    e,
                    ClientEvent::State {
                        state: ConnectionState::Connected,
                        ..
                    }
                )
            })
            .count()
            == 2
    })
    .await;
    assert!(
        seen.iter().any(|e| matches!(
            e,
            ClientEvent::State { state: ConnectionState::Disconnected, reason: Some(reason), .. }
                if reason.contains("4011")
        )),
        "{seen:?}"
    );
}

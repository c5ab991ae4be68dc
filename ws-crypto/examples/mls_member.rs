//! A member of an end-to-end encrypted (MLS) channel on a `ws serve` (or
//! any ws-channels) server, for trying the channels by hand and for the
//! browser interop test. It prints what happens, one line each (`ready`,
//! `joined EPOCH`, `epoch EPOCH +added -removed`, `message USER FINGERPRINT:
//! TEXT`, `removed`, `removal USER`, `out kicked|banned|closed`), answers
//! every message that is not an answer with `rust got: <message>`, commits
//! the server's removal proposals of others, and stops after answering
//! `bye`, when removed from the group or when put out of the channel.
//!
//! `create` makes the channel and adds whoever joins it; `join` publishes
//! key packages, joins, and says `hello from rust` once added.
//!
//! ```text
//! cargo run -p ws-crypto --example mls_member -- ws://127.0.0.1:9001/channels?user=rust room create
//! cargo run -p ws-crypto --example mls_member -- ws://127.0.0.1:9001/channels?user=bob room join
//! ```

use std::process::ExitCode;

use ws_channels::LeaveReason;
use ws_channels::protocol::Event;
use ws_crypto::mls::{Device, MlsClient, MlsEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, channel, mode] = args.as_slice() else {
        eprintln!("usage: mls_member WS_URL CHANNEL create|join");
        return ExitCode::from(2);
    };
    match run(url, channel, mode == "create").await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mls_member: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The user a `?user=` URL names.
fn user_of(url: &str) -> Option<&str> {
    url.split_once("user=")
        .map(|(_, rest)| rest.split('&').next().unwrap_or(rest))
}

async fn run(url: &str, channel: &str, create: bool) -> Result<(), Box<dyn std::error::Error>> {
    let user = user_of(url).ok_or("the URL names no ?user=")?;
    let (socket, _) = ws_tokio::connect(url).await?;
    let device = Device::new(user)?;
    println!("key {}", device.fingerprint());
    let mut client =
        MlsClient::new(ws_channels::ChannelsClient::new(socket), device).with_auto_add(create);
    client.publish_key_packages(5).await?;
    if create {
        client.create(channel, 100).await?;
    } else {
        client.join(channel).await?;
    }
    println!("ready");
    while let Some(event) = client.next_event().await {
        match event? {
            MlsEvent::Joined { epoch, .. } => {
                println!("joined {epoch}");
                client.send(channel, b"hello from rust").await?;
            }
            MlsEvent::Epoch {
                epoch,
                added,
                removed,
                ..
            } => println!("epoch {epoch} +{} -{}", added.join(","), removed.join(",")),
            MlsEvent::Message { from, data, .. } => {
                let text = String::from_utf8_lossy(&data).into_owned();
                println!("message {} {}: {text}", from.user, from.fingerprint);
                if !text.starts_with("rust got: ") {
                    client
                        .send(channel, format!("rust got: {text}").as_bytes())
                        .await?;
                }
                if text == "bye" {
                    return Ok(());
                }
            }
            MlsEvent::RemovalProposed { user: removed, .. } => {
                println!("removal {removed}");
                // Its own removal is for the others to commit (this
                // session is out of the channel already), and only members
                // the group's roles let commit do.
                if removed != user && client.roles(channel).contains_key(user) {
                    client.commit_pending(channel).await?;
                }
            }
            MlsEvent::Removed { .. } => {
                println!("removed");
                return Ok(());
            }
            MlsEvent::Admitted { user, .. } => println!("admitted {user}"),
            MlsEvent::AddFailed { users, error, .. } => {
                println!("add failed {}: {error}", users.join(","))
            }
            MlsEvent::Unreadable { error, .. } => println!("unreadable: {error}"),
            MlsEvent::Other(Event::Removed { reason, .. }) => {
                let why = match reason {
                    LeaveReason::Kicked => "kicked",
                    LeaveReason::Banned => "banned",
                    _ => "closed",
                };
                println!("out {why}");
                return Ok(());
            }
            _ => {}
        }
    }
    Ok(())
}

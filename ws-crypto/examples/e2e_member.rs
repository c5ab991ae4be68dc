//! A member of an end-to-end encrypted channel on a `ws serve` (or any
//! ws-channels) server, for trying the channels by hand and for the
//! browser interop test: it prints what it reads and answers every
//! message that is not an answer with `rust got: <message>`. It stops after
//! answering `bye`.
//!
//! ```text
//! cargo run -p ws-crypto --example e2e_member -- ws://127.0.0.1:9001/channels?user=rust room create
//! cargo run -p ws-crypto --example e2e_member -- ws://127.0.0.1:9001/channels?user=bob room join
//! ```

use std::process::ExitCode;

use ws_crypto::KeyPair;
use ws_crypto::client::{E2eClient, E2eEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, channel, mode] = args.as_slice() else {
        eprintln!("usage: e2e_member WS_URL CHANNEL create|join");
        return ExitCode::from(2);
    };
    match run(url, channel, mode == "create").await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("e2e_member: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str, channel: &str, create: bool) -> Result<(), Box<dyn std::error::Error>> {
    let (socket, _) = ws_tokio::connect(url).await?;
    let mut client = E2eClient::new(socket, KeyPair::generate());
    println!("key {}", client.public_key().fingerprint());
    if create {
        client.create(channel, 50).await?;
    } else {
        client.join(channel).await?;
    }
    println!("ready");
    while let Some(event) = client.next_event().await {
        match event? {
            E2eEvent::Keys { epoch, .. } => {
                println!("keys {epoch}");
                if !create && epoch == 1 {
                    client.publish(channel, b"hello from rust").await?;
                }
            }
            E2eEvent::Joined { user, granted, .. } => {
                println!("joined {} granted={granted}", user.unwrap_or_default());
            }
            E2eEvent::Message {
                user, plaintext, ..
            } => {
                let text = String::from_utf8_lossy(&plaintext).into_owned();
                println!("message {}: {text}", user.unwrap_or_default());
                let ours = text.starts_with("rust got: ") || text == "hello from rust";
                if !ours {
                    client
                        .publish(channel, format!("rust got: {text}").as_bytes())
                        .await?;
                }
                if text == "bye" {
                    return Ok(());
                }
            }
            E2eEvent::Refused { error, .. } => println!("refused {error}"),
            E2eEvent::Removed { reason, .. } => {
                println!("removed {reason}");
                return Ok(());
            }
            E2eEvent::Left { .. } | E2eEvent::Other(_) => {}
        }
    }
    Ok(())
}

//! The Autobahn TestSuite client testee, written once for every adapter:
//! runs every case of a `wstest -m fuzzingserver`, echoing what the server
//! sends. Each adapter's `autobahn_client` binary includes it with a `rt`
//! module naming the adapter (`rt::ws`).

use crate::rt::ws;
use ws::ws_core::deflate::DeflateConfig;
use ws::{ClientConfig, Message};

const MAX_MESSAGE: usize = 16 << 20;

fn config() -> ClientConfig {
    let mut config = ClientConfig::default();
    // Section 9 sends 16 MiB messages and 4 MiB in 64-byte fragments.
    config.connection = config.connection.with_max_message_size(MAX_MESSAGE);
    config.connection.max_fragments = 100_000;
    config.send_queue = MAX_MESSAGE;
    // Sections 12 and 13 need permessage-deflate; the other cases decline
    // the offer.
    config.deflate = Some(DeflateConfig::default());
    config
}

async fn text_of(url: &str) -> Result<String, Box<dyn std::error::Error>> {
    let (mut socket, _) = ws::client(url)?.config(config()).connect().await?;
    match socket.recv().await {
        Some(Ok(Message::Text(text))) => Ok(text.to_string()),
        other => Err(format!("unexpected {other:?}").into()),
    }
}

async fn run_case(base: &str, case: usize, agent: &str) -> Result<(), Box<dyn std::error::Error>> {
    let url = format!("{base}/runCase?case={case}&agent={agent}");
    let (mut socket, _) = ws::client(&url)?.config(config()).connect().await?;
    while let Some(item) = socket.recv().await {
        let Ok(message) = item else { break };
        if socket.send(message).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Runs every case against `ARGS[1]` as agent `ARGS[2]`.
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let agent = args.next().unwrap_or_else(|| "ws-async".into());
    let count: usize = text_of(&format!("{base}/getCaseCount")).await?.parse()?;
    println!("running {count} cases as {agent}");
    for case in 1..=count {
        if let Err(error) = run_case(&base, case, &agent).await {
            eprintln!("case {case}: {error}");
        }
    }
    // The suite records a case when the server sees the TCP connection
    // end, which comes after our socket has reported the close handshake
    // (the client lets the server close first). Give the last case that
    // moment, or the report can miss it. This thread only waits here; the
    // connection tasks run elsewhere.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (mut socket, _) = ws::client(format!("{base}/updateReports?agent={agent}"))?
        .connect()
        .await?;
    while socket.recv().await.is_some() {}
    println!("reports updated");
    Ok(())
}

//! `ws connect`: a WebSocket client for debugging. Lines from stdin go out
//! as text messages, messages that arrive are printed, one per line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use base64::Engine as _;
use clap::Args;
use http::{HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use ws_core::{CloseCode, Message};
use ws_tokio::{ConnectError, WebSocket};

use crate::ctl::status;

const CONNECT_HELP: &str = "\
Each line read from stdin is sent as a text message; each message received is
printed on a line of its own (binary ones as <binary N bytes: HEX>). At the
end of stdin the connection is closed with 1000 and `ws connect` waits for
the server's answer.

With --json, lines must be JSON (a line that is not is reported and not
sent) and messages are printed as JSON: text that is JSON as it is, other
text as {\"text\": ...}, binary as {\"binary\": BASE64}.

Exit status: 0 closed normally (1000 or 1001), 1 closed with another code
or refused, 3 server unreachable, 4 refused with 401 or 403.";

/// `ws connect` and its options.
#[derive(Debug, Args)]
#[command(after_help = CONNECT_HELP)]
pub(crate) struct ConnectArgs {
    /// ws:// or wss:// URL.
    url: String,
    /// A request header, `Name: value`; repeat for several.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A subprotocol to offer; repeat for several.
    #[arg(long = "protocol", short = 'p', value_name = "NAME")]
    protocols: Vec<String>,
    /// Trust only this CA certificate (PEM) for wss://, instead of the
    /// Mozilla roots.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Send and print JSON (envelopes).
    #[arg(long)]
    json: bool,
}

pub(crate) fn main(args: ConnectArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ws connect: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    ExitCode::from(runtime.block_on(run(args)))
}

async fn run(args: ConnectArgs) -> u8 {
    let mut client = match ws_tokio::client(args.url.as_str()) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("ws connect: {}", chain(&error));
            return status::USAGE;
        }
    };
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            eprintln!("ws connect: --header {header:?} is not `Name: value`");
            return status::USAGE;
        };
        match (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            (Ok(name), Ok(value)) => client = client.header(name, value),
            _ => {
                eprintln!("ws connect: --header {name:?} is not a valid header");
                return status::USAGE;
            }
        }
    }
    for protocol in &args.protocols {
        client = client.subprotocol(protocol.clone());
    }
    if let Some(path) = &args.ca {
        match roots(path) {
            Ok(roots) => client = client.tls_config(ws_async::tls::client_config(roots)),
            Err(message) => {
                eprintln!("ws connect: {message}");
                return status::USAGE;
            }
        }
    }
    let (socket, response) = match client.connect().await {
        Ok(connected) => connected,
        Err(error) => {
            eprintln!("ws connect: {}", chain(&error));
            // The server's own explanation of a refusal (a bad token, a
            // full server), as it wrote it.
            if let ConnectError::Handshake(ws_core::handshake::ResponseError::Status {
                body, ..
            }) = &error
            {
                let explained = String::from_utf8_lossy(body);
                let explained = explained.trim();
                if !explained.is_empty() {
                    eprintln!("ws connect: the server says: {explained}");
                }
            }
            return match &error {
                ConnectError::Connect { .. } => status::UNREACHABLE,
                ConnectError::Handshake(ws_core::handshake::ResponseError::Status {
                    status: code,
                    ..
                }) if matches!(code.as_u16(), 401 | 403) => status::UNAUTHORIZED,
                _ => status::FAILED,
            };
        }
    };
    if let Some(protocol) = response.headers().get("sec-websocket-protocol") {
        eprintln!(
            "ws connect: connected (subprotocol {})",
            protocol.to_str().unwrap_or("?")
        );
    } else {
        eprintln!("ws connect: connected");
    }
    exchange(socket, args.json).await
}

/// Sends stdin's lines and prints what arrives, until the connection ends.
async fn exchange(socket: WebSocket, json: bool) -> u8 {
    let (sender, mut receiver) = socket.split();
    let sender = Arc::new(sender);
    let writer = {
        let sender = sender.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let text = if json {
                    match serde_json::from_str::<Value>(&line) {
                        Ok(value) => value.to_string(),
                        Err(error) => {
                            eprintln!("ws connect: not sent, not JSON: {error}");
                            continue;
                        }
                    }
                } else {
                    line
                };
                if sender.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
            // End of input: close, then the reader sees the answer.
            let _ = sender.close(CloseCode::NORMAL, "").await;
        })
    };
    let mut stdout = tokio::io::stdout();
    while let Some(item) = receiver.recv().await {
        let Ok(message) = item else { break };
        let mut line = printable(&message, json);
        line.push('\n');
        if stdout.write_all(line.as_bytes()).await.is_err() {
            break;
        }
        let _ = stdout.flush().await;
    }
    writer.abort();
    let closed = receiver.closed().cloned();
    match closed {
        Some(closed) if matches!(closed.code.as_u16(), 1000 | 1001) => {
            eprintln!(
                "ws connect: closed {} {}",
                closed.code.as_u16(),
                closed.reason
            );
            status::OK
        }
        Some(closed) => {
            eprintln!(
                "ws connect: closed {} {}",
                closed.code.as_u16(),
                closed.reason
            );
            status::FAILED
        }
        None => status::FAILED,
    }
}

fn printable(message: &Message, json: bool) -> String {
    match (message, json) {
        (Message::Text(text), false) => text.as_str().to_owned(),
        (Message::Binary(data), false) => {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            format!("<binary {} bytes: {hex}>", data.len())
        }
        (Message::Text(text), true) => match serde_json::from_str::<Value>(text.as_str()) {
            Ok(value) => value.to_string(),
            Err(_) => json!({ "text": text.as_str() }).to_string(),
        },
        (Message::Binary(data), true) => {
            json!({ "binary": base64::engine::general_purpose::STANDARD.encode(data) }).to_string()
        }
    }
}

/// An error and its causes, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text += &format!(": {cause}");
        source = cause.source();
    }
    text
}

fn roots(path: &std::path::Path) -> Result<rustls::RootCertStore, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path)
        .map_err(|error| format!("cannot read --ca {}: {error}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|error| format!("--ca {}: {error}", path.display()))?;
        roots
            .add(cert)
            .map_err(|error| format!("--ca {}: {error}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("--ca {} holds no certificate", path.display()));
    }
    Ok(roots)
}

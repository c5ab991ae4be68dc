//! The echo testee's command line, shared by every adapter:
//! `[ADDR] [--max-message BYTES] [--max-fragments N] [--deflate]`, the
//! address defaulting to `$WS_ADDR` or `127.0.0.1:9001`.

use ws_async::ServerConfig;
use ws_async::ws_core::deflate::DeflateConfig;

/// The parsed command line.
pub struct Args {
    /// Where to listen.
    pub addr: String,
    max_message: Option<usize>,
    max_fragments: Option<usize>,
    deflate: bool,
}

/// Parses the process's arguments; `Err` carries the usage or the fault.
pub fn parse() -> Result<Args, String> {
    let mut args = Args {
        addr: std::env::var("WS_ADDR").unwrap_or_else(|_| "127.0.0.1:9001".into()),
        max_message: None,
        max_fragments: None,
        deflate: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--max-message" => args.max_message = Some(number("--max-message")?),
            "--max-fragments" => args.max_fragments = Some(number("--max-fragments")?),
            "--deflate" => args.deflate = true,
            "-h" | "--help" => {
                return Err(
                    "usage: echo [ADDR] [--max-message BYTES] [--max-fragments N] [--deflate]"
                        .into(),
                );
            }
            addr if !addr.starts_with('-') => args.addr = addr.to_owned(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

impl Args {
    /// Server defaults with the message and fragment limits raised as asked
    /// (the Autobahn suite sends 16 MiB messages and 100k fragments), and
    /// permessage-deflate on with its defaults under `--deflate`.
    pub fn server_config(&self) -> ServerConfig {
        let mut config = ServerConfig::default();
        if let Some(max) = self.max_message {
            config.connection = config.connection.with_max_message_size(max);
            config.send_queue = config.send_queue.max(max);
        }
        if let Some(max) = self.max_fragments {
            config.connection.max_fragments = max;
        }
        if self.deflate {
            config.deflate = Some(DeflateConfig::default());
        }
        config
    }
}

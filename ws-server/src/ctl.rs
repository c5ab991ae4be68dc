//! `ws ctl`: the admin API from a shell or a script.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Exit statuses of `ws ctl` (and `ws connect`), for scripts.
pub(crate) mod status {
    /// The server did what was asked.
    pub(crate) const OK: u8 = 0;
    /// The server refused the request as wrong (400, 409, 429) or failed (5xx
    /// other than 503).
    pub(crate) const FAILED: u8 = 1;
    /// The command line was wrong (clap uses 2 as well).
    pub(crate) const USAGE: u8 = 2;
    /// The server could not be reached.
    pub(crate) const UNREACHABLE: u8 = 3;
    /// The admin token was missing or wrong, or the admin API is off.
    pub(crate) const UNAUTHORIZED: u8 = 4;
    /// No such channel, member or connection.
    pub(crate) const NOT_FOUND: u8 = 5;
    /// The server cannot reach its channel backend (503).
    pub(crate) const UNAVAILABLE: u8 = 6;
}

const CTL_HELP: &str = "\
Exit status: 0 done, 1 refused or failed, 2 bad command line, 3 server
unreachable, 4 admin token missing or wrong (or the admin API is off),
5 no such channel, member or connection, 6 the server's backend is down.

DATA arguments are JSON when they parse as JSON (`{\"text\":\"hi\"}`, `42`),
and a string otherwise (`hello`).";

/// `ws ctl` and its options.
#[derive(Debug, Args)]
#[command(after_help = CTL_HELP)]
pub(crate) struct CtlArgs {
    /// The server's base URL (http:// or https://).
    #[arg(
        long,
        short,
        env = "WS_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// The admin token the server was started with.
    #[arg(long, env = "WS_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the server's JSON answer instead of text.
    #[arg(long)]
    json: bool,
    /// Trust only this CA certificate (PEM) for https://, instead of the
    /// Mozilla roots.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Connections, sessions, channels and subscriptions on the server.
    Stats,
    /// The server's WebSocket connections.
    Connections,
    /// Channels, with their member counts.
    Channels {
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Who is in a channel.
    Presence {
        channel: String,
        /// At most this many members.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Removes a user (every session) or one session from a channel.
    Kick {
        channel: String,
        /// The user to remove.
        #[arg(required_unless_present = "session")]
        user: Option<String>,
        /// Remove only this session (16 hex digits) instead.
        #[arg(long, conflicts_with = "user")]
        session: Option<String>,
    },
    /// Bans a user from a channel, removing its sessions.
    Ban {
        channel: String,
        user: String,
        /// For this many seconds (else until unbanned).
        #[arg(long = "for", value_name = "SECONDS")]
        duration: Option<u64>,
    },
    /// Lifts a ban.
    Unban { channel: String, user: String },
    /// Publishes DATA to a channel as the server.
    Publish { channel: String, data: String },
    /// Sends DATA to every connection as a `notice` event.
    Broadcast { data: String },
    /// Closes a connection (by id) or every connection of a user with 4009.
    Disconnect {
        /// The connection's id (16 hex digits, from `ws ctl connections`).
        #[arg(required_unless_present = "user")]
        connection: Option<String>,
        /// Every connection of this user, on every node.
        #[arg(long, conflicts_with = "connection")]
        user: Option<String>,
        /// The close reason the client sees.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Whether the TLS handshake failed (rustls refused what the server sent,
/// as it does when the server speaks plain HTTP).
fn is_tls_failure(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) => true,
        ureq::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    }
}

/// Whether `base` is an `http://` or `https://` URL with a host and no
/// path (the admin API is under `/admin/` of it).
fn check_server_url(base: &str) -> Result<(), String> {
    let uri: http::Uri = base
        .parse()
        .map_err(|_| "not a URL like http://127.0.0.1:8080".to_owned())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("give the scheme: http://HOST:PORT or https://HOST:PORT".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("no host in it: http://HOST:PORT".into());
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("the server's base URL has no path: http://HOST:PORT".into());
    }
    Ok(())
}

/// DATA as JSON when it parses, else as a string.
fn data(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

pub(crate) fn main(args: CtlArgs) -> ExitCode {
    let agent = match agent(args.ca.as_deref()) {
        Ok(agent) => agent,
        Err(message) => {
            eprintln!("ws ctl: {message}");
            return ExitCode::from(status::USAGE);
        }
    };
    let base = args.server.trim_end_matches('/');
    if let Err(message) = check_server_url(base) {
        eprintln!("ws ctl: --server {base:?}: {message}");
        return ExitCode::from(status::USAGE);
    }
    let (method, path, body) = request(&args.command);
    let url = format!("{base}/admin/{path}");
    let mut call = match method {
        "GET" => agent.get(&url).force_send_body(),
        _ => agent.post(&url),
    };
    if let Some(token) = &args.token {
        call = call.header("Authorization", &format!("Bearer {token}"));
    }
    let result = match body {
        Some(body) => call.send_json(&body),
        None => call.send_empty(),
    };
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            eprintln!("ws ctl: cannot reach {base}: {error}");
            if base.starts_with("https://") && is_tls_failure(&error) {
                eprintln!(
                    "ws ctl: the TLS handshake failed: if the server does not use TLS, try {}",
                    base.replacen("https://", "http://", 1)
                );
            }
            return ExitCode::from(status::UNREACHABLE);
        }
    };
    let http_status = response.status().as_u16();
    let answer: Value = match response.body_mut().read_json() {
        Ok(answer) => answer,
        Err(error) => {
            eprintln!(
                "ws ctl: {base} answered {http_status} without JSON ({error}): is it `ws serve`?"
            );
            return ExitCode::from(status::FAILED);
        }
    };
    if !(200..300).contains(&http_status) {
        let message = answer["message"].as_str().unwrap_or("no message");
        if args.json {
            println!("{answer}");
        }
        eprintln!("ws ctl: {message} ({http_status})");
        return ExitCode::from(match http_status {
            401 | 403 => status::UNAUTHORIZED,
            404 => status::NOT_FOUND,
            503 => status::UNAVAILABLE,
            _ => status::FAILED,
        });
    }
    if args.json {
        println!("{answer}");
    } else {
        print!("{}", human(&args.command, &answer));
    }
    ExitCode::from(status::OK)
}

/// The method, path under `/admin/` and body of `command`.
fn request(command: &CtlCommand) -> (&'static str, String, Option<Value>) {
    let encode =
        |value: &str| form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
    match command {
        CtlCommand::Stats => ("GET", "stats".into(), None),
        CtlCommand::Connections => ("GET", "connections".into(), None),
        CtlCommand::Channels { limit } => ("GET", format!("channels?limit={limit}"), None),
        CtlCommand::Presence { channel, limit } => (
            "GET",
            format!("presence?channel={}&limit={limit}", encode(channel)),
            None,
        ),
        CtlCommand::Kick {
            channel,
            user,
            session,
        } => (
            "POST",
            "kick".into(),
            Some(match (user, session) {
                (_, Some(session)) => json!({ "channel": channel, "session": session }),
                (user, None) => json!({ "channel": channel, "user": user }),
            }),
        ),
        CtlCommand::Ban {
            channel,
            user,
            duration,
        } => (
            "POST",
            "ban".into(),
            Some(json!({ "channel": channel, "user": user, "duration": duration })),
        ),
        CtlCommand::Unban { channel, user } => (
            "POST",
            "unban".into(),
            Some(json!({ "channel": channel, "user": user })),
        ),
        CtlCommand::Publish {
            channel,
            data: text,
        } => (
            "POST",
            "publish".into(),
            Some(json!({ "channel": channel, "data": data(text) })),
        ),
        CtlCommand::Broadcast { data: text } => (
            "POST",
            "broadcast".into(),
            Some(json!({ "data": data(text) })),
        ),
        CtlCommand::Disconnect {
            connection,
            user,
            reason,
        } => (
            "POST",
            "disconnect".into(),
            Some(match (connection, user) {
                (_, Some(user)) => json!({ "user": user, "reason": reason }),
                (connection, None) => json!({ "connection": connection, "reason": reason }),
            }),
        ),
    }
}

/// The answer for a person: a table or a one-line confirmation.
fn human(command: &CtlCommand, answer: &Value) -> String {
    let text = |value: &Value| match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let mut out = String::new();
    match command {
        CtlCommand::Stats => {
            for key in ["connections", "sessions", "channels", "subscriptions"] {
                out += &format!("{key:<14} {}\n", text(&answer[key]));
            }
        }
        CtlCommand::Connections => {
            out += &format!("{:<17} {:<22} {:<10} {}\n", "ID", "PEER", "PATH", "USER");
            for c in answer["connections"].as_array().into_iter().flatten() {
                out += &format!(
                    "{:<17} {:<22} {:<10} {}\n",
                    text(&c["id"]),
                    text(&c["peer"]),
                    text(&c["path"]),
                    text(&c["user"])
                );
            }
            out += &format!("{} connections\n", text(&answer["total"]));
        }
        CtlCommand::Channels { .. } => {
            out += &format!("{:<32} {:>8} {:>8}\n", "CHANNEL", "MEMBERS", "HISTORY");
            for c in answer["channels"].as_array().into_iter().flatten() {
                out += &format!(
                    "{:<32} {:>8} {:>8}\n",
                    text(&c["name"]),
                    text(&c["members"]),
                    text(&c["options"]["history_size"])
                );
            }
        }
        CtlCommand::Presence { .. } => {
            out += &format!("{:<17} {:<20} {}\n", "SESSION", "USER", "ROLE");
            for m in answer["members"].as_array().into_iter().flatten() {
                out += &format!(
                    "{:<17} {:<20} {}\n",
                    text(&m["session"]),
                    text(&m["user"]),
                    text(&m["role"])
                );
            }
            out += &format!("{} members\n", text(&answer["total"]));
        }
        CtlCommand::Publish { .. } => match answer.get("offset") {
            Some(offset) => out += &format!("published at offset {offset}\n"),
            None => out += "published\n",
        },
        CtlCommand::Broadcast { .. } => {
            out += &format!(
                "sent to {} connections ({} too slow)\n",
                text(&answer["delivered"]),
                text(&answer["dropped"])
            );
        }
        CtlCommand::Kick { .. }
        | CtlCommand::Ban { .. }
        | CtlCommand::Unban { .. }
        | CtlCommand::Disconnect { .. } => out += "done\n",
    }
    out
}

/// An HTTP agent that reads error answers as answers, trusting only `ca`
/// when given (else the Mozilla roots).
fn agent(ca: Option<&std::path::Path>) -> Result<ureq::Agent, String> {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(path) = ca {
        let pem = std::fs::read(path)
            .map_err(|error| format!("cannot read --ca {}: {error}", path.display()))?;
        let certs = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("--ca {}: {error}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("--ca {} holds no certificate", path.display()));
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .tls_config(tls.build())
        .build();
    Ok(config.into())
}

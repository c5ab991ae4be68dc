//! `ws serve`'s settings: a TOML file, environment variables and flags,
//! merged in that order of strength (a flag beats the environment, which
//! beats the file), then checked as a whole before anything starts.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use ws_async::auth::{BearerJwt, KeyAuth};
use ws_channels::ChannelsConfig;

/// What `ws serve` logs when told nothing: its own events, and every
/// connection opened and closed (the library logs those at debug level
/// under a target of their own).
const DEFAULT_LOG: &str = "info,ws_async::connections=debug";

/// Where `ws serve` listens when told nothing.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Flags of `ws serve`; each also reads the environment variable it names.
/// `ws serve`'s settings, declared once: the flags (with their
/// environment variables) and the settings file, whose keys are the flags'
/// long names with `_` for `-` (and a `[channels]` table for
/// `--channel`). A flag or variable beats the file.
#[derive(Debug, Default, Args, Serialize, Deserialize)]
#[command(after_help = SERVE_HELP)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ServeArgs {
    /// A TOML file of settings (the flags' long names, `_` for `-`, as
    /// keys); flags and environment variables override it.
    #[arg(long, short, env = "WS_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on, IPv4 or IPv6 (`[::1]:8080`); repeat or separate
    /// with commas for several. Port 0 picks a free port.
    /// [default: 127.0.0.1:8080]
    #[arg(long, env = "WS_LISTEN", value_delimiter = ',', value_name = "ADDR")]
    listen: Vec<String>,
    /// TLS certificate chain (PEM); with --tls-key, serves https:// and
    /// wss:// instead of http:// and ws://.
    #[arg(long, env = "WS_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for --tls-cert.
    #[arg(long, env = "WS_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Authenticate clients with HS256 JWTs signed with this secret (the
    /// user is the `sub` claim), sent as `Authorization: Bearer` or, from
    /// browsers, `?token=`. Tokens need `exp` and a string `sub`; `nbf` is
    /// checked when present.
    #[arg(
        long,
        env = "WS_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    jwt_secret: Option<String>,
    /// Authenticate clients with JWTs signed by an identity provider whose
    /// public key (PEM: RSA, ECDSA P-256/P-384 or Ed25519) is in this file.
    #[arg(long, env = "WS_JWT_PUBLIC_KEY", value_name = "FILE")]
    jwt_public_key: Option<PathBuf>,
    /// Authenticate clients with JWTs signed by any key of this JSON Web
    /// Key Set file (an identity provider's `jwks_uri` document); the
    /// token's `kid` picks the key.
    #[arg(long, env = "WS_JWT_JWKS", value_name = "FILE")]
    jwt_jwks: Option<PathBuf>,
    /// With JWTs: tokens must name one of these audiences (`aud`); repeat
    /// or separate with commas. [default: tokens must carry no `aud`]
    #[arg(
        long,
        env = "WS_JWT_AUDIENCE",
        value_delimiter = ',',
        value_name = "AUD"
    )]
    jwt_audience: Vec<String>,
    /// With JWTs: tokens must come from one of these issuers (`iss`);
    /// repeat or separate with commas. [default: any issuer]
    #[arg(long, env = "WS_JWT_ISSUER", value_delimiter = ',', value_name = "ISS")]
    jwt_issuer: Vec<String>,
    /// Let clients name themselves with `?user=` (no JWT or key configured)
    /// even on an address other than loopback, where anyone who reaches the
    /// server can be anyone: for a trial on a private network only.
    #[arg(long, env = "WS_INSECURE_NAMES")]
    insecure_names: bool,
    /// A host name clients reach this server by (`chat.example.com`, or
    /// with a port to allow only that one); repeat or separate with commas.
    /// Requests naming another host in `Host` get 421, which stops pages
    /// on other names pointed at this server (DNS rebinding). [default: IP
    /// addresses and localhost only]
    #[arg(
        long,
        env = "WS_PUBLIC_HOST",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    public_host: Vec<String>,
    /// Authenticate clients with API keys: a file of `user key` lines
    /// (`#` starts a comment), sent as `Authorization: Key` or `?token=`.
    #[arg(long, env = "WS_KEYS_FILE", value_name = "FILE")]
    keys_file: Option<PathBuf>,
    /// The bearer token of the admin API (`/admin/...`, used by `ws ctl`).
    /// Without one the admin API answers 403.
    #[arg(
        long,
        env = "WS_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    admin_token: Option<String>,
    /// Serve the admin API on these addresses (and only there) instead of
    /// the main ones; repeat or separate with commas. Without TLS they must
    /// be loopback addresses. [default: the main addresses, answering only
    /// over loopback unless TLS is on]
    #[arg(
        long,
        env = "WS_ADMIN_LISTEN",
        value_delimiter = ',',
        value_name = "ADDR"
    )]
    admin_listen: Vec<String>,
    /// Where `/metrics` answers: `main` (every main address), `admin`
    /// (where the admin API answers, without the token) or `off`.
    /// [default: main]
    #[arg(long, env = "WS_METRICS", value_name = "WHERE")]
    metrics: Option<MetricsAt>,
    /// Web origins allowed to open WebSockets (`https://app.example.com`);
    /// repeat or separate with commas. [default: the page's own origin]
    #[arg(long, env = "WS_ORIGINS", value_delimiter = ',', value_name = "ORIGIN")]
    origins: Vec<String>,
    /// Most WebSocket connections at once; more get 503. [default: 10000]
    #[arg(long, env = "WS_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// Most WebSocket connections from one client address (IPv6: one /64);
    /// more get 429. Behind a proxy every client has the proxy's address:
    /// raise it to --max-connections there. [default: 256]
    #[arg(long, env = "WS_MAX_CONNECTIONS_PER_ADDRESS", value_name = "N")]
    max_connections_per_address: Option<usize>,
    /// Most WebSocket connections of one user (its JWT `sub` or key's
    /// name); more get 429. [default: 32]
    #[arg(long, env = "WS_MAX_CONNECTIONS_PER_USER", value_name = "N")]
    max_connections_per_user: Option<usize>,
    /// Most channels one user may have created that still exist (a channel
    /// lasts while it has members and 5 minutes after); more creates get
    /// `limit`. The channels setting `max_channels_per_user`: its default
    /// is in `--channel help`.
    #[arg(long, env = "WS_MAX_CHANNELS_PER_USER", value_name = "N")]
    max_channels_per_user: Option<usize>,
    /// Largest message a client may send, in bytes; larger closes with
    /// 1009. Room for an end-to-end group's commit with its Welcome
    /// (177 KB for a group of 1,000). [default: 1048576]
    #[arg(long, env = "WS_MAX_MESSAGE_SIZE", value_name = "BYTES")]
    max_message_size: Option<usize>,
    /// Seconds a connection may stay silent (pings answered count) before
    /// it is closed; 0 for never. [default: 60]
    #[arg(long, env = "WS_IDLE_TIMEOUT", value_name = "SECONDS")]
    idle_timeout: Option<u64>,
    /// Commands a second each client may send (channels commands:
    /// publish, join...); a client sending faster is slowed down, never
    /// refused. 0 for no limit. The channels setting `command_rate`: its
    /// default is in `--channel help`.
    #[arg(long, env = "WS_COMMAND_RATE", value_name = "PER_SECOND")]
    command_rate: Option<u64>,
    /// Commands a client may send at once above the rate (the channels
    /// setting `command_burst`; its default is in `--channel help`).
    #[arg(long, env = "WS_COMMAND_BURST", value_name = "N")]
    command_burst: Option<u64>,
    /// Channel backend: `memory` (this process), or for a cluster of `ws
    /// serve` processes sharing channels `redis://[user:password@]host:port`
    /// (`rediss://` with TLS) or `nats://[user:password@]host:port`
    /// (JetStream; `tls://` with TLS). [default: memory]
    #[arg(long, env = "WS_BACKEND", value_name = "URL")]
    backend: Option<String>,
    /// The secret the nodes of a cluster share (32 bytes or more): it
    /// signs their control messages (kicks, bans, roles, disconnects), so
    /// nobody else who can publish on the broker can forge them. Needed
    /// with a Redis or NATS backend.
    #[arg(
        long,
        env = "WS_CLUSTER_KEY",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    cluster_key: Option<String>,
    /// The prefix of every key, channel, subject, stream and bucket on the
    /// broker, so deployments can share one. [default: ws]
    #[arg(long, env = "WS_BACKEND_PREFIX", value_name = "PREFIX")]
    backend_prefix: Option<String>,
    /// A CA certificate (PEM) to trust for the broker's TLS (`rediss://`,
    /// `tls://`) instead of the system's or Mozilla's roots.
    #[arg(long, env = "WS_BACKEND_CA", value_name = "FILE")]
    backend_ca: Option<PathBuf>,
    /// Any channels setting (a field of ws-channels' `ChannelsConfig`) as
    /// KEY=VALUE, the value in TOML (`max_participants=50`,
    /// `slow_subscriber=mark_lost`, `topics={alerts="everyone"}`); repeat
    /// for several. It overrides the settings file's `[channels]` table.
    /// `--channel help` lists every key with its default.
    #[arg(
        long = "channel",
        env = "WS_CHANNEL",
        value_delimiter = ';',
        value_name = "KEY=VALUE"
    )]
    #[serde(skip)]
    pub(crate) channel: Vec<String>,
    /// The settings file's `[channels]` table (`--channel` in the file).
    #[arg(skip)]
    channels: Option<toml::Table>,
    /// Bytes of history (publications, about their JSON) one channel keeps
    /// at most, the oldest going first (the channels setting
    /// `max_history_bytes`; its default is in `--channel help`).
    #[arg(long, env = "WS_HISTORY_BYTES_PER_CHANNEL", value_name = "BYTES")]
    history_bytes_per_channel: Option<u64>,
    /// Bytes of history all channels keep together: in this process with
    /// the memory backend (the oldest publication of all goes first), in
    /// the history stream with NATS. With Redis, bound Redis itself
    /// (`maxmemory`). [default: 67108864 in memory, 1073741824 on NATS]
    #[arg(long, env = "WS_HISTORY_BYTES", value_name = "BYTES")]
    history_bytes: Option<u64>,
    /// Worker threads. [default: the number of CPUs]
    #[arg(long, env = "WS_WORKERS", value_name = "N")]
    workers: Option<usize>,
    /// Seconds a client gets for the TLS handshake and for each HTTP
    /// request head (a WebSocket upgrade included, with its
    /// authentication) before its connection is dropped. [default: 10]
    #[arg(long, env = "WS_HANDSHAKE_TIMEOUT", value_name = "SECONDS")]
    handshake_timeout: Option<u64>,
    /// Seconds connections get to close after SIGINT or SIGTERM before
    /// they are dropped. [default: 10]
    #[arg(long, env = "WS_SHUTDOWN_GRACE", value_name = "SECONDS")]
    shutdown_grace: Option<u64>,
    /// Log filter, as `RUST_LOG` takes it (`warn`, `info,ws_async=debug`).
    /// [default: info,ws_async::connections=debug: also every connection
    /// opened and closed, with its id, peer address, route and user]
    #[arg(long, env = "WS_LOG", value_name = "FILTER")]
    log: Option<String>,
    /// Log lines as text or as JSON objects. [default: text]
    #[arg(long, env = "WS_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

const SERVE_HELP: &str = "\
Serves, on every address: the page at /, channels at /channels (WebSocket),
the admin API at /admin/ (for `ws ctl`), Prometheus metrics at /metrics.

Without --jwt-secret, --jwt-public-key, --jwt-jwks or --keys-file, clients
name themselves with ?user=NAME: anyone can be anyone. That is for trying it
out on loopback; on any other address it needs --insecure-names.

Exit status: 0 after a clean shutdown, 2 for bad settings (the message names
the setting), 1 when serving failed (an address in use, say).";

/// Where `/metrics` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MetricsAt {
    /// On every main address.
    Main,
    /// Where the admin API answers.
    Admin,
    /// Nowhere.
    Off,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// How clients prove who they are.
#[derive(Clone)]
pub(crate) enum Auth {
    /// Clients name themselves (`?user=`): for trying things out.
    Open,
    /// JWTs, checked as configured; `what` says which keys, for the log.
    Jwt {
        verifier: BearerJwt,
        what: &'static str,
    },
    /// API keys, kept as digests.
    Keys(KeyAuth),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret or the keys.
        match self {
            Self::Open => f.write_str("Open"),
            Self::Jwt { what, .. } => write!(f, "Jwt({what})"),
            Self::Keys(keys) => write!(f, "{keys:?}"),
        }
    }
}

/// Everything `ws serve` runs with, checked.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) listen: Vec<SocketAddr>,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) auth: Auth,
    /// Names besides IP addresses and localhost that `Host` may carry.
    pub(crate) public_hosts: Vec<String>,
    /// The admin token, kept as a digest; `None`: the admin API is off.
    pub(crate) admin: Option<KeyAuth>,
    pub(crate) admin_listen: Vec<SocketAddr>,
    pub(crate) metrics: MetricsAt,
    pub(crate) origins: Vec<String>,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_address: usize,
    pub(crate) max_connections_per_user: usize,
    pub(crate) max_message_size: usize,
    pub(crate) idle_timeout: Option<Duration>,
    /// The channels' limits and options.
    pub(crate) channels: ChannelsConfig,
    pub(crate) backend: BackendSettings,
    pub(crate) workers: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) shutdown_grace: Duration,
    pub(crate) log: String,
    pub(crate) log_format: LogFormat,
}

/// Where channels are shared, and how to reach it.
#[derive(Debug)]
pub(crate) struct BackendSettings {
    /// `memory`, or the broker's URL.
    pub(crate) url: String,
    /// The cluster's key; `Some` for every broker. (Read only by the
    /// cluster backends, which a build may leave out.)
    #[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
    pub(crate) cluster_key: Option<ws_channels::backend::ClusterKey>,
    pub(crate) prefix: String,
    /// The broker's CA certificate file.
    #[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
    pub(crate) ca: Option<PathBuf>,
    /// All channels' history budget, if set.
    pub(crate) history_bytes: Option<u64>,
}

/// A setting that cannot be used, named.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SettingsError {
    #[error("cannot read the settings file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the settings file {path} is not valid: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("`{setting}`: {value:?} is not an address like 127.0.0.1:8080 or [::1]:8080")]
    Address {
        setting: &'static str,
        value: String,
    },
    #[error("`{setting}`: cannot read {path}: {source}")]
    ReadSetting {
        setting: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{setting}`: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

fn invalid(setting: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        setting,
        message: message.into(),
    }
}

impl Settings {
    /// Merges the file named by `--config` (if any) under the flags and
    /// environment, then checks and loads everything (certificates, keys).
    pub(crate) fn resolve(args: ServeArgs) -> Result<Self, SettingsError> {
        let given = match args.config.clone() {
            Some(path) => args.over(read_file(&path)?)?,
            None => args,
        };
        let listen = if given.listen.is_empty() {
            vec![DEFAULT_LISTEN.to_owned()]
        } else {
            given.listen
        };
        if listen.is_empty() {
            return Err(invalid("listen", "at least one address is needed"));
        }
        let listen = parse_addresses("listen", listen)?;
        let tls = match (given.tls_cert, given.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(load_tls(&cert, &key)?),
            (Some(_), None) => return Err(invalid("tls_key", "--tls-cert needs --tls-key")),
            (None, Some(_)) => return Err(invalid("tls_cert", "--tls-key needs --tls-cert")),
        };
        let auth = resolve_auth(
            AuthChoices {
                jwt_secret: given.jwt_secret,
                jwt_public_key: given.jwt_public_key,
                jwt_jwks: given.jwt_jwks,
                keys_file: given.keys_file,
            },
            given.jwt_audience,
            given.jwt_issuer,
        )?;
        let insecure_names = given.insecure_names;
        if matches!(auth, Auth::Open)
            && !insecure_names
            && let Some(public) = listen.iter().find(|addr| !addr.ip().is_loopback())
        {
            return Err(invalid(
                "insecure_names",
                format!(
                    "without --jwt-secret, --jwt-public-key, --jwt-jwks or --keys-file, \
                     clients name themselves with ?user= and anyone can be anyone; \
                     {public} is not a loopback address, so this needs --insecure-names \
                     (a trial on a private network) or one of those settings"
                ),
            ));
        }
        let public_hosts = given.public_host;
        for name in &public_hosts {
            if !ws_async::is_host_name(name) {
                return Err(invalid(
                    "public_host",
                    format!(
                        "{name:?} is not a host name like chat.example.com (a port may follow)"
                    ),
                ));
            }
        }
        let admin = match given.admin_token {
            Some(token) if token.len() < 16 => {
                return Err(invalid(
                    "admin_token",
                    "the admin token needs at least 16 characters",
                ));
            }
            Some(token) => Some(KeyAuth::new().scheme("Bearer").key(token, "admin")),
            None => None,
        };
        let admin_listen = parse_addresses("admin_listen", given.admin_listen)?;
        if tls.is_none()
            && let Some(open) = admin_listen.iter().find(|addr| !addr.ip().is_loopback())
        {
            return Err(invalid(
                "admin_listen",
                format!(
                    "{open} is not a loopback address: without TLS (--tls-cert) the admin \
                     token would cross the network in plain text"
                ),
            ));
        }
        let metrics = given.metrics.unwrap_or(MetricsAt::Main);
        let origins = given.origins;
        for origin in &origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(invalid(
                    "origins",
                    format!("{origin:?} is not an origin like https://app.example.com"),
                ));
            }
        }
        // Publishes are 64 KiB at most (`max_payload`); the rest is for
        // end-to-end groups' handshakes (`max_handshake`).
        let max_message_size = given.max_message_size.unwrap_or(1 << 20);
        if max_message_size == 0 {
            return Err(invalid("max_message_size", "must be at least 1 byte"));
        }
        let at_least_one = |setting: &'static str, value: Option<usize>, default: usize| match value
        {
            Some(0) => Err(invalid(setting, "must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let max_connections = at_least_one("max_connections", given.max_connections, 10_000)?;
        let max_connections_per_address = at_least_one(
            "max_connections_per_address",
            given.max_connections_per_address,
            256,
        )?;
        let max_connections_per_user = at_least_one(
            "max_connections_per_user",
            given.max_connections_per_user,
            32,
        )?;
        let idle_timeout = match given.idle_timeout.unwrap_or(60) {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        };
        let workers = match given.workers {
            Some(0) => return Err(invalid("workers", "must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(2, usize::from),
        };
        let backend = resolve_backend(
            given.backend,
            given.cluster_key,
            given.backend_prefix,
            given.backend_ca,
            given.history_bytes,
        )?;
        let mut channels = channels_config(given.channels.unwrap_or_default(), &given.channel)?;
        if let Some(bytes) = given.history_bytes_per_channel {
            channels.max_history_bytes = bytes;
        }
        channels.max_channels_per_user = at_least_one(
            "max_channels_per_user",
            given.max_channels_per_user,
            channels.max_channels_per_user,
        )?;
        if let Some(rate) = given.command_rate {
            channels.command_rate = rate;
        }
        match given.command_burst {
            Some(0) => return Err(invalid("command_burst", "must be at least 1")),
            Some(burst) => channels.command_burst = burst,
            None => {}
        }
        channels
            .check()
            .map_err(|message| invalid("channels", message))?;
        let handshake_timeout = match given.handshake_timeout {
            Some(0) => return Err(invalid("handshake_timeout", "must be at least 1 second")),
            Some(secs) => Duration::from_secs(secs),
            None => Duration::from_secs(10),
        };
        Ok(Self {
            listen,
            handshake_timeout,
            tls,
            auth,
            public_hosts,
            admin,
            admin_listen,
            metrics,
            origins,
            max_connections,
            max_connections_per_address,
            max_connections_per_user,
            max_message_size,
            idle_timeout,
            channels,
            backend,
            workers,
            shutdown_grace: Duration::from_secs(given.shutdown_grace.unwrap_or(10)),
            log: given.log.unwrap_or_else(|| DEFAULT_LOG.to_owned()),
            log_format: given.log_format.unwrap_or(LogFormat::Text),
        })
    }
}

/// The channels settings: the file's `[channels]` table with each
/// `--channel KEY=VALUE` over it, read as ws-channels reads them (its
/// defaults for what is not given, unknown keys refused).
fn channels_config(
    mut table: toml::Table,
    flags: &[String],
) -> Result<ChannelsConfig, SettingsError> {
    for flag in flags {
        let Some((key, value)) = flag.split_once('=') else {
            return Err(invalid(
                "channel",
                format!("{flag:?} is not KEY=VALUE (`--channel help` lists the keys)"),
            ));
        };
        let key = key.trim();
        // A TOML value; a bare word (`mark_lost`) reads as a string.
        let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut parsed| parsed.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.trim().to_owned()));
        table.insert(key.to_owned(), value);
    }
    ChannelsConfig::deserialize(toml::Value::Table(table))
        .map_err(|error| invalid("channels", error.to_string().trim().to_owned()))
}

/// What `--channel help` prints: every channels setting with ws-channels'
/// default, as a `[channels]` table.
pub(crate) fn channels_help() -> String {
    let defaults = toml::to_string(&ChannelsConfig::default()).unwrap_or_default();
    format!(
        "# Channels settings: the [channels] table of the settings file, or\n\
         # --channel KEY=VALUE. Durations are in seconds. Each with its default:\n\
         [channels]\n{defaults}\n\
         # roles = {{ moderator = [\"kick\", \"publish\"] }}\n\
         # topics = {{ alerts = \"everyone\", ops = {{ roles = [\"oncall\"] }} }}\n"
    )
}

fn parse_addresses(
    setting: &'static str,
    values: Vec<String>,
) -> Result<Vec<SocketAddr>, SettingsError> {
    values
        .into_iter()
        .map(|value| {
            value
                .trim()
                .parse::<SocketAddr>()
                .map_err(|_| SettingsError::Address { setting, value })
        })
        .collect()
}

fn resolve_backend(
    url: Option<String>,
    cluster_key: Option<String>,
    prefix: Option<String>,
    ca: Option<PathBuf>,
    history_bytes: Option<u64>,
) -> Result<BackendSettings, SettingsError> {
    let url = url.unwrap_or_else(|| "memory".to_owned());
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    let broker = match scheme {
        _ if url == "memory" => None,
        Some(scheme @ ("redis" | "rediss" | "nats" | "tls")) => Some(scheme),
        _ => {
            return Err(invalid(
                "backend",
                format!(
                    "{:?} is not `memory`, redis://..., rediss://..., nats://... or tls://...",
                    redact(&url)
                ),
            ));
        }
    };
    let cluster_key = match (broker, cluster_key) {
        (None, Some(_)) => {
            return Err(invalid(
                "cluster_key",
                "is for a cluster: give --backend a Redis or NATS URL",
            ));
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "cluster_key",
                "a Redis or NATS backend needs the cluster's key: --cluster-key or \
                 WS_CLUSTER_KEY, the same secret of 32 bytes or more on every node",
            ));
        }
        (Some(_), Some(key)) => Some(
            ws_channels::backend::ClusterKey::new(key.as_bytes())
                .map_err(|error| invalid("cluster_key", error.message.into_owned()))?,
        ),
    };
    if matches!(broker, Some("redis" | "nats"))
        && let Some(ca) = &ca
    {
        return Err(invalid(
            "backend_ca",
            format!(
                "{} is for TLS: use rediss:// or tls:// in --backend",
                ca.display()
            ),
        ));
    }
    if let Some(ca) = &ca {
        read_setting("backend_ca", ca)?;
    }
    if history_bytes.is_some() && matches!(broker, Some("redis" | "rediss")) {
        return Err(invalid(
            "history_bytes",
            "Redis keeps the history: bound it with Redis's own maxmemory",
        ));
    }
    let prefix = prefix.unwrap_or_else(|| "ws".to_owned());
    let prefix_ok = !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !prefix_ok {
        return Err(invalid(
            "backend_prefix",
            format!("{prefix:?}: letters, digits, - and _"),
        ));
    }
    Ok(BackendSettings {
        url,
        cluster_key,
        prefix,
        ca,
        history_bytes,
    })
}

/// A list from the flags or environment when given there, else from the
/// file.
impl ServeArgs {
    /// These settings (flags and environment) over `file`'s: each one
    /// given here wins; a list left empty or a switch left off is not
    /// given.
    fn over(self, file: ServeArgs) -> Result<ServeArgs, SettingsError> {
        let table = |settings: &ServeArgs| {
            toml::Table::try_from(settings).map_err(|error| invalid("config", error.to_string()))
        };
        let mut merged = table(&file)?;
        for (key, value) in table(&self)? {
            let given = match &value {
                toml::Value::Array(items) => !items.is_empty(),
                toml::Value::Boolean(on) => *on,
                _ => true,
            };
            if given {
                merged.insert(key, value);
            }
        }
        let mut merged: ServeArgs = toml::Value::Table(merged)
            .try_into()
            .map_err(|error: toml::de::Error| invalid("config", error.to_string()))?;
        merged.config = self.config;
        merged.channel = self.channel;
        Ok(merged)
    }
}

/// The authentication settings as given: at most one may be.
struct AuthChoices {
    jwt_secret: Option<String>,
    jwt_public_key: Option<PathBuf>,
    jwt_jwks: Option<PathBuf>,
    keys_file: Option<PathBuf>,
}

fn resolve_auth(
    choices: AuthChoices,
    audience: Vec<String>,
    issuer: Vec<String>,
) -> Result<Auth, SettingsError> {
    let given = [
        choices.jwt_secret.is_some(),
        choices.jwt_public_key.is_some(),
        choices.jwt_jwks.is_some(),
        choices.keys_file.is_some(),
    ];
    if given.iter().filter(|given| **given).count() > 1 {
        return Err(invalid(
            "jwt_secret",
            "choose one of --jwt-secret, --jwt-public-key, --jwt-jwks and --keys-file",
        ));
    }
    let (verifier, what) = if let Some(secret) = choices.jwt_secret {
        if secret.len() < 32 {
            return Err(invalid(
                "jwt_secret",
                "an HS256 secret needs at least 32 bytes",
            ));
        }
        (BearerJwt::hs256(secret.as_bytes()), "HS256 secret")
    } else if let Some(path) = choices.jwt_public_key {
        let pem = read_setting("jwt_public_key", &path)?;
        let verifier = BearerJwt::public_key_pem(&pem)
            .map_err(|error| invalid("jwt_public_key", format!("{}: {error}", path.display())))?;
        (verifier, "public key")
    } else if let Some(path) = choices.jwt_jwks {
        let json = read_setting("jwt_jwks", &path)?;
        let verifier = BearerJwt::jwks(&json)
            .map_err(|error| invalid("jwt_jwks", format!("{}: {error}", path.display())))?;
        (verifier, "key set")
    } else {
        let setting = if audience.is_empty() {
            "jwt_issuer"
        } else {
            "jwt_audience"
        };
        if !audience.is_empty() || !issuer.is_empty() {
            return Err(invalid(
                setting,
                "needs JWTs: --jwt-secret, --jwt-public-key or --jwt-jwks",
            ));
        }
        return match choices.keys_file {
            Some(path) => {
                let keys = read_keys(&path)?;
                Ok(Auth::Keys(
                    keys.iter().fold(KeyAuth::new(), |auth, (user, key)| {
                        auth.key(key, user.clone())
                    }),
                ))
            }
            None => Ok(Auth::Open),
        };
    };
    let mut verifier = verifier;
    if !audience.is_empty() {
        let audience: Vec<&str> = audience.iter().map(String::as_str).collect();
        verifier = verifier.audience(&audience);
    }
    if !issuer.is_empty() {
        let issuer: Vec<&str> = issuer.iter().map(String::as_str).collect();
        verifier = verifier.issuer(&issuer);
    }
    Ok(Auth::Jwt { verifier, what })
}

fn read_file(path: &Path) -> Result<ServeArgs, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|error| SettingsError::ParseFile {
        path: path.to_owned(),
        // toml's message names the key and shows the line.
        message: error.to_string().trim_end().to_owned(),
    })
}

fn read_setting(setting: &'static str, path: &Path) -> Result<Vec<u8>, SettingsError> {
    std::fs::read(path).map_err(|source| SettingsError::ReadSetting {
        setting,
        path: path.to_owned(),
        source,
    })
}

fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, SettingsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let cert_pem = read_setting("tls_cert", cert)?;
    let key_pem = read_setting("tls_key", key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid("tls_cert", format!("{}: {error}", cert.display())))?;
    if chain.is_empty() {
        return Err(invalid(
            "tls_cert",
            format!("{} holds no PEM certificate", cert.display()),
        ));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|error| invalid("tls_key", format!("{}: {error}", key.display())))?;
    ws_async::tls::server_config(chain, private_key)
        .map_err(|error| invalid("tls_cert", format!("{}: {error}", cert.display())))
}

/// `user key` per line; blank lines and `#` comments skipped.
fn read_keys(path: &Path) -> Result<Vec<(String, String)>, SettingsError> {
    let text = read_setting("keys_file", path)?;
    let text = String::from_utf8(text)
        .map_err(|_| invalid("keys_file", format!("{} is not UTF-8", path.display())))?;
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (Some(user), Some(key), None) if key.len() >= 16 => {
                keys.push((user.to_owned(), key.to_owned()));
            }
            (Some(_), Some(_), None) => {
                return Err(invalid(
                    "keys_file",
                    format!(
                        "{} line {}: a key needs at least 16 characters",
                        path.display(),
                        number + 1
                    ),
                ));
            }
            _ => {
                return Err(invalid(
                    "keys_file",
                    format!(
                        "{} line {}: expected `user key`",
                        path.display(),
                        number + 1
                    ),
                ));
            }
        }
    }
    if keys.is_empty() {
        return Err(invalid(
            "keys_file",
            format!("{} holds no keys", path.display()),
        ));
    }
    Ok(keys)
}

/// A backend URL without its password.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn flags_win_over_the_file_and_what_they_leave_out_comes_from_it() {
        let file: ServeArgs = toml::from_str(
            "listen = [\"127.0.0.1:7000\"]\nmax_connections = 5\ninsecure_names = true\n\
             origins = [\"https://a.example\"]\n[channels]\nmax_participants = 3\n",
        )
        .unwrap();
        let flags =
            Cli::parse_from(["ws", "--max-connections", "9", "--channel", "echo=false"]).serve;
        let given = flags.over(file).unwrap();
        assert_eq!(given.max_connections, Some(9), "the flag wins");
        assert_eq!(
            given.listen,
            ["127.0.0.1:7000"],
            "an empty list is not given"
        );
        assert_eq!(given.origins, ["https://a.example"]);
        assert!(given.insecure_names, "a switch left off is not given");
        assert_eq!(given.channel, ["echo=false"]);
        let channels = channels_config(given.channels.unwrap(), &given.channel).unwrap();
        assert_eq!(channels.max_participants, 3);
        assert!(!channels.echo);
    }
}

//! `ws serve`: the channels endpoint, the page, the admin API and the
//! metrics on one HTTP server (hyper, with axum's router), on every
//! address asked for, until SIGINT or SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use ws_async::auth::Authenticator;
#[cfg(feature = "nats")]
use ws_channels::backend::{NatsBackend, NatsConfig};
#[cfg(feature = "redis")]
use ws_channels::backend::{RedisBackend, RedisConfig};
use ws_channels::{Backends, ChannelError, Channels, ErrorCode, MemoryBackend};
use ws_tokio::{HostPolicy, OriginPolicy, ServerConfig};

use crate::app::{App, ClientAuth, error_body};
use crate::settings::{
    Auth, BackendSettings, LogFormat, MetricsAt, ServeArgs, Settings, channels_help, redact,
};
use crate::{admin, page};

fn config_hosts(settings: &Settings) -> HostPolicy {
    HostPolicy::local(settings.public_hosts.iter().cloned())
}

pub(crate) fn main(args: ServeArgs) -> ExitCode {
    if args.channel.iter().any(|flag| flag == "help") {
        print!("{}", channels_help());
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::resolve(args) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("ws serve: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(message) = init_logging(&settings) {
        eprintln!("ws serve: `log`: {message}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.workers)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ws serve: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("ws serve: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = settings.log.clone();
    let filter = EnvFilter::try_new(&filter).map_err(|error| error.to_string())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|error| error.to_string())
}

async fn run(settings: Settings) -> Result<(), String> {
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|error| format!("cannot start the metrics recorder: {error}"))?;
    let mut memory = None;
    let backend = connect_backend(&settings.backend, &mut memory)
        .await
        .map_err(|error| format!("`backend`: {}", error.message))?;
    let mut channels_config = settings.channels.clone();
    channels_config.group_reader = Some(Arc::new(mls_reader(&settings.backend)?));
    let mut channels = Channels::builder(channels_config).backend(backend);
    if let Auth::Jwt { verifier, .. } = &settings.auth {
        // Sessions end with their JWT (`exp`) unless the client sends a
        // new one with `refresh`, checked as the handshake's.
        channels = channels.refresh_tokens(verifier.clone());
    }
    let channels = channels.build();

    let authenticator = ClientAuth::new(&settings.auth);
    let mut endpoint = channels
        .endpoint()
        .authenticator(authenticator.clone())
        .max_connections_per_user(settings.max_connections_per_user);
    if !settings.origins.is_empty() {
        endpoint = endpoint.origin(OriginPolicy::AllowList(settings.origins.clone()));
    }
    let mut config = ServerConfig::default();
    config.connection.max_message_size = settings.max_message_size;
    config.connection.idle_timeout = settings.idle_timeout;
    config.max_connections = Some(settings.max_connections);
    config.max_connections_per_client = Some(settings.max_connections_per_address);
    config.handshake.timeout = settings.handshake_timeout;
    config.hosts = config_hosts(&settings);
    let ws = ws_tokio::server()
        .config(config)
        .route("/channels", endpoint)
        .build();
    let app = App {
        ws: ws.clone(),
        channels: channels.handle(),
        prometheus,
        admin: settings.admin.clone(),
        auth: authenticator,
        hosts: config_hosts(&settings),
        memory,
    };
    let (main_router, admin_router) = routers(app, &settings);

    let signal = shutdown_signal()?;
    let tls = settings.tls.clone().map(TlsAcceptor::from);
    let (accepted_tx, mut accepted) = mpsc::channel::<(TcpStream, SocketAddr, Router)>(256);
    let mut accept_tasks = Vec::new();
    let (http, ws_scheme) = if tls.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    let listeners = settings
        .listen
        .iter()
        .map(|addr| (addr, &main_router))
        .chain(
            // One admin router serves every admin address.
            settings
                .admin_listen
                .iter()
                .filter_map(|addr| Some((addr, admin_router.as_ref()?))),
        );
    for (addr, router) in listeners {
        let listener = ws_async::net::bind_tcp(*addr)
            .and_then(TcpListener::from_std)
            .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
        let bound = listener
            .local_addr()
            .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
        // On stdout, for people and for scripts that started it on port 0;
        // a closed stdout (`ws serve | head -1`) is no reason to stop.
        let _ = if settings.listen.contains(addr) {
            writeln!(
                std::io::stdout(),
                "ws serve: page {http}://{bound}/  channels {ws_scheme}://{bound}/channels"
            )
        } else {
            writeln!(std::io::stdout(), "ws serve: admin {http}://{bound}/admin/")
        };
        tracing::info!(%bound, tls = tls.is_some(), "listening");
        accept_tasks.push(tokio::spawn(accept(
            listener,
            router.clone(),
            accepted_tx.clone(),
        )));
    }
    drop(accepted_tx);
    log_settings(&settings);

    // Every HTTP connection holds a `done` sender and watches `stop`: on
    // shutdown they finish the request in hand and close, and `finished`
    // yields `None` once the last one has.
    let (stop, stopping) = watch::channel(false);
    let (done, mut finished) = mpsc::channel::<()>(1);
    let mut signal = std::pin::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            next = accepted.recv() => {
                let Some((stream, peer, router)) = next else { break };
                let tls = tls.clone();
                let stopping = stopping.clone();
                let done = done.clone();
                let head_timeout = settings.handshake_timeout;
                tokio::spawn(async move {
                    serve_http(stream, peer, tls, router, stopping, head_timeout).await;
                    drop(done);
                });
            }
        }
    }
    tracing::info!(
        grace_secs = settings.shutdown_grace.as_secs(),
        connections = ws.handle().count(),
        "shutting down: closing connections with 1001"
    );
    for task in accept_tasks {
        task.abort();
    }
    let _ = stop.send(true);
    drop(done);
    ws.handle().shutdown(settings.shutdown_grace).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), finished.recv()).await;
    tracing::info!("stopped");
    Ok(())
}

/// The backend the settings name, with its prefix, key, CA and budget;
/// the memory backend is also left in `history`, for its metrics.
/// What encrypted channels need of MLS: commits read for their order, key
/// packages checked, and the server's identity as the groups' external
/// sender: derived from the cluster's key, so every node and every restart
/// signs as the same one; a single node without one makes a new identity
/// at each start (its groups live in memory, so none outlives it).
fn mls_reader(backend: &BackendSettings) -> Result<ws_crypto::mls::MlsReader, String> {
    use ws_crypto::mls::{DeliveryService, MlsReader};
    let service = match &backend.cluster_key {
        Some(key) => DeliveryService::from_secret("ws serve", key.secret()),
        None => DeliveryService::new("ws serve"),
    }
    .map_err(|error| format!("the MLS Delivery Service: {error}"))?;
    MlsReader::new()
        .with_service(service)
        .map_err(|error| format!("the MLS Delivery Service: {error}"))
}

async fn connect_backend(
    settings: &BackendSettings,
    history: &mut Option<Arc<MemoryBackend>>,
) -> Result<Backends, ChannelError> {
    let scheme = settings.url.split("://").next().unwrap_or_default();
    #[cfg(any(feature = "redis", feature = "nats"))]
    let key = || {
        settings
            .cluster_key
            .clone()
            .expect("checked with the settings")
    };
    #[cfg(feature = "redis")]
    let ca = || -> Result<Option<Vec<u8>>, ChannelError> {
        settings
            .ca
            .as_ref()
            .map(|path| {
                std::fs::read(path).map_err(|error| {
                    ChannelError::new(
                        ErrorCode::BadRequest,
                        format!("cannot read {}: {error}", path.display()),
                    )
                })
            })
            .transpose()
    };
    // A backend left out of this build (cargo's --no-default-features).
    #[cfg(not(all(feature = "redis", feature = "nats")))]
    let missing = |feature: &str| {
        Err(ChannelError::new(
            ErrorCode::BadRequest,
            format!(
                "this ws was built without the {feature} backend: build it with --features {feature}"
            ),
        ))
    };
    match scheme {
        #[cfg(not(feature = "redis"))]
        "redis" | "rediss" => missing("redis"),
        #[cfg(not(feature = "nats"))]
        "nats" | "tls" => missing("nats"),
        #[cfg(feature = "redis")]
        "redis" | "rediss" => {
            let mut config = RedisConfig::new(&settings.url, key()).prefix(&settings.prefix);
            if let Some(ca) = ca()? {
                config = config.tls_ca(ca);
            }
            Ok(Backends::shared(RedisBackend::connect(config).await?))
        }
        #[cfg(feature = "nats")]
        "nats" | "tls" => {
            let mut config = NatsConfig::new(&settings.url, key()).prefix(&settings.prefix);
            if let Some(ca) = &settings.ca {
                config = config.tls_ca_file(ca);
            }
            if let Some(bytes) = settings.history_bytes {
                config.max_history_bytes = bytes;
            }
            Ok(Backends::shared(NatsBackend::connect(config).await?))
        }
        _ => {
            let mut memory = MemoryBackend::new();
            if let Some(bytes) = settings.history_bytes {
                memory = memory.max_history_bytes(usize::try_from(bytes).unwrap_or(usize::MAX));
            }
            let memory = Arc::new(memory);
            *history = Some(memory.clone());
            Ok(Backends::memory(memory))
        }
    }
}

fn log_settings(settings: &Settings) {
    let auth = match &settings.auth {
        Auth::Open => {
            "clients name themselves with ?user=: anyone can be anyone (no JWT or keys configured)"
        }
        Auth::Jwt { what, .. } => what,
        Auth::Keys(_) => "API keys",
    };
    if matches!(settings.auth, Auth::Open)
        && settings.listen.iter().any(|addr| !addr.ip().is_loopback())
    {
        tracing::warn!(
            "--insecure-names: clients on other machines name themselves with ?user=; anyone who reaches this server can be anyone"
        );
    }
    tracing::info!(
        backend = %redact(&settings.backend.url),
        backend_prefix = settings.backend.prefix,
        auth,
        admin_api = settings.admin.is_some(),
        max_message_size = settings.max_message_size,
        max_connections = settings.max_connections,
        max_connections_per_address = settings.max_connections_per_address,
        max_connections_per_user = settings.max_connections_per_user,
        workers = settings.workers,
        "serving channels"
    );
}

/// Resolves at SIGINT (Ctrl-C) or SIGTERM. The handlers are installed
/// when this is called, not when the future is first polled, so a signal
/// sent as soon as the server has said where it listens is not missed.
fn shutdown_signal() -> Result<impl Future<Output = ()>, String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let install =
            |kind| signal(kind).map_err(|error| format!("cannot handle signals: {error}"));
        let mut interrupt = install(SignalKind::interrupt())?;
        let mut terminate = install(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Accepts connections, with ws-async's accept back-off: an error of one
/// connection is skipped, running out of file descriptors pauses the loop
/// instead of spinning.
async fn accept(
    listener: TcpListener,
    router: Router,
    accepted: mpsc::Sender<(TcpStream, SocketAddr, Router)>,
) {
    let mut backoff = ws_async::net::AcceptBackoff::default();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff.succeeded();
                let _ = stream.set_nodelay(true);
                if accepted.send((stream, peer, router.clone())).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                if let Some(pause) = backoff.failed(&error) {
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

async fn serve_http(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: Router,
    stopping: watch::Receiver<bool>,
    head_timeout: Duration,
) {
    let local = LocalAddr(stream.local_addr().ok());
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(local);
        router.clone().oneshot(request)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(head_timeout);
    let result = match tls {
        Some(acceptor) => {
            let stream = match tokio::time::timeout(head_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = http
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            until_stopped(connection, stopping).await
        }
        None => {
            let connection = http
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            until_stopped(connection, stopping).await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "HTTP connection ended with an error");
    }
}

/// Serves `connection` until it ends; once `stopping` turns true, it
/// finishes the request in hand and closes.
async fn until_stopped<I, S>(
    connection: hyper::server::conn::http1::UpgradeableConnection<I, S>,
    mut stopping: watch::Receiver<bool>,
) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return result,
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    connection.await
}

/// The address a connection was accepted on: a request over loopback has
/// a loopback one.
#[derive(Debug, Clone, Copy)]
struct LocalAddr(Option<SocketAddr>);

/// The router of the main listeners, and the admin listeners' one when
/// `--admin-listen` gives them.
///
/// The admin API (and `/metrics` with `--metrics admin`) is on the admin
/// listeners when there are some, and nowhere else. Without them it is on
/// the main listeners, where, unless TLS is on, it answers only requests
/// that came over loopback: elsewhere the token would cross the network in
/// plain text.
fn routers(app: App, settings: &Settings) -> (Router, Option<Router>) {
    let admin_part = || {
        let mut admin = Router::new().nest("/admin", admin::router());
        if settings.metrics == MetricsAt::Admin {
            admin = admin.route("/metrics", get(metrics));
        }
        admin
    };
    let mut main = Router::new()
        .route("/", get(page::index))
        .route("/whoami", get(whoami))
        .route("/app.js", get(page::script))
        .route("/e2e.js", get(page::e2e_module))
        .route("/mls.js", get(page::mls_module))
        .route("/vendor/ts-mls.js", get(page::ts_mls))
        .route("/style.css", get(page::style))
        .route("/channels", get(upgrade))
        .route("/healthz", get(|| async { "ok\n" }));
    if settings.metrics == MetricsAt::Main {
        main = main.route("/metrics", get(metrics));
    }
    let admin = if settings.admin_listen.is_empty() {
        let mut admin = admin_part();
        if settings.tls.is_none() {
            admin = admin.layer(axum::middleware::from_fn(over_loopback));
        }
        main = main.merge(admin);
        None
    } else {
        Some(admin_part().route("/healthz", get(|| async { "ok\n" })))
    };
    let finish = |router: Router<App>| {
        router
            .layer(axum::middleware::from_fn_with_state(
                app.clone(),
                known_host,
            ))
            .with_state(app.clone())
    };
    (finish(main), admin.map(finish))
}

/// Lets through only requests that came over loopback.
async fn over_loopback(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    let local = request
        .extensions()
        .get::<LocalAddr>()
        .and_then(|local| local.0);
    if local.is_some_and(|addr| addr.ip().is_loopback()) {
        return next.run(request).await;
    }
    (
        http::StatusCode::FORBIDDEN,
        axum::Json(error_body(
            "admin_over_loopback_only",
            "without TLS the admin API answers only over loopback, where the token \
             does not cross the network: use a loopback address, --admin-listen, or TLS",
        )),
    )
        .into_response()
}

/// Refuses requests whose `Host` this server does not answer for (DNS
/// rebinding: a page on another name pointed at this server), on every
/// route: the page, `/metrics` and the admin API as much as `/channels`.
async fn known_host(
    State(app): State<App>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let host = request
        .headers()
        .get(http::header::HOST)
        .map(|host| host.to_str().unwrap_or_default());
    if !app.hosts.allows(host) {
        return (
            http::StatusCode::MISDIRECTED_REQUEST,
            axum::Json(error_body(
                "unknown_host",
                "this server does not answer for the host named in Host; \
                 its operator lists the names it is reached by with --public-host",
            )),
        )
            .into_response();
    }
    next.run(request).await
}

/// Who the credentials in this request (`?user=` where names are
/// claimed, `?token=` or `Authorization`) would connect as, by the rules of
/// `/channels`: 200 `{"user", "auth"}` or 401 `{"error", "message",
/// "auth"}`; without credentials 200 with `"user": null`. `auth` is the
/// server's mode (`names`, `jwt`, `keys`), so the page can warn when anyone
/// can be anyone and tell a refused name or token from an unreachable
/// server.
async fn whoami(State(app): State<App>, request: Request) -> axum::response::Response {
    let (parts, _) = request.into_parts();
    let mode = app.auth.mode();
    let given = |name| ws_async::auth::query_param(&parts, name).is_some();
    let credentials = parts.headers.contains_key(http::header::AUTHORIZATION)
        || given("token")
        || (mode == "names" && given("user"));
    if !credentials {
        return axum::Json(serde_json::json!({ "user": null, "auth": mode })).into_response();
    }
    match app.auth.authenticate(&parts).await {
        Ok(identity) => axum::Json(serde_json::json!({ "user": identity.subject, "auth": mode }))
            .into_response(),
        Err(rejection) => {
            let status = rejection.status();
            let message = String::from_utf8_lossy(rejection.response().body())
                .trim()
                .to_owned();
            let mut body = error_body("unauthorized", message);
            body["auth"] = mode.into();
            (status, axum::Json(body)).into_response()
        }
    }
}

async fn upgrade(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> impl IntoResponse {
    ws_tokio::upgrade(&app.ws, request, Some(peer)).await
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    let stats = app.channels.stats();
    metrics::gauge!("ws_channels_sessions").set(stats.sessions as f64);
    metrics::gauge!("ws_channels_channels").set(stats.channels as f64);
    metrics::gauge!("ws_channels_subscriptions").set(stats.subscriptions as f64);
    if let Some(memory) = &app.memory {
        metrics::gauge!("ws_channels_history_bytes").set(memory.history_bytes() as f64);
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        app.prometheus.render(),
    )
}

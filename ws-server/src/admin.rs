//! The admin API under `/admin/`, for `ws ctl` and scripts: JSON in and
//! out, `Authorization: Bearer <admin token>` on every request.
//!
//! | method and path | body or query | answer |
//! |---|---|---|
//! | `GET /admin/stats` | | connections, sessions, channels, subscriptions on this node |
//! | `GET /admin/connections` | | this node's connections |
//! | `GET /admin/channels` | `?limit=` | channels (every node) |
//! | `GET /admin/presence` | `?channel=&limit=` | a channel's members |
//! | `POST /admin/kick` | `channel`, `user` or `session` | |
//! | `POST /admin/ban` | `channel`, `user`, `duration` (seconds) | |
//! | `POST /admin/unban` | `channel`, `user` | |
//! | `POST /admin/publish` | `channel`, `data` | `offset`, `epoch` with history |
//! | `POST /admin/broadcast` | `data` | `delivered`, `dropped` (this node) |
//! | `POST /admin/disconnect` | `connection` or `user`, `reason` | |
//!
//! Errors are `{"error": code, "message": text}` with the HTTP status that
//! fits: 400 bad request, 401 no or wrong token, 403 admin API off, 404 no
//! such channel, member or connection, 503 the backend is unreachable.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use ws_async::auth::Authenticator as _;
use ws_channels::{ChannelError, ErrorCode, SessionId, Target};
use ws_tokio::ConnectionId;

use crate::app::{App, error_body};

/// Most items a listing returns when the request names no limit.
const DEFAULT_LIMIT: usize = 1000;

pub(crate) fn router() -> Router<App> {
    Router::new()
        .route("/stats", get(stats))
        .route("/connections", get(connections))
        .route("/channels", get(channels))
        .route("/presence", get(presence))
        .route("/kick", post(kick))
        .route("/ban", post(ban))
        .route("/unban", post(unban))
        .route("/publish", post(publish))
        .route("/broadcast", post(broadcast))
        .route("/disconnect", post(disconnect))
}

/// An admin API failure, as its JSON answer.
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(error_body(self.code, self.message))).into_response()
    }
}

impl From<ChannelError> for ApiError {
    fn from(error: ChannelError) -> Self {
        let status = match error.code {
            ErrorCode::NotFound | ErrorCode::NotMember => StatusCode::NOT_FOUND,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Forbidden | ErrorCode::Banned => StatusCode::FORBIDDEN,
            ErrorCode::AlreadyExists => StatusCode::CONFLICT,
            ErrorCode::Limit | ErrorCode::Full => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, error.code.as_str(), error.message.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

/// Proof that the request carries the admin token.
struct Admin;

impl FromRequestParts<App> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let Some(token) = &app.admin else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_disabled",
                "the admin API is off: start `ws serve` with --admin-token or WS_ADMIN_TOKEN",
            ));
        };
        // Compared as SHA-256 digests in constant time: neither the
        // token's bytes nor its length show in how long a refusal takes.
        match token.authenticate(parts).await {
            Ok(_) => Ok(Admin),
            Err(_) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid `Authorization: Bearer <admin token>` is needed",
            )),
        }
    }
}

/// A JSON body whose rejection is an [`ApiError`].
struct Body<T>(T);

impl<T, S> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

/// A query whose rejection is an [`ApiError`].
struct Params<T>(T);

impl<T, S> FromRequestParts<S> for Params<T>
where
    Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

type Answer = Result<Json<Value>, ApiError>;

async fn stats(_: Admin, State(app): State<App>) -> Answer {
    let stats = app.channels.stats();
    Ok(Json(json!({
        "connections": app.ws.handle().count(),
        "sessions": stats.sessions,
        "channels": stats.channels,
        "subscriptions": stats.subscriptions,
    })))
}

async fn connections(_: Admin, State(app): State<App>) -> Answer {
    let list: Vec<Value> = app
        .ws
        .handle()
        .connections()
        .into_iter()
        .map(|c| {
            let user = c
                .info
                .request
                .extensions
                .get::<ws_async::auth::Identity>()
                .map(|identity| identity.subject.clone());
            json!({
                "id": c.handle.id().to_string(),
                "peer": c.info.peer_addr.map(|p| p.to_string()),
                "path": &*c.endpoint,
                "user": user,
                "subprotocol": c.info.subprotocol,
            })
        })
        .collect();
    Ok(Json(json!({ "total": list.len(), "connections": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limit {
    limit: Option<usize>,
}

async fn channels(_: Admin, State(app): State<App>, Params(query): Params<Limit>) -> Answer {
    let list = app
        .channels
        .channels(query.limit.unwrap_or(DEFAULT_LIMIT))
        .await?;
    Ok(Json(json!({ "channels": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceQuery {
    channel: String,
    limit: Option<usize>,
}

async fn presence(
    _: Admin,
    State(app): State<App>,
    Params(query): Params<PresenceQuery>,
) -> Answer {
    let roster = app
        .channels
        .presence(&query.channel, query.limit.unwrap_or(DEFAULT_LIMIT))
        .await?;
    Ok(Json(serde_json::to_value(roster).unwrap_or(Value::Null)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    channel: String,
    user: Option<String>,
    session: Option<String>,
}

async fn kick(_: Admin, State(app): State<App>, Body(body): Body<KickBody>) -> Answer {
    let target = match (body.user, body.session) {
        (Some(user), None) => Target::User(user),
        (None, Some(session)) => Target::Session(
            session
                .parse::<SessionId>()
                .map_err(|_| ApiError::bad_request("`session` is 16 hexadecimal digits"))?,
        ),
        _ => return Err(ApiError::bad_request("give one of `user` and `session`")),
    };
    app.channels.kick(&body.channel, target).await?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BanBody {
    channel: String,
    user: String,
    /// Seconds; absent: until unbanned.
    duration: Option<u64>,
}

async fn ban(_: Admin, State(app): State<App>, Body(body): Body<BanBody>) -> Answer {
    app.channels
        .ban(
            &body.channel,
            &body.user,
            body.duration.map(Duration::from_secs),
        )
        .await?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnbanBody {
    channel: String,
    user: String,
}

async fn unban(_: Admin, State(app): State<App>, Body(body): Body<UnbanBody>) -> Answer {
    app.channels.unban(&body.channel, &body.user).await?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    channel: String,
    data: Value,
}

async fn publish(_: Admin, State(app): State<App>, Body(body): Body<PublishBody>) -> Answer {
    let position = app.channels.publish(&body.channel, &body.data).await?;
    Ok(Json(match position {
        Some(position) => json!({ "ok": true, "offset": position.offset, "epoch": position.epoch }),
        None => json!({ "ok": true }),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BroadcastBody {
    data: Value,
}

/// Sends `{"type":"event","action":"notice","data":...}` to every
/// connection on this node.
async fn broadcast(_: Admin, State(app): State<App>, Body(body): Body<BroadcastBody>) -> Answer {
    let envelope = json!({ "type": "event", "action": "notice", "data": body.data });
    let delivery = app.ws.handle().broadcast(envelope.to_string(), None);
    Ok(Json(json!({
        "ok": true,
        "delivered": delivery.delivered,
        "dropped": delivery.dropped.len(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    connection: Option<String>,
    user: Option<String>,
    reason: Option<String>,
}

async fn disconnect(_: Admin, State(app): State<App>, Body(body): Body<DisconnectBody>) -> Answer {
    let reason = body
        .reason
        .as_deref()
        .unwrap_or("disconnected by an administrator");
    match (body.connection, body.user) {
        (Some(id), None) => {
            let id = id
                .parse::<ConnectionId>()
                .map_err(|error| ApiError::bad_request(error.to_string()))?;
            let handle = app.ws.handle().get(id).ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no connection {id}"),
                )
            })?;
            let reason = ws_core::close::truncate_reason(reason, ws_core::close::MAX_CLOSE_REASON);
            handle
                .try_close(ws_channels::close_codes::DISCONNECTED, reason)
                .map_err(|error| ApiError::bad_request(error.to_string()))?;
        }
        (None, Some(user)) => {
            app.channels.disconnect(Target::User(user), reason).await?;
        }
        _ => return Err(ApiError::bad_request("give one of `connection` and `user`")),
    }
    Ok(Json(json!({ "ok": true })))
}

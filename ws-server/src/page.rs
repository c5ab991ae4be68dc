//! The browser page `ws serve` shows at `/`: plain HTML, CSS and
//! JavaScript compiled into the binary, so there is no build step.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::IntoResponse;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const E2E_MODULE: &str = include_str!("page/e2e.js");
const MLS_MODULE: &str = include_str!("page/mls.js");
const TS_MLS: &str = include_str!("page/vendor/ts-mls.js");
const STYLE: &str = include_str!("page/style.css");

/// Scripts and styles from this origin only; WebSockets to it ('self'
/// covers ws:// and wss:// of the same host).
const POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                      frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, POLICY),
            (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

pub(crate) async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX)
}

pub(crate) async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The encrypted-session client (WebCrypto), for pages of this origin:
/// `import { SealedSession } from "/e2e.js"`.
pub(crate) async fn e2e_module() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", E2E_MODULE)
}

/// End-to-end encrypted channels on MLS, for the page and other pages of
/// this origin: `import { MlsDevice, MlsChannels } from "/mls.js"`.
pub(crate) async fn mls_module() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", MLS_MODULE)
}

/// ts-mls, bundled by `ws-server/vendor/build.mjs`, which `/mls.js`
/// imports.
pub(crate) async fn ts_mls() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", TS_MLS)
}

pub(crate) async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}

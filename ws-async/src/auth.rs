//! Handshake authentication: an [`Authenticator`] per endpoint sees the
//! upgrade request and either names who is connecting ([`Identity`], which
//! handlers read with [`Ctx::identity`](crate::Ctx::identity)) or refuses
//! with 401/403.
//!
//! Built in: `BearerJwt` for `Authorization: Bearer <JWT>` (feature `jwt`,
//! on by default in the adapters) and [`KeyAuth`] for
//! `Authorization: Key <token>`. Neither logs, stores or echoes the
//! credential: rejections carry a fixed text, and an [`Identity`] holds
//! only the subject and the token's claims.

use std::future::Future;
use std::sync::Arc;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;
use subtle::ConstantTimeEq;
use ws_core::handshake::Rejection;

/// Who is connecting, as an [`Authenticator`] established it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Identity {
    /// The subject: a user or device id (a JWT's `sub`, a key's name).
    pub subject: String,
    /// Everything else the authenticator learned (a JWT's claims);
    /// `Value::Null` when there is nothing more.
    pub claims: Value,
}

impl Identity {
    /// An identity with no claims beyond its subject.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            claims: Value::Null,
        }
    }
}

/// Decides whether a handshake may proceed, from its request head.
pub trait Authenticator: Send + Sync + 'static {
    /// The identity of the client, or the refusal to send (401 when
    /// credentials are missing or wrong, 403 when they are valid but not
    /// allowed here).
    fn authenticate(
        &self,
        request: &http::request::Parts,
    ) -> impl Future<Output = Result<Identity, Rejection>> + Send;
}

/// Wraps an authenticator as the hook an endpoint runs.
pub(crate) fn hook<A: Authenticator>(
    authenticator: A,
) -> impl Fn(
    http::request::Parts,
) -> std::pin::Pin<Box<dyn Future<Output = Result<http::request::Parts, Rejection>> + Send>>
+ Send
+ Sync
+ 'static {
    let authenticator = Arc::new(authenticator);
    move |mut request| {
        let authenticator = authenticator.clone();
        Box::pin(async move {
            let identity = authenticator.authenticate(&request).await?;
            request.extensions.insert(identity);
            Ok(request)
        })
    }
}

/// A refusal with a fixed body, never echoing what the client sent.
fn refuse(status: StatusCode, challenge: &'static str, message: &str) -> Rejection {
    let mut headers = HeaderMap::new();
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    Rejection::new(status, headers, format!("{message}\n"))
}

/// The credential after `scheme` in the `Authorization` header, if the
/// header is there, is one line of text and uses that scheme.
fn credential<'a>(request: &'a http::request::Parts, scheme: &str) -> Option<&'a str> {
    let mut values = request.headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (given, rest) = value.to_str().ok()?.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim())
        .filter(|c| !c.is_empty())
}

#[cfg(feature = "jwt")]
type Authorize = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// `Authorization: Bearer <JWT>`: the token's signature and its `exp`/`nbf`
/// must check out (and its `aud`/`iss` where [`audience`](Self::audience)
/// and [`issuer`](Self::issuer) ask), else 401; an optional
/// [`authorize`](Self::authorize) rule over the claims gives 403 when it
/// says no. The identity's subject is the `sub` claim.
///
/// Built on the `jsonwebtoken` crate (feature `jwt`), which does not appear
/// in this API.
#[cfg(feature = "jwt")]
#[derive(Clone)]
pub struct BearerJwt {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
    authorize: Option<Authorize>,
}

/// A public key that could not be read.
#[cfg(feature = "jwt")]
#[derive(Debug, thiserror::Error)]
#[error("not a usable {0} public key in PEM form")]
pub struct JwtKeyError(&'static str);

#[cfg(feature = "jwt")]
impl std::fmt::Debug for BearerJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerJwt")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "jwt")]
impl BearerJwt {
    fn with(key: jsonwebtoken::DecodingKey, algorithm: jsonwebtoken::Algorithm) -> Self {
        Self {
            key,
            validation: jsonwebtoken::Validation::new(algorithm),
            authorize: None,
        }
    }

    /// HMAC-SHA256 tokens signed with `secret`. `exp` is required and
    /// checked, with 60 s of leeway.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::with(
            jsonwebtoken::DecodingKey::from_secret(secret),
            jsonwebtoken::Algorithm::HS256,
        )
    }

    /// RSA (RS256) tokens, checked with the issuer's public key in PEM
    /// form. `exp` as for [`hs256`](Self::hs256).
    pub fn rs256_pem(public_key: &[u8]) -> Result<Self, JwtKeyError> {
        let key =
            jsonwebtoken::DecodingKey::from_rsa_pem(public_key).map_err(|_| JwtKeyError("RSA"))?;
        Ok(Self::with(key, jsonwebtoken::Algorithm::RS256))
    }

    /// ECDSA P-256 (ES256) tokens, checked with the issuer's public key in
    /// PEM form. `exp` as for [`hs256`](Self::hs256).
    pub fn es256_pem(public_key: &[u8]) -> Result<Self, JwtKeyError> {
        let key =
            jsonwebtoken::DecodingKey::from_ec_pem(public_key).map_err(|_| JwtKeyError("EC"))?;
        Ok(Self::with(key, jsonwebtoken::Algorithm::ES256))
    }

    /// Tokens must carry one of these `aud` values.
    pub fn audience(mut self, audiences: &[&str]) -> Self {
        self.validation.set_audience(audiences);
        self
    }

    /// Tokens must carry one of these `iss` values.
    pub fn issuer(mut self, issuers: &[&str]) -> Self {
        self.validation.set_issuer(issuers);
        self
    }

    /// Clock skew tolerated on `exp` and `nbf`. Default: 60 s.
    pub fn leeway(mut self, leeway: std::time::Duration) -> Self {
        self.validation.leeway = leeway.as_secs();
        self
    }

    /// Only clients whose claims pass `rule` may connect; others get 403.
    pub fn authorize(mut self, rule: impl Fn(&Value) -> bool + Send + Sync + 'static) -> Self {
        self.authorize = Some(Arc::new(rule));
        self
    }

    pub(crate) fn check(&self, request: &http::request::Parts) -> Result<Identity, Rejection> {
        let unauthorized = |why| refuse(StatusCode::UNAUTHORIZED, "Bearer", why);
        let token = credential(request, "Bearer")
            .ok_or_else(|| unauthorized("a bearer token is required"))?;
        let data = jsonwebtoken::decode::<Value>(token, &self.key, &self.validation)
            .map_err(|_| unauthorized("invalid or expired token"))?;
        let claims = data.claims;
        if let Some(rule) = &self.authorize
            && !rule(&claims)
        {
            return Err(refuse(StatusCode::FORBIDDEN, "Bearer", "not allowed here"));
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Identity { subject, claims })
    }
}

#[cfg(feature = "jwt")]
impl Authenticator for BearerJwt {
    async fn authenticate(&self, request: &http::request::Parts) -> Result<Identity, Rejection> {
        self.check(request)
    }
}

/// `Authorization: Key <token>` against a list of keys, each naming the
/// subject it authenticates. Keys are kept only as SHA-256 digests, and the
/// digest of what a client presents is compared with every one of them in
/// constant time: timing tells nothing about how much of a key was right,
/// nor how long the keys are. Missing, malformed or unknown keys get 401.
#[derive(Clone, Default)]
pub struct KeyAuth {
    keys: Vec<(KeyDigest, String)>,
}

/// A key as [`KeyAuth`] keeps it.
type KeyDigest = [u8; 32];

fn key_digest(key: &[u8]) -> KeyDigest {
    use sha2::Digest;
    sha2::Sha256::digest(key).into()
}

impl std::fmt::Debug for KeyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAuth")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl KeyAuth {
    /// No keys yet (everyone is refused).
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `key`, identifying the client as `subject`.
    pub fn key(mut self, key: impl AsRef<[u8]>, subject: impl Into<String>) -> Self {
        self.keys.push((key_digest(key.as_ref()), subject.into()));
        self
    }

    pub(crate) fn check(&self, request: &http::request::Parts) -> Result<Identity, Rejection> {
        let unauthorized = |why| refuse(StatusCode::UNAUTHORIZED, "Key", why);
        let given = credential(request, "Key").ok_or_else(|| unauthorized("a key is required"))?;
        let given = key_digest(given.as_bytes());
        let mut found: Option<&str> = None;
        for (key, subject) in &self.keys {
            // Fixed-size digests: the comparison takes as long whatever the
            // lengths of the key and the guess.
            if bool::from(key.ct_eq(&given)) {
                found = Some(subject);
            }
        }
        found
            .map(Identity::new)
            .ok_or_else(|| unauthorized("unknown key"))
    }
}

impl Authenticator for KeyAuth {
    async fn authenticate(&self, request: &http::request::Parts) -> Result<Identity, Rejection> {
        self.check(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "jwt")]
    use jsonwebtoken::{EncodingKey, Header};
    #[cfg(feature = "jwt")]
    use serde_json::json;

    fn request(authorization: &[&str]) -> http::request::Parts {
        let mut builder = http::Request::builder().uri("/");
        for value in authorization {
            builder = builder.header(AUTHORIZATION, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[cfg(feature = "jwt")]
    fn token(claims: Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[cfg(feature = "jwt")]
    fn in_an_hour() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600
    }

    fn status(result: Result<Identity, Rejection>) -> u16 {
        result.unwrap_err().status().as_u16()
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn bearer_jwt() {
        let auth = BearerJwt::hs256(b"secret").authorize(|claims| claims["role"] == "printer");
        let good = token(
            json!({"sub": "p1", "role": "printer", "exp": in_an_hour()}),
            b"secret",
        );
        let identity = auth.check(&request(&[&format!("Bearer {good}")])).unwrap();
        assert_eq!(identity.subject, "p1");
        assert_eq!(identity.claims["role"], "printer");
        // The scheme is case-insensitive.
        assert!(auth.check(&request(&[&format!("bearer {good}")])).is_ok());

        assert_eq!(status(auth.check(&request(&[]))), 401);
        assert_eq!(status(auth.check(&request(&["Basic dXNlcg=="]))), 401);
        assert_eq!(status(auth.check(&request(&["Bearer "]))), 401);
        assert_eq!(status(auth.check(&request(&["Bearer not.a.jwt"]))), 401);
        let forged = token(
            json!({"sub": "p1", "role": "printer", "exp": in_an_hour()}),
            b"guess",
        );
        assert_eq!(
            status(auth.check(&request(&[&format!("Bearer {forged}")]))),
            401
        );
        let expired = token(
            json!({"sub": "p1", "role": "printer", "exp": 1000}),
            b"secret",
        );
        assert_eq!(
            status(auth.check(&request(&[&format!("Bearer {expired}")]))),
            401
        );
        let viewer = token(
            json!({"sub": "v", "role": "viewer", "exp": in_an_hour()}),
            b"secret",
        );
        assert_eq!(
            status(auth.check(&request(&[&format!("Bearer {viewer}")]))),
            403
        );
        // Two Authorization headers are ambiguous: refused.
        let twice = format!("Bearer {good}");
        assert_eq!(status(auth.check(&request(&[&twice, &twice]))), 401);
    }

    #[test]
    fn key_auth() {
        let auth = KeyAuth::new().key("k-alpha", "alpha").key("k-beta", "beta");
        assert_eq!(
            auth.check(&request(&["Key k-beta"])).unwrap().subject,
            "beta"
        );
        assert_eq!(status(auth.check(&request(&["Key k-gamma"]))), 401);
        assert_eq!(status(auth.check(&request(&["Key k-bet"]))), 401);
        assert_eq!(status(auth.check(&request(&["Bearer k-beta"]))), 401);
        assert_eq!(status(auth.check(&request(&[]))), 401);
        assert_eq!(status(KeyAuth::new().check(&request(&["Key "]))), 401);
    }

    // Keys of any length are checked through their digests: no raw key is
    // kept, so no comparison can depend on a key's length.
    #[test]
    fn keys_are_kept_as_digests() {
        let auth = KeyAuth::new()
            .key("", "empty")
            .key("k".repeat(1000), "long");
        assert!(auth.keys.iter().all(|(digest, _)| digest.len() == 32));
        assert_eq!(auth.keys[1].0, key_digest("k".repeat(1000).as_bytes()));
        assert_eq!(
            auth.check(&request(&[&format!("Key {}", "k".repeat(1000))]))
                .unwrap()
                .subject,
            "long"
        );
        assert_eq!(
            status(auth.check(&request(&[&format!("Key {}", "k".repeat(999))]))),
            401
        );
    }

    #[test]
    fn refusals_never_echo_the_credential() {
        let auth = KeyAuth::new().key("right", "r");
        let rejection = auth
            .check(&request(&["Key wrong-secret-value"]))
            .unwrap_err();
        let debug = format!("{rejection:?}");
        assert!(!debug.contains("wrong-secret-value"), "{debug}");
        assert_eq!(rejection.response().headers()[WWW_AUTHENTICATE], "Key");
        #[cfg(feature = "jwt")]
        {
            let jwt = BearerJwt::hs256(b"s");
            let rejection = jwt.check(&request(&["Bearer abc.def.ghi"])).unwrap_err();
            assert!(!format!("{rejection:?}").contains("abc.def.ghi"));
            assert!(!format!("{:?}", rejection.to_bytes()).contains("abc.def.ghi"));
        }
    }
}

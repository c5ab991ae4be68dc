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

    /// An identity with these claims (for an authenticator of your own).
    pub fn with_claims(subject: impl Into<String>, claims: Value) -> Self {
        Self {
            subject: subject.into(),
            claims,
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
    if status == StatusCode::UNAUTHORIZED
        && let Ok(challenge) = HeaderValue::from_str(challenge)
    {
        headers.insert(WWW_AUTHENTICATE, challenge);
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

/// `Authorization: Bearer <JWT>`: the token's signature, its `exp` (required)
/// and its `nbf` (when present) must check out, with 60 s of leeway, and its
/// `aud`/`iss` where [`audience`](Self::audience) and [`issuer`](Self::issuer)
/// ask, else 401. The identity's subject is the `sub` claim, which must be a
/// non-empty string (a token without one would otherwise name a user shared
/// by every such token). An optional [`authorize`](Self::authorize) rule over
/// the claims gives 403 when it says no.
///
/// Keys: a shared secret ([`hs256`](Self::hs256)), an identity provider's
/// public key in PEM form ([`public_key_pem`](Self::public_key_pem): RSA,
/// ECDSA P-256/P-384 or Ed25519), or its JSON Web Key Set
/// ([`jwks`](Self::jwks)), where the token's `kid` picks the key. Each key
/// accepts only the algorithms of its own kind, so a token signed with HMAC
/// under a public key's text (algorithm confusion) or with `alg: none` is
/// refused.
///
/// Built on the `jsonwebtoken` crate (feature `jwt`), which does not appear
/// in this API.
#[cfg(feature = "jwt")]
#[derive(Clone)]
pub struct BearerJwt {
    keys: Vec<JwtKey>,
    authorize: Option<Authorize>,
}

/// One verification key: its id (from a key set), the key, and the checks
/// made with it.
#[cfg(feature = "jwt")]
#[derive(Clone)]
struct JwtKey {
    id: Option<String>,
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

/// A key, or a key set, that could not be used.
#[cfg(feature = "jwt")]
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JwtKeyError(String);

#[cfg(feature = "jwt")]
impl std::fmt::Debug for BearerJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|key| (key.id.as_deref(), &key.validation.algorithms))
            .collect();
        f.debug_struct("BearerJwt")
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "jwt")]
impl BearerJwt {
    fn with_keys(keys: Vec<JwtKey>) -> Self {
        Self {
            keys,
            authorize: None,
        }
    }

    fn key(
        id: Option<String>,
        key: jsonwebtoken::DecodingKey,
        algorithms: &[jsonwebtoken::Algorithm],
    ) -> JwtKey {
        let mut validation = jsonwebtoken::Validation::new(algorithms[0]);
        validation.algorithms = algorithms.to_vec();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtKey {
            id,
            key,
            validation,
        }
    }

    /// HMAC-SHA256 tokens signed with `secret`.
    pub fn hs256(secret: &[u8]) -> Self {
        use jsonwebtoken::{Algorithm, DecodingKey};
        Self::with_keys(vec![Self::key(
            None,
            DecodingKey::from_secret(secret),
            &[Algorithm::HS256],
        )])
    }

    /// Tokens signed with the private half of `public_key`, a PEM
    /// `PUBLIC KEY` (or `RSA PUBLIC KEY`) block: RSA (RS256/384/512,
    /// PS256/384/512), ECDSA on P-256 or P-384 (ES256, ES384), or Ed25519
    /// (EdDSA), told apart by the key itself.
    pub fn public_key_pem(public_key: &[u8]) -> Result<Self, JwtKeyError> {
        use jsonwebtoken::{Algorithm, DecodingKey};
        const RSA: &[Algorithm] = &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ];
        const EC: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];
        let text = std::str::from_utf8(public_key).unwrap_or_default();
        if text.contains("PRIVATE KEY") {
            return Err(JwtKeyError(
                "this is a private key: give the public key (openssl pkey -pubout)".into(),
            ));
        }
        let key = if let Ok(key) = DecodingKey::from_rsa_pem(public_key) {
            Self::key(None, key, RSA)
        } else if let Ok(key) = DecodingKey::from_ec_pem(public_key) {
            Self::key(None, key, EC)
        } else if let Ok(key) = DecodingKey::from_ed_pem(public_key) {
            Self::key(None, key, &[Algorithm::EdDSA])
        } else {
            return Err(JwtKeyError(
                "not a PEM public key of RSA, ECDSA (P-256, P-384) or Ed25519".into(),
            ));
        };
        Ok(Self::with_keys(vec![key]))
    }

    /// RSA (RS256) tokens, checked with the issuer's public key in PEM
    /// form. Same as [`public_key_pem`](Self::public_key_pem), kept for
    /// callers that name the algorithm.
    pub fn rs256_pem(public_key: &[u8]) -> Result<Self, JwtKeyError> {
        Self::public_key_pem(public_key)
    }

    /// ECDSA P-256 (ES256) tokens, checked with the issuer's public key in
    /// PEM form. Same as [`public_key_pem`](Self::public_key_pem).
    pub fn es256_pem(public_key: &[u8]) -> Result<Self, JwtKeyError> {
        Self::public_key_pem(public_key)
    }

    /// Tokens signed with any key of a JSON Web Key Set (RFC 7517, as an
    /// identity provider publishes it at its `jwks_uri`): the token's `kid`
    /// header picks the key (a set of one key also takes tokens without
    /// `kid`). RSA, EC (P-256, P-384) and OKP (Ed25519) keys are used, with
    /// the key's `alg` when it names one; symmetric (`oct`) keys and keys
    /// whose `use` is `enc` are skipped, and a set with no usable key is an
    /// error.
    pub fn jwks(json: &[u8]) -> Result<Self, JwtKeyError> {
        use jsonwebtoken::Algorithm;
        use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
        let set: JwkSet = serde_json::from_slice(json)
            .map_err(|error| JwtKeyError(format!("not a JSON Web Key Set: {error}")))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let kind: &[Algorithm] = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
                AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    EllipticCurve::P256 => &[Algorithm::ES256],
                    EllipticCurve::P384 => &[Algorithm::ES384],
                    _ => continue,
                },
                AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                    &[Algorithm::EdDSA]
                }
                _ => continue,
            };
            let algorithms: Vec<Algorithm> = match jwk.common.key_algorithm {
                Some(named) => match named.to_string().parse::<Algorithm>() {
                    Ok(algorithm) if kind.contains(&algorithm) => vec![algorithm],
                    _ => continue,
                },
                None => kind.to_vec(),
            };
            let Ok(key) = jsonwebtoken::DecodingKey::from_jwk(jwk) else {
                continue;
            };
            keys.push(Self::key(jwk.common.key_id.clone(), key, &algorithms));
        }
        if keys.is_empty() {
            return Err(JwtKeyError(
                "the key set holds no usable public key (RSA, EC P-256/P-384 or Ed25519)".into(),
            ));
        }
        Ok(Self::with_keys(keys))
    }

    /// Tokens must carry one of these `aud` values. Without this, a token
    /// that carries any `aud` is refused (it was meant for someone named).
    pub fn audience(mut self, audiences: &[&str]) -> Self {
        for key in &mut self.keys {
            key.validation.set_audience(audiences);
            key.validation.required_spec_claims.insert("aud".to_owned());
        }
        self
    }

    /// Tokens must carry one of these `iss` values.
    pub fn issuer(mut self, issuers: &[&str]) -> Self {
        for key in &mut self.keys {
            key.validation.set_issuer(issuers);
            key.validation.required_spec_claims.insert("iss".to_owned());
        }
        self
    }

    /// Clock skew tolerated on `exp` and `nbf`. Default: 60 s.
    pub fn leeway(mut self, leeway: std::time::Duration) -> Self {
        for key in &mut self.keys {
            key.validation.leeway = leeway.as_secs();
        }
        self
    }

    /// Only clients whose claims pass `rule` may connect; others get 403.
    pub fn authorize(mut self, rule: impl Fn(&Value) -> bool + Send + Sync + 'static) -> Self {
        self.authorize = Some(Arc::new(rule));
        self
    }

    /// The key `token` names (by `kid`), or the only key.
    fn key_for(&self, token: &str) -> Option<&JwtKey> {
        let kid = jsonwebtoken::decode_header(token).ok()?.kid;
        match (&kid, self.keys.as_slice()) {
            (_, [only]) if only.id.is_none() => Some(only),
            (None, [only]) => Some(only),
            (Some(kid), keys) => keys.iter().find(|key| key.id.as_deref() == Some(kid)),
            (None, _) => None,
        }
    }

    pub(crate) fn check(&self, request: &http::request::Parts) -> Result<Identity, Rejection> {
        let unauthorized = |why| refuse(StatusCode::UNAUTHORIZED, "Bearer", why);
        let token = credential(request, "Bearer")
            .ok_or_else(|| unauthorized("a bearer token is required"))?;
        let key = self
            .key_for(token)
            .ok_or_else(|| unauthorized("invalid or expired token"))?;
        let data = jsonwebtoken::decode::<Value>(token, &key.key, &key.validation)
            .map_err(|_| unauthorized("invalid or expired token"))?;
        let claims = data.claims;
        let subject = match claims.get("sub").and_then(Value::as_str) {
            Some(subject) if !subject.is_empty() => subject.to_owned(),
            _ => return Err(unauthorized("the token names no subject (`sub`)")),
        };
        if let Some(rule) = &self.authorize
            && !rule(&claims)
        {
            return Err(refuse(StatusCode::FORBIDDEN, "Bearer", "not allowed here"));
        }
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
#[derive(Clone)]
pub struct KeyAuth {
    keys: Vec<(KeyDigest, String)>,
    scheme: &'static str,
}

impl Default for KeyAuth {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            scheme: "Key",
        }
    }
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
            .field("scheme", &self.scheme)
            .finish()
    }
}

impl KeyAuth {
    /// No keys yet (everyone is refused).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads keys from `Authorization: <scheme> <key>` instead of the
    /// default `Key` scheme (`"Bearer"` for an API token, say).
    pub fn scheme(mut self, scheme: &'static str) -> Self {
        self.scheme = scheme;
        self
    }

    /// Accepts `key`, identifying the client as `subject`.
    pub fn key(mut self, key: impl AsRef<[u8]>, subject: impl Into<String>) -> Self {
        self.keys.push((key_digest(key.as_ref()), subject.into()));
        self
    }

    pub(crate) fn check(&self, request: &http::request::Parts) -> Result<Identity, Rejection> {
        let unauthorized = |why| refuse(StatusCode::UNAUTHORIZED, self.scheme, why);
        let given =
            credential(request, self.scheme).ok_or_else(|| unauthorized("a key is required"))?;
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

/// Any authenticator, with the credential taken from the `Authorization`
/// header or, when the request has none, from the query parameter `param`
/// (sent as `<scheme> <value>`): browsers cannot set headers on a
/// WebSocket, so a page passes its token as `?token=...`.
///
/// ```
/// use ws_async::auth::{BearerJwt, HeaderOrQuery};
/// let auth = HeaderOrQuery::new(BearerJwt::hs256(b"a secret of at least 32 bytes...."), "Bearer", "token");
/// # let _ = auth;
/// ```
///
/// A query string may reach logs that headers do not (proxies, access
/// logs, browser history): prefer short-lived tokens there.
#[derive(Debug, Clone)]
pub struct HeaderOrQuery<A> {
    inner: A,
    scheme: &'static str,
    param: &'static str,
}

impl<A: Authenticator> HeaderOrQuery<A> {
    /// `inner`, reading `Authorization: <scheme> <credential>` or
    /// `?<param>=<credential>`.
    pub fn new(inner: A, scheme: &'static str, param: &'static str) -> Self {
        Self {
            inner,
            scheme,
            param,
        }
    }
}

/// The first value of the query parameter `name`, decoded.
pub fn query_param(request: &http::request::Parts, name: &str) -> Option<String> {
    let query = request.uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

impl<A: Authenticator> Authenticator for HeaderOrQuery<A> {
    async fn authenticate(&self, request: &http::request::Parts) -> Result<Identity, Rejection> {
        if request.headers.contains_key(AUTHORIZATION) {
            return self.inner.authenticate(request).await;
        }
        // The inner authenticator sees the request with the credential
        // moved into the header (extensions are not copied).
        let mut parts = http::Request::new(()).into_parts().0;
        parts.method = request.method.clone();
        parts.uri = request.uri.clone();
        parts.version = request.version;
        parts.headers = request.headers.clone();
        if let Some(credential) = query_param(request, self.param)
            && let Ok(value) = HeaderValue::from_str(&format!("{} {credential}", self.scheme))
        {
            parts.headers.insert(AUTHORIZATION, value);
        }
        self.inner.authenticate(&parts).await
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

    #[cfg(feature = "jwt")]
    fn signed(claims: Value, header: Header, key: &EncodingKey) -> String {
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    #[cfg(feature = "jwt")]
    fn bearer(token: &str) -> http::request::Parts {
        request(&[&format!("Bearer {token}")])
    }

    #[cfg(feature = "jwt")]
    fn now() -> u64 {
        in_an_hour() - 3600
    }

    #[cfg(feature = "jwt")]
    fn testdata(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    // A token without `sub`, or with a `sub` that is not a non-empty
    // string, would name the user "" shared by every such token.
    #[cfg(feature = "jwt")]
    #[test]
    fn jwt_subject_must_be_a_non_empty_string() {
        let auth = BearerJwt::hs256(b"secret");
        for claims in [
            json!({"exp": in_an_hour()}),
            json!({"sub": 42, "exp": in_an_hour()}),
            json!({"sub": "", "exp": in_an_hour()}),
            json!({"sub": null, "exp": in_an_hour()}),
            json!({"sub": ["a"], "exp": in_an_hour()}),
        ] {
            let token = token(claims.clone(), b"secret");
            assert_eq!(status(auth.check(&bearer(&token))), 401, "{claims}");
        }
        let good = token(json!({"sub": "ann", "exp": in_an_hour()}), b"secret");
        assert_eq!(auth.check(&bearer(&good)).unwrap().subject, "ann");
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn jwt_not_before_is_checked() {
        let auth = BearerJwt::hs256(b"secret");
        let early = token(
            json!({"sub": "ann", "exp": in_an_hour(), "nbf": now() + 600}),
            b"secret",
        );
        assert_eq!(status(auth.check(&bearer(&early))), 401);
        let ready = token(
            json!({"sub": "ann", "exp": in_an_hour(), "nbf": now() - 10}),
            b"secret",
        );
        assert!(auth.check(&bearer(&ready)).is_ok());
        // Within the leeway (60 s) of a clock a little behind the issuer's.
        let skewed = token(
            json!({"sub": "ann", "exp": in_an_hour(), "nbf": now() + 30}),
            b"secret",
        );
        assert!(auth.check(&bearer(&skewed)).is_ok());
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn jwt_audience_and_issuer() {
        let secret = b"secret";
        let claims = |extra: Value| {
            let mut claims = json!({"sub": "ann", "exp": in_an_hour()});
            claims
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            token(claims, secret)
        };
        let auth = BearerJwt::hs256(secret)
            .audience(&["chat"])
            .issuer(&["https://id.example"]);
        let right = claims(json!({"aud": "chat", "iss": "https://id.example"}));
        assert!(auth.check(&bearer(&right)).is_ok());
        for wrong in [
            json!({"iss": "https://id.example"}),
            json!({"aud": "chat"}),
            json!({"aud": "billing", "iss": "https://id.example"}),
            json!({"aud": "chat", "iss": "https://evil.example"}),
        ] {
            let token = claims(wrong.clone());
            assert_eq!(status(auth.check(&bearer(&token))), 401, "{wrong}");
        }
        // Without an audience asked for, a token meant for someone named
        // is not taken.
        let plain = BearerJwt::hs256(secret);
        assert_eq!(
            status(plain.check(&bearer(&claims(json!({"aud": "billing"}))))),
            401
        );
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn jwt_public_keys_of_each_kind() {
        use jsonwebtoken::Algorithm;
        let claims = json!({"sub": "ann", "exp": in_an_hour()});
        let rsa = EncodingKey::from_rsa_pem(&testdata("jwt-rsa-private.pem")).unwrap();
        let ec = EncodingKey::from_ec_pem(&testdata("jwt-ec-private.pem")).unwrap();
        let ed = EncodingKey::from_ed_pem(&testdata("jwt-ed25519-private.pem")).unwrap();
        let by_rsa = BearerJwt::public_key_pem(&testdata("jwt-rsa-public.pem")).unwrap();
        let by_ec = BearerJwt::public_key_pem(&testdata("jwt-ec-public.pem")).unwrap();
        let by_ed = BearerJwt::public_key_pem(&testdata("jwt-ed25519-public.pem")).unwrap();
        for (algorithm, key, auth) in [
            (Algorithm::RS256, &rsa, &by_rsa),
            (Algorithm::PS256, &rsa, &by_rsa),
            (Algorithm::ES256, &ec, &by_ec),
            (Algorithm::EdDSA, &ed, &by_ed),
        ] {
            let token = signed(claims.clone(), Header::new(algorithm), key);
            assert_eq!(
                auth.check(&bearer(&token)).unwrap().subject,
                "ann",
                "{algorithm:?}"
            );
            // Each verifier takes only its own key's tokens.
            for other in [&by_rsa, &by_ec, &by_ed] {
                if !std::ptr::eq(other, auth) {
                    assert_eq!(status(other.check(&bearer(&token))), 401, "{algorithm:?}");
                }
            }
        }
        assert!(BearerJwt::public_key_pem(&testdata("jwt-rsa-private.pem")).is_err());
        assert!(BearerJwt::public_key_pem(b"not a key").is_err());
    }

    // The classic attacks on public-key JWT verification, as the attacker
    // makes them: HMAC keyed with the public key's text, and `alg: none`.
    #[cfg(feature = "jwt")]
    #[test]
    fn jwt_algorithm_confusion_and_none_are_refused() {
        use jsonwebtoken::Algorithm;
        let public = testdata("jwt-rsa-public.pem");
        let auth = BearerJwt::public_key_pem(&public).unwrap();
        let claims = json!({"sub": "admin", "exp": in_an_hour()});
        let confused = signed(
            claims.clone(),
            Header::new(Algorithm::HS256),
            &EncodingKey::from_secret(&public),
        );
        assert_eq!(status(auth.check(&bearer(&confused))), 401);
        let jwks = BearerJwt::jwks(&testdata("jwks.json")).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        let confused = signed(claims.clone(), header, &EncodingKey::from_secret(&public));
        assert_eq!(status(jwks.check(&bearer(&confused))), 401);

        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(claims.to_string())
        );
        assert_eq!(status(auth.check(&bearer(&none))), 401);
        assert_eq!(status(jwks.check(&bearer(&none))), 401);
        assert_eq!(status(BearerJwt::hs256(b"s").check(&bearer(&none))), 401);
    }

    #[cfg(feature = "jwt")]
    #[test]
    fn jwks_picks_the_key_by_its_id() {
        use jsonwebtoken::Algorithm;
        let auth = BearerJwt::jwks(&testdata("jwks.json")).unwrap();
        let claims = json!({"sub": "ann", "exp": in_an_hour()});
        let rsa = EncodingKey::from_rsa_pem(&testdata("jwt-rsa-private.pem")).unwrap();
        let ec = EncodingKey::from_ec_pem(&testdata("jwt-ec-private.pem")).unwrap();
        let ed = EncodingKey::from_ed_pem(&testdata("jwt-ed25519-private.pem")).unwrap();
        let with = |algorithm, kid: Option<&str>, key: &EncodingKey| {
            let mut header = Header::new(algorithm);
            header.kid = kid.map(str::to_owned);
            signed(claims.clone(), header, key)
        };
        for token in [
            with(Algorithm::RS256, Some("rsa-1"), &rsa),
            with(Algorithm::ES256, Some("ec-1"), &ec),
            with(Algorithm::EdDSA, Some("ed-1"), &ed),
        ] {
            assert_eq!(auth.check(&bearer(&token)).unwrap().subject, "ann");
        }
        for token in [
            // The RSA key says `alg: RS256`: PS256 is not taken with it.
            with(Algorithm::PS256, Some("rsa-1"), &rsa),
            // A key id naming another key.
            with(Algorithm::ES256, Some("rsa-1"), &ec),
            with(Algorithm::RS256, Some("ec-1"), &rsa),
            // No key id in a set of several; an unknown one.
            with(Algorithm::RS256, None, &rsa),
            with(Algorithm::RS256, Some("rsa-2"), &rsa),
            // The symmetric key in the set is never used.
            with(
                Algorithm::HS256,
                Some("secret-1"),
                &EncodingKey::from_secret(b"a symmetric key in a public set!"),
            ),
        ] {
            assert_eq!(status(auth.check(&bearer(&token))), 401);
        }
        assert!(BearerJwt::jwks(b"{}").is_err());
        assert!(BearerJwt::jwks(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).is_err());
    }

    fn run<T>(future: impl Future<Output = T>) -> T {
        use futures_util::FutureExt as _;
        future
            .now_or_never()
            .expect("authenticators here answer at once")
    }

    #[test]
    fn header_or_query_takes_the_header_first() {
        let auth = HeaderOrQuery::new(KeyAuth::new().key("k-alpha", "alpha"), "Key", "token");
        let at = |uri: &str, header: Option<&str>| {
            let mut builder = http::Request::builder().uri(uri);
            if let Some(value) = header {
                builder = builder.header(AUTHORIZATION, value);
            }
            builder.body(()).unwrap().into_parts().0
        };
        let subject = |parts| run(auth.authenticate(&parts)).map(|i| i.subject);
        assert_eq!(subject(at("/c?token=k-alpha", None)).unwrap(), "alpha");
        assert_eq!(
            subject(at("/c?x=1&token=k%2Dalpha", None)).unwrap(),
            "alpha"
        );
        assert_eq!(subject(at("/c", Some("Key k-alpha"))).unwrap(), "alpha");
        // A header present is the credential, right or wrong.
        assert_eq!(
            status(subject(at("/c?token=k-alpha", Some("Key wrong"))).map(Identity::new)),
            401
        );
        assert_eq!(status(subject(at("/c", None)).map(Identity::new)), 401);
        assert_eq!(
            status(subject(at("/c?token=", None)).map(Identity::new)),
            401
        );
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
        let bearer = KeyAuth::new().scheme("Bearer").key("k-alpha", "alpha");
        assert_eq!(
            bearer.check(&request(&["Bearer k-alpha"])).unwrap().subject,
            "alpha"
        );
        let refused = bearer.check(&request(&["Key k-alpha"])).unwrap_err();
        assert_eq!(refused.response().headers()[WWW_AUTHENTICATE], "Bearer");
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

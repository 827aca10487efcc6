//! JWT bearer authentication with jsonwebtoken: HS256, RS256 or ES256 keys
//! from the config, a PEM file or a JWKS file; issuer, audience, and
//! `exp`/`nbf` checked with leeway. Verified claims go to the guest; a
//! route's required roles and scopes are checked before it runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use xxhash_rust::xxh3::Xxh3Builder;

use http::{HeaderValue, StatusCode, header};

use crate::body::Body;
use crate::capabilities::config::ValueSource;
use crate::error::error_response;

/// `[auth]` in the host config or a sidecar.
///
/// ```toml
/// [auth]
/// algorithm = "HS256"                 # or RS256, ES256
/// secret = { env = "JWT_SECRET" }     # HS256
/// # public-key-file = "jwt.pem"       # RS256 / ES256
/// # jwks-file = "jwks.json"           # any, keys picked by `kid`
/// issuer = "https://auth.example"
/// audience = "shop"
/// leeway-s = 30
/// required = false                    # true: every route needs a token
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthSettings {
    pub algorithm: String,
    #[serde(default)]
    pub secret: Option<ValueSource>,
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default = "AuthSettings::default_leeway")]
    pub leeway_s: u64,
    #[serde(default)]
    pub required: bool,
}

impl AuthSettings {
    fn default_leeway() -> u64 {
        30
    }
}

/// A verifier built from [`AuthSettings`].
pub struct Auth {
    /// Keys by `kid`; `None` matches a token without one.
    keys: Vec<(Option<String>, DecodingKey)>,
    validation: Validation,
    /// Every route needs a valid token, not only guarded ones.
    pub required: bool,
    /// Tokens verified lately, by their exact text: a client sends the same
    /// token many times, and checking its signature once is enough. An entry
    /// is used only until its `valid_until`. Only tokens that verified get
    /// in, so a fast unkeyed hash is safe; when full, it is emptied (each
    /// client's next request verifies again). On every request's path: a
    /// read lock and one hash, less than a general-purpose cache costs.
    verified: RwLock<HashMap<Box<str>, Arc<Verified>, Xxh3Builder>>,
}

/// A token that verified: its claims, and as JSON for the guest.
pub struct Verified {
    pub claims: Value,
    pub json: String,
    /// Until when it may be used without checking again, in seconds since
    /// the Unix epoch: `exp` plus leeway, and at most a minute from now.
    valid_until: u64,
}

/// How many verified tokens are remembered, and for how long at most.
const VERIFIED_TOKENS: usize = 10_000;
const VERIFIED_FOR: Duration = Duration::from_secs(60);

/// Why a request was refused.
#[derive(Debug)]
pub enum Denied {
    /// 401: no token, or not a valid one.
    Unauthenticated(String),
    /// 403: a valid token without a role or scope the route requires.
    Forbidden(String),
}

impl Denied {
    /// A 401 with a `WWW-Authenticate` challenge, or a 403.
    pub fn response(self) -> http::Response<Body> {
        match self {
            Denied::Unauthenticated(why) => {
                let mut response =
                    error_response(StatusCode::UNAUTHORIZED, &format!("Unauthorized: {why}."));
                let challenge = format!(
                    "Bearer realm=\"cello\", error=\"invalid_token\", error_description=\"{}\"",
                    why.replace('"', "'")
                );
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
                response
            }
            Denied::Forbidden(why) => {
                error_response(StatusCode::FORBIDDEN, &format!("Forbidden: {why}."))
            }
        }
    }
}

impl Auth {
    /// The verifier, or a sentence naming the bad field; relative paths are
    /// taken from `base` (the directory of the file that set them).
    pub fn new(settings: &AuthSettings, base: &Path) -> Result<Self, String> {
        let algorithm = match settings.algorithm.as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(format!(
                    "[auth] algorithm: unknown algorithm {other:?}; use HS256, RS256 or ES256"
                ));
            }
        };
        let read = |field: &str, path: &Path| {
            let path = base.join(path);
            std::fs::read(&path)
                .map_err(|e| format!("[auth] {field}: cannot read {}: {e}", path.display()))
        };
        let mut keys = Vec::new();
        if let Some(file) = &settings.jwks_file {
            let set: JwkSet = serde_json::from_slice(&read("jwks-file", file)?)
                .map_err(|e| format!("[auth] jwks-file: not a JWKS document: {e}"))?;
            for jwk in &set.keys {
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| format!("[auth] jwks-file: unusable key: {e}"))?;
                keys.push((jwk.common.key_id.clone(), key));
            }
        }
        if let Some(file) = &settings.public_key_file {
            let pem = read("public-key-file", file)?;
            let key = match algorithm {
                Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                _ => {
                    return Err(
                        "[auth] public-key-file: HS256 takes a secret, not a key file".into(),
                    );
                }
            }
            .map_err(|e| format!("[auth] public-key-file: not a PEM public key: {e}"))?;
            keys.push((None, key));
        }
        if let Some(secret) = &settings.secret {
            if algorithm != Algorithm::HS256 {
                return Err(format!(
                    "[auth] secret: {algorithm:?} takes a key file, not a secret"
                ));
            }
            let secret = secret.resolve("auth", "secret")?;
            keys.push((None, DecodingKey::from_secret(secret.as_bytes())));
        }
        if keys.is_empty() {
            return Err("[auth] needs a key: secret, public-key-file or jwks-file".into());
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = settings.leeway_s;
        validation.validate_nbf = true;
        match &settings.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &settings.issuer {
            validation.set_issuer(&[issuer]);
        }
        // A configured audience or issuer is a claim the token must carry:
        // a token without one would otherwise pass as if it matched.
        let required = [
            Some("exp"),
            settings.audience.as_ref().map(|_| "aud"),
            settings.issuer.as_ref().map(|_| "iss"),
        ];
        validation.set_required_spec_claims(&required.into_iter().flatten().collect::<Vec<_>>());
        Ok(Self {
            keys,
            validation,
            required: settings.required,
            verified: RwLock::default(),
        })
    }

    /// The verified claims of the request's bearer token.
    pub fn verify(&self, authorization: Option<&str>) -> Result<Arc<Verified>, Denied> {
        let Some(header) = authorization else {
            return Err(Denied::Unauthenticated("no bearer token".into()));
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| Denied::Unauthenticated("not a bearer token".into()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let remembered = self.verified.read().unwrap().get(token).cloned();
        if let Some(verified) = remembered.filter(|v| now < v.valid_until) {
            return Ok(verified);
        }
        let claims = self.check(token)?;
        let exp = claims.get("exp").and_then(Value::as_u64);
        let verified = Arc::new(Verified {
            json: claims.to_string(),
            valid_until: exp
                .map_or(u64::MAX, |exp| exp + self.validation.leeway)
                .min(now + VERIFIED_FOR.as_secs()),
            claims,
        });
        let mut remembered = self.verified.write().unwrap();
        if remembered.len() >= VERIFIED_TOKENS {
            remembered.clear();
        }
        remembered.insert(token.into(), verified.clone());
        Ok(verified)
    }

    /// Checks `token`'s signature and claims.
    fn check(&self, token: &str) -> Result<Value, Denied> {
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|e| Denied::Unauthenticated(format!("malformed token: {e}")))?
            .kid;
        let key = self
            .keys
            .iter()
            .find(|(id, _)| id.is_none() || *id == kid)
            .map(|(_, key)| key)
            .ok_or_else(|| Denied::Unauthenticated("no key for the token's kid".into()))?;
        jsonwebtoken::decode::<Value>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| Denied::Unauthenticated(describe(&e)))
    }
}

fn describe(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::InvalidAudience => "the token is for another audience".into(),
        ErrorKind::InvalidIssuer => "the token is from another issuer".into(),
        ErrorKind::InvalidAlgorithm => "the token uses another algorithm".into(),
        ErrorKind::MissingRequiredClaim(claim) => {
            format!("the token has no {claim:?} claim, and this host requires one")
        }
        _ => format!("invalid token: {error}"),
    }
}

/// Checks that `claims` hold every one of `roles` and `scopes`. Roles are
/// read from `roles` (a list) or `role`; scopes from `scope` (space
/// separated) or `scp`.
pub fn authorize(claims: &Value, roles: &[String], scopes: &[String]) -> Result<(), Denied> {
    let held = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter_map(|name| claims.get(*name))
            .flat_map(|value| match value {
                Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    };
    let have_roles = held(&["roles", "role"]);
    if let Some(missing) = roles.iter().find(|r| !have_roles.contains(r)) {
        return Err(Denied::Forbidden(format!(
            "this route needs the role {missing:?}"
        )));
    }
    let have_scopes = held(&["scope", "scp"]);
    if let Some(missing) = scopes.iter().find(|s| !have_scopes.contains(s)) {
        return Err(Denied::Forbidden(format!(
            "this route needs the scope {missing:?}"
        )));
    }
    Ok(())
}

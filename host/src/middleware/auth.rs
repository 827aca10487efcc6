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
                // RFC 6750 allows no quote, backslash or byte outside
                // printable ASCII here; the sentence may quote the token.
                let description: String = why
                    .chars()
                    .map(|c| match c {
                        '"' => '\'',
                        '\\' => '/',
                        ' '..='~' => c,
                        _ => '?',
                    })
                    .collect();
                let challenge = format!(
                    "Bearer realm=\"cello\", error=\"invalid_token\", error_description=\"{description}\""
                );
                let value = HeaderValue::from_str(&challenge).expect("printable ASCII");
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
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

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "a secret of the shop";
    const ISSUER: &str = "https://auth.example";
    const AUDIENCE: &str = "shop";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// HS256 with a literal secret, an issuer and an audience, no leeway.
    fn auth() -> Auth {
        let settings = AuthSettings {
            algorithm: "HS256".into(),
            secret: Some(ValueSource::Literal(SECRET.into())),
            public_key_file: None,
            jwks_file: None,
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            leeway_s: 0,
            required: false,
        };
        Auth::new(&settings, Path::new(".")).expect("valid settings")
    }

    /// `claims` signed with `secret`, as an `Authorization` value.
    fn bearer_signed(claims: &Value, secret: &str) -> String {
        let key = EncodingKey::from_secret(secret.as_bytes());
        let token = encode(&Header::default(), claims, &key).expect("a signed token");
        format!("Bearer {token}")
    }

    fn bearer(claims: &Value) -> String {
        bearer_signed(claims, SECRET)
    }

    /// Claims this host accepts, with `extra` added.
    fn claims(extra: Value) -> Value {
        let mut claims = json!({
            "sub": "alice",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": now() + 600,
        });
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        claims
    }

    /// The sentence of a 401, or a panic if it was anything else.
    fn unauthenticated(result: Result<Arc<Verified>, Denied>) -> String {
        match result {
            Err(Denied::Unauthenticated(why)) => why,
            Err(Denied::Forbidden(why)) => panic!("a 403, not a 401: {why}"),
            Ok(verified) => panic!("verified: {}", verified.json),
        }
    }

    #[test]
    fn a_valid_token_verifies_and_its_claims_come_back() {
        let auth = auth();
        let sent = claims(json!({ "roles": ["admin"] }));
        let verified = auth.verify(Some(&bearer(&sent))).expect("verifies");
        assert_eq!(verified.claims, sent);
        assert_eq!(serde_json::from_str::<Value>(&verified.json).unwrap(), sent);
    }

    #[test]
    fn a_lowercase_bearer_scheme_is_accepted() {
        let token = bearer(&claims(json!({})));
        let lowercase = token.replacen("Bearer ", "bearer ", 1);
        assert!(auth().verify(Some(&lowercase)).is_ok());
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let token = bearer_signed(&claims(json!({})), "someone else's secret");
        let why = unauthenticated(auth().verify(Some(&token)));
        assert_eq!(why, "the token's signature does not verify");
    }

    #[test]
    fn an_expired_token_is_refused() {
        let token = bearer(&claims(json!({ "exp": now() - 10 })));
        let why = unauthenticated(auth().verify(Some(&token)));
        assert_eq!(why, "the token has expired");
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let token = bearer(&claims(json!({ "nbf": now() + 300 })));
        let why = unauthenticated(auth().verify(Some(&token)));
        assert_eq!(why, "the token is not valid yet");
    }

    #[test]
    fn a_token_from_another_issuer_is_refused() {
        let token = bearer(&claims(json!({ "iss": "https://evil.example" })));
        let why = unauthenticated(auth().verify(Some(&token)));
        assert_eq!(why, "the token is from another issuer");
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let token = bearer(&claims(json!({ "aud": "payroll" })));
        let why = unauthenticated(auth().verify(Some(&token)));
        assert_eq!(why, "the token is for another audience");
    }

    #[test]
    fn a_token_without_a_required_claim_is_refused() {
        for claim in ["exp", "iss", "aud"] {
            let mut sent = claims(json!({}));
            sent.as_object_mut().unwrap().remove(claim);
            let why = unauthenticated(auth().verify(Some(&bearer(&sent))));
            assert_eq!(
                why,
                format!("the token has no {claim:?} claim, and this host requires one"),
            );
        }
    }

    #[test]
    fn a_request_without_a_bearer_token_is_refused() {
        let auth = auth();
        assert_eq!(unauthenticated(auth.verify(None)), "no bearer token");
        for header in ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Token abc"] {
            let why = unauthenticated(auth.verify(Some(header)));
            assert_eq!(why, "not a bearer token", "{header}");
        }
    }

    #[test]
    fn a_garbage_token_is_refused_as_malformed() {
        let auth = auth();
        for token in ["Bearer garbage", "Bearer a.b.c", "Bearer "] {
            let why = unauthenticated(auth.verify(Some(token)));
            assert!(why.starts_with("malformed token: "), "{token}: {why}");
        }
    }

    #[test]
    fn a_second_request_with_the_same_token_is_answered_from_the_cache() {
        let auth = auth();
        let token = bearer(&claims(json!({})));
        let first = auth.verify(Some(&token)).expect("verifies");
        let second = auth.verify(Some(&token)).expect("verifies again");
        assert!(Arc::ptr_eq(&first, &second), "the same verified token");
        // Kept for at most a minute, and never past `exp` plus leeway.
        assert!(first.valid_until <= now() + VERIFIED_FOR.as_secs());
    }

    #[test]
    fn a_cached_token_past_its_time_is_checked_again() {
        let auth = auth();
        let expired = claims(json!({ "exp": now() - 10 }));
        let token = bearer(&expired);
        // As if it had verified while it was valid, and its time has passed.
        let stale = Arc::new(Verified {
            json: expired.to_string(),
            claims: expired,
            valid_until: now() - 10,
        });
        let text = token.strip_prefix("Bearer ").unwrap();
        auth.verified.write().unwrap().insert(text.into(), stale);
        let why = unauthenticated(auth.verify(Some(&token)));
        assert_eq!(why, "the token has expired");
    }

    #[test]
    fn a_cached_token_is_kept_no_longer_than_its_exp() {
        let auth = auth();
        let exp = now() + 5;
        let token = bearer(&claims(json!({ "exp": exp })));
        let verified = auth.verify(Some(&token)).expect("verifies");
        assert_eq!(verified.valid_until, exp);
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// The sentence of a 403, or a panic if it was anything else.
    fn forbidden(result: Result<(), Denied>) -> String {
        match result {
            Err(Denied::Forbidden(why)) => why,
            other => panic!("not a 403: {other:?}"),
        }
    }

    #[test]
    fn a_route_role_is_read_from_the_roles_claim() {
        let claims = json!({ "roles": ["admin", "editor"] });
        assert!(authorize(&claims, &strings(&["admin"]), &[]).is_ok());
        assert!(authorize(&claims, &strings(&["admin", "editor"]), &[]).is_ok());
        let why = forbidden(authorize(&claims, &strings(&["owner"]), &[]));
        assert_eq!(why, "this route needs the role \"owner\"");
        let single = json!({ "role": "admin" });
        assert!(authorize(&single, &strings(&["admin"]), &[]).is_ok());
    }

    #[test]
    fn a_route_scope_is_read_from_scope_or_scp() {
        let spaced = json!({ "scope": "items:read items:write" });
        assert!(authorize(&spaced, &[], &strings(&["items:write"])).is_ok());
        let listed = json!({ "scp": ["items:read"] });
        assert!(authorize(&listed, &[], &strings(&["items:read"])).is_ok());
        let why = forbidden(authorize(&listed, &[], &strings(&["items:write"])));
        assert_eq!(why, "this route needs the scope \"items:write\"");
    }

    #[test]
    fn a_token_without_roles_or_scopes_is_forbidden_where_they_are_required() {
        let claims = json!({ "sub": "alice" });
        assert!(authorize(&claims, &[], &[]).is_ok());
        forbidden(authorize(&claims, &strings(&["admin"]), &[]));
        forbidden(authorize(&claims, &[], &strings(&["items:read"])));
        // A role is not a scope.
        let roles = json!({ "roles": ["items:read"] });
        forbidden(authorize(&roles, &[], &strings(&["items:read"])));
    }

    #[test]
    fn unauthenticated_is_a_401_with_a_bearer_challenge() {
        let why = "the token is \"odd\"".to_string();
        let response = Denied::Unauthenticated(why).response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap();
        assert_eq!(
            challenge,
            "Bearer realm=\"cello\", error=\"invalid_token\", \
             error_description=\"the token is 'odd'\""
        );
    }

    /// `bytes` in unpadded base64url, as a token's segments are.
    fn base64url(bytes: &[u8]) -> String {
        const DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(DIGITS[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn a_challenge_stays_a_valid_quoted_string_whatever_the_token_says() {
        // The token's own header text comes back in the parser's error.
        let header = base64url(br#"{"alg":"\\ends \"here\" \u00e9\u000a","typ":"JWT"}"#);
        let token = format!("Bearer {header}.e30.c2ln");
        let why = unauthenticated(auth().verify(Some(&token)));
        let response = Denied::Unauthenticated(why).response();
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .expect("a 401 always carries its challenge")
            .to_str()
            .unwrap();
        let description = challenge
            .split_once("error_description=\"")
            .and_then(|(_, rest)| rest.strip_suffix('"'))
            .expect("a quoted description at the end");
        // RFC 6750: no quote, backslash or control character inside.
        let unsafe_char = description
            .chars()
            .find(|c| !matches!(c, ' '..='~') || matches!(c, '"' | '\\'));
        assert_eq!(unsafe_char, None, "{challenge}");
    }

    #[test]
    fn forbidden_is_a_403_without_a_challenge() {
        let response = Denied::Forbidden("this route needs the role \"admin\"".into()).response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn settings_without_a_key_or_with_an_unknown_algorithm_are_refused() {
        let mut settings = AuthSettings {
            algorithm: "HS256".into(),
            secret: None,
            public_key_file: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            leeway_s: 0,
            required: false,
        };
        let no_key = Auth::new(&settings, Path::new(".")).err().unwrap();
        assert_eq!(
            no_key,
            "[auth] needs a key: secret, public-key-file or jwks-file"
        );
        settings.algorithm = "none".into();
        let unknown = Auth::new(&settings, Path::new(".")).err().unwrap();
        assert!(unknown.starts_with("[auth] algorithm:"), "{unknown}");
    }
}

//! Variables and secrets from the sidecar and the host's environment,
//! granted by `config = true` under `[grants]`. Natively, a test client's
//! values stand in, then the environment (`api-url` reads `API_URL`).

use crate::{FromRequest, Request, sys};

/// The variable `name` from `[variables]`.
pub fn get(name: &str) -> Option<String> {
    sys::config_get(name)
}

/// The secret `name` from `[secrets]`.
pub fn secret(name: &str) -> Option<Secret> {
    sys::config_secret(name).map(Secret)
}

/// A secret that prints as `***`; [`Secret::reveal`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Config, as a handler argument: `fn greet(config: Config)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Config;

impl Config {
    pub fn get(&self, name: &str) -> Option<String> {
        get(name)
    }

    pub fn secret(&self, name: &str) -> Option<Secret> {
        secret(name)
    }
}

impl FromRequest for Config {
    type Rejection = std::convert::Infallible;

    async fn from_request(_req: &Request) -> Result<Self, Self::Rejection> {
        Ok(Config)
    }
}

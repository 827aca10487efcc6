//! Native middleware around every component, in this order:
//!
//! 1. request id — `X-Request-Id` accepted or made, returned, and passed on
//!    (in `server`);
//! 2. CORS — preflights answered here, headers on every response
//!    (tower-http);
//! 3. auth — a bearer JWT verified, then the route's roles and scopes;
//!    401/403 before the guest runs ([`auth`]);
//! 4. rate limits — the component's, then the route's; 429
//!    ([`rate_limit`]);
//! 5. body limit (413) and timeout (504), per component (in `server` and
//!    the pools);
//! 6. the component;
//! 7. security headers and compression on the way out (tower-http), and the
//!    access log line.
//!
//! CORS, auth and rate limits are set in the host config and overridden per
//! component by the same table in its sidecar; routes add roles, scopes and
//! their own rate limits in `describe()`. Compression, security headers and
//! the access log are host-wide.

pub mod auth;
pub mod cors;
pub mod rate_limit;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::bindings::cello::component::types::AppPolicy;
use auth::{Auth, AuthSettings};
pub use cors::{Cors, CorsSettings};
use rate_limit::{Limiter, RateLimitSettings};

/// `[app-policy]` in the host config: which of an app's own wishes (from
/// `describe()`) the host honours. An operator's `[cors]` table replaces
/// the app's wish either way.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AppPolicySettings {
    #[serde(default = "enabled")]
    pub cors: bool,
    #[serde(default = "enabled")]
    pub access_log: bool,
}

impl Default for AppPolicySettings {
    fn default() -> Self {
        Self {
            cors: true,
            access_log: true,
        }
    }
}

/// The per-component tables, wherever they were read, with the directory
/// relative paths in them start from.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub cors: Option<CorsSettings>,
    pub auth: Option<(AuthSettings, PathBuf)>,
    pub rate_limit: Option<RateLimitSettings>,
    /// An access log line for each of the component's requests.
    pub access_log: bool,
}

impl Settings {
    /// These settings with each table `over` sets replacing this one's.
    /// A `[rate-limit]` of `over` naming no `trusted-proxies` keeps this
    /// one's: which proxies stand in front of the host is the host's to
    /// say (a tenant cannot name any).
    pub fn overridden_by(&self, over: &Settings) -> Settings {
        let rate_limit = match (&over.rate_limit, &self.rate_limit) {
            (Some(over), Some(host)) if over.trusted_proxies.is_empty() => {
                Some(RateLimitSettings {
                    trusted_proxies: host.trusted_proxies.clone(),
                    ..over.clone()
                })
            }
            (over, host) => over.clone().or_else(|| host.clone()),
        };
        Settings {
            cors: over.cors.clone().or_else(|| self.cors.clone()),
            auth: over.auth.clone().or_else(|| self.auth.clone()),
            rate_limit,
            access_log: over.access_log || self.access_log,
        }
    }

    /// These settings with the wishes an app declared, as far as `allowed`
    /// lets them: the operator's own tables win.
    pub fn with_app(mut self, wishes: &AppPolicy, allowed: &AppPolicySettings) -> Settings {
        if self.cors.is_none() && allowed.cors {
            self.cors = wishes.cors.as_ref().map(CorsSettings::from);
        }
        self.access_log |= wishes.access_log && allowed.access_log;
        self
    }
}

/// The middleware of one component, built from its settings.
#[derive(Default)]
pub struct Middleware {
    pub cors: Option<Cors>,
    pub auth: Option<Auth>,
    pub rate_limit: Option<Limiter>,
    /// Proxies whose `X-Forwarded-For` is believed, for client-address keys.
    pub trusted_proxies: Vec<IpAddr>,
    /// An access log line for each request, whatever the host-wide setting.
    pub access_log: bool,
}

impl Middleware {
    /// Builds every configured layer; the error names the table and field.
    pub fn new(settings: &Settings) -> Result<Self, String> {
        Ok(Self {
            cors: settings.cors.as_ref().map(Cors::new).transpose()?,
            auth: settings
                .auth
                .as_ref()
                .map(|(auth, base)| Auth::new(auth, base))
                .transpose()?,
            rate_limit: settings
                .rate_limit
                .as_ref()
                .map(|r| {
                    let policy = r.policy()?;
                    Limiter::new(&policy).map_err(|e| format!("[rate-limit] {e}"))
                })
                .transpose()?,
            trusted_proxies: settings
                .rate_limit
                .as_ref()
                .map(|r| r.trusted_proxies.clone())
                .unwrap_or_default(),
            access_log: settings.access_log,
        })
    }
}

/// `[compression]` in the host config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CompressionSettings {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Smaller bodies go out as they are.
    #[serde(default = "CompressionSettings::default_min_bytes")]
    pub min_bytes: u64,
}

impl CompressionSettings {
    fn default_min_bytes() -> u64 {
        1024
    }
}

impl Default for CompressionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            min_bytes: Self::default_min_bytes(),
        }
    }
}

/// `[security-headers]` in the host config: headers added to every
/// response that does not set them itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecurityHeaderSettings {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// `Strict-Transport-Security` max-age; off unless set (TLS ends in
    /// front of the host).
    #[serde(default)]
    pub hsts_max_age_s: Option<u64>,
}

impl Default for SecurityHeaderSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            hsts_max_age_s: None,
        }
    }
}

impl SecurityHeaderSettings {
    /// The headers to add.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        if !self.enabled {
            return Vec::new();
        }
        let mut headers = vec![
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
            (
                HeaderName::from_static("x-frame-options"),
                HeaderValue::from_static("DENY"),
            ),
            (
                HeaderName::from_static("referrer-policy"),
                HeaderValue::from_static("no-referrer"),
            ),
        ];
        if let Some(age) = self.hsts_max_age_s {
            headers.push((
                HeaderName::from_static("strict-transport-security"),
                HeaderValue::from_str(&format!("max-age={age}")).expect("a number"),
            ));
        }
        headers
    }
}

/// `[access-log]` in the host config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AccessLogSettings {
    /// One structured line per request (target `access`).
    #[serde(default)]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

/// The directory a config file's relative paths start from.
pub fn base_dir(file: &Path) -> PathBuf {
    file.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(capacity: u32, proxies: &[&str]) -> Option<RateLimitSettings> {
        Some(RateLimitSettings {
            kind: "token-bucket".into(),
            key: "client-address".into(),
            capacity,
            period_s: 60,
            trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
        })
    }

    /// A component's own limit keeps the host's trusted proxies unless it
    /// names its own: behind a load balancer, a tenant's limit still counts
    /// clients, not the balancer.
    #[test]
    fn a_components_rate_limit_keeps_the_hosts_trusted_proxies() {
        let host = Settings {
            rate_limit: limit(100, &["10.0.0.1"]),
            ..Settings::default()
        };
        let tenant = Settings {
            rate_limit: limit(5, &[]),
            ..Settings::default()
        };
        let merged = host.overridden_by(&tenant).rate_limit.unwrap();
        assert_eq!(merged.capacity, 5);
        assert_eq!(
            merged.trusted_proxies,
            ["10.0.0.1".parse::<IpAddr>().unwrap()]
        );
        let own = Settings {
            rate_limit: limit(5, &["10.0.0.2"]),
            ..Settings::default()
        };
        let merged = host.overridden_by(&own).rate_limit.unwrap();
        assert_eq!(
            merged.trusted_proxies,
            ["10.0.0.2".parse::<IpAddr>().unwrap()]
        );
        let none = host.overridden_by(&Settings::default()).rate_limit.unwrap();
        assert_eq!(none.capacity, 100);
    }
}

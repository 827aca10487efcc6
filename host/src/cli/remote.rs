//! `cello-host tenant ...` and `cello-host push`: the admin API's client.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Where the admin API is, and the token to use.
#[derive(clap::Args)]
pub struct RemoteArgs {
    /// The admin API's address.
    #[arg(long, env = "CELLO_ADMIN_URL", default_value = "http://127.0.0.1:8081")]
    admin: String,
    /// The token: the operator's, or a tenant's for `push`. Falls back to
    /// CELLO_ADMIN_TOKEN.
    #[arg(long, env = "CELLO_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum TenantAction {
    /// Create a tenant with the default quotas (or `--quotas` JSON).
    Create {
        /// The tenant's name: lowercase letters, digits and dashes; its
        /// apps are served under `/t/NAME/`.
        name: String,
        /// Quotas as JSON, as in `{"memory-mb": 64, "requests-per-second": 100}`.
        #[arg(long)]
        quotas: Option<String>,
        /// Grants as JSON, as in `{"kv": true, "outbound": ["https://api.example.com"]}`.
        #[arg(long)]
        grants: Option<String>,
    },
    /// Issue a token for a tenant; it is shown once, with the id that names
    /// it from then on.
    Token {
        /// The tenant's name.
        name: String,
    },
    /// List the ids of a tenant's tokens.
    Tokens {
        /// The tenant's name.
        name: String,
    },
    /// Revoke one of a tenant's tokens, by its id: it is refused from now on.
    Revoke {
        /// The tenant's name.
        name: String,
        /// The token's id, as `token` showed it and `tokens` lists it.
        id: String,
    },
    /// Delete a tenant with all its components and data.
    Delete {
        /// The tenant's name.
        name: String,
    },
    /// List tenants.
    List,
}

/// What to push.
#[derive(clap::Args)]
pub struct PushArgs {
    /// The tenant the component is for; with a tenant's token, its own.
    #[arg(long, env = "CELLO_TENANT")]
    tenant: String,
    /// The component's name (by default the file's, without `.wasm`).
    #[arg(long)]
    name: Option<String>,
    /// Sidecar settings (TOML) to upload with it.
    #[arg(long)]
    settings: Option<PathBuf>,
    /// The component file.
    file: PathBuf,
}

pub async fn tenant(action: TenantAction, remote: &RemoteArgs) -> anyhow::Result<ExitCode> {
    let (method, path, body) = match action {
        TenantAction::Create {
            name,
            quotas,
            grants,
        } => {
            let mut body = serde_json::json!({ "name": name });
            for (key, text) in [("quotas", quotas), ("grants", grants)] {
                if let Some(text) = text {
                    let value: serde_json::Value = serde_json::from_str(&text)
                        .with_context(|| format!("--{key} is not JSON"))?;
                    body[key] = value;
                }
            }
            (Method::POST, "/v1/tenants".to_string(), body.to_string())
        }
        TenantAction::Token { name } => (
            Method::POST,
            format!("/v1/tenants/{name}/tokens"),
            String::new(),
        ),
        TenantAction::Tokens { name } => (
            Method::GET,
            format!("/v1/tenants/{name}/tokens"),
            String::new(),
        ),
        TenantAction::Revoke { name, id } => (
            Method::DELETE,
            format!("/v1/tenants/{name}/tokens/{id}"),
            String::new(),
        ),
        TenantAction::Delete { name } => {
            (Method::DELETE, format!("/v1/tenants/{name}"), String::new())
        }
        TenantAction::List => (Method::GET, "/v1/tenants".into(), String::new()),
    };
    let request = remote
        .request(method, &path)?
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    send(request).await
}

pub async fn push(push: &PushArgs, remote: &RemoteArgs) -> anyhow::Result<ExitCode> {
    let component = std::fs::read(&push.file)
        .with_context(|| format!("cannot read {}", push.file.display()))?;
    let name = match &push.name {
        Some(name) => name.clone(),
        None => push
            .file
            .file_stem()
            .and_then(|s| s.to_str())
            .context("give --name: the file name is not UTF-8")?
            .to_string(),
    };
    let path = format!("/v1/tenants/{}/components/{name}", push.tenant);
    let request = remote.request(Method::PUT, &path)?;
    let request = match &push.settings {
        None => request
            .header(header::CONTENT_TYPE, "application/wasm")
            .body(Full::new(Bytes::from(component)))?,
        Some(file) => {
            let settings =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let (content_type, body) = form(&[("component", component), ("settings", settings)]);
            request
                .header(header::CONTENT_TYPE, content_type)
                .body(Full::new(Bytes::from(body)))?
        }
    };
    send(request).await
}

impl RemoteArgs {
    fn request(&self, method: Method, path: &str) -> anyhow::Result<http::request::Builder> {
        let token = self
            .token
            .clone()
            .or_else(|| std::env::var("CELLO_ADMIN_TOKEN").ok())
            .context("give a token with --token, CELLO_TOKEN or CELLO_ADMIN_TOKEN")?;
        Ok(http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.admin.trim_end_matches('/')))
            .header(header::AUTHORIZATION, format!("Bearer {token}")))
    }
}

/// A `multipart/form-data` body of `fields`, and its content type.
fn form(fields: &[(&str, Vec<u8>)]) -> (String, Vec<u8>) {
    let mut random = [0u8; 16];
    let _ = getrandom::fill(&mut random);
    let boundary: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let boundary = format!("cello-{boundary}");
    let mut body = Vec::new();
    for (name, bytes) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Sends `request`, prints the answer, and fails on an error status.
async fn send(request: http::Request<Full<Bytes>>) -> anyhow::Result<ExitCode> {
    let uri = request.uri().clone();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(request)
        .await
        .with_context(|| format!("cannot reach the admin API at {uri}"))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let text = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(value) => serde_json::to_string_pretty(&value)?,
        Err(_) => String::from_utf8_lossy(&body).into_owned(),
    };
    if status.is_success() {
        if !text.is_empty() {
            println!("{text}");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {status}\n{text}");
        Ok(ExitCode::FAILURE)
    }
}

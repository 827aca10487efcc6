//! Settings: the sidecar `NAME.toml` next to each component, and the host's
//! defaults for what a sidecar leaves out.

use std::path::Path;

use serde::Deserialize;

/// The sidecar file `NAME.toml` beside `NAME.wasm`. Every field is optional.
///
/// ```toml
/// prefix = "/hello"          # serve the component's routes under /hello
///
/// [limits]
/// memory-mb = 256            # all memories of one instance together
/// max-instances = 8          # async event-loop instances; warm sync instances kept
/// async-concurrency = 64     # async requests sharing one instance
/// max-body-kb = 1024         # request body size; larger gets 413
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ComponentConfig {
    /// A path prefix such as `/api`; the guest sees paths without it.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Resource limits for this component.
    #[serde(default)]
    pub limits: LimitSettings,
}

/// Limits a sidecar may set; unset ones take the host's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitSettings {
    /// Linear memory per instance, all memories together, in MiB.
    pub memory_mb: Option<u64>,
    /// Event-loop instances for async routes at once, and warm instances
    /// kept for sync routes.
    pub max_instances: Option<usize>,
    /// Async requests in flight on one instance at once.
    pub async_concurrency: Option<usize>,
    /// Largest request body accepted, in KiB.
    pub max_body_kb: Option<u64>,
}

/// Limits in force for one component after defaults are applied.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of linear memory per instance.
    pub memory_bytes: usize,
    /// Event-loop instances at once; warm sync instances kept.
    pub max_instances: usize,
    /// Async requests in flight on one instance.
    pub async_concurrency: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 512 << 20,
            max_instances: 32,
            async_concurrency: 64,
            max_body_bytes: 10 << 20,
        }
    }
}

impl Limits {
    /// These limits with the sidecar's settings laid over them.
    pub fn with(&self, settings: &LimitSettings) -> Self {
        Self {
            memory_bytes: settings
                .memory_mb
                .map_or(self.memory_bytes, |mb| (mb as usize) << 20),
            max_instances: settings.max_instances.unwrap_or(self.max_instances).max(1),
            async_concurrency: settings
                .async_concurrency
                .unwrap_or(self.async_concurrency)
                .max(1),
            max_body_bytes: settings
                .max_body_kb
                .map_or(self.max_body_bytes, |kb| (kb as usize) << 10),
        }
    }
}

impl ComponentConfig {
    /// Reads the sidecar for `wasm`, or the defaults when there is none.
    pub fn for_component(wasm: &Path) -> Result<Self, String> {
        let sidecar = wasm.with_extension("toml");
        let text = match std::fs::read_to_string(&sidecar) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", sidecar.display())),
        };
        let config: Self = toml::from_str(&text)
            .map_err(|e| format!("{} is not a valid sidecar: {e}", sidecar.display()))?;
        config
            .validate()
            .map_err(|e| format!("{}: {e}", sidecar.display()))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(prefix) = &self.prefix
            && (!prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains('{'))
        {
            return Err(format!(
                "prefix {prefix:?} must start with '/', not end with '/', and hold no {{param}}"
            ));
        }
        Ok(())
    }

    /// The prefix, empty when none is set.
    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or("")
    }
}

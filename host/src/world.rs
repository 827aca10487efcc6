//! Which world a component implements, told from its exports, in one
//! place: the engine chooser reads them from the bytes, the loader from
//! the compiled component.

/// What a component is, by what it exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum World {
    /// A Cello app: `cello:component/app` (`describe`, `handle`,
    /// `handle-async`).
    App,
    /// A Cello app whose exports are plain functions:
    /// `cello:component/sync-app` (`describe`, `handle`, the hooks, and no
    /// `handle-async`).
    SyncApp,
    /// A `wasi:http@0.2` proxy: `wasi:http/incoming-handler`.
    Proxy,
    /// A `wasi:http@0.3` (p3) service: `wasi:http/handler`.
    Service,
    /// Neither; the exports, to say so.
    Unknown(Vec<String>),
}

impl World {
    /// The world of a component exporting `exports` (top-level names).
    pub fn of_exports(exports: Vec<String>) -> Self {
        let has = |name: &str| exports.iter().any(|n| n == name);
        if has("describe") && has("handle") && has("handle-async") {
            World::App
        } else if [
            "describe",
            "handle",
            "on-start",
            "on-stop",
            "run-background",
        ]
        .iter()
        .all(|name| has(name))
        {
            World::SyncApp
        } else if exports
            .iter()
            .any(|n| n.starts_with("wasi:http/incoming-handler@0.2"))
        {
            World::Proxy
        } else if exports
            .iter()
            .any(|n| n.starts_with("wasi:http/handler@0.3"))
        {
            World::Service
        } else {
            World::Unknown(exports)
        }
    }

    /// For exports that start an app (`describe` and `handle`) but are
    /// not one, the names a sync app would add.
    pub fn missing_app_exports(exports: &[String]) -> Option<String> {
        let has = |name: &str| exports.iter().any(|n| n == name);
        if !(has("describe") && has("handle")) {
            return None;
        }
        let missing: Vec<&str> = ["on-start", "on-stop", "run-background"]
            .into_iter()
            .filter(|name| !has(name))
            .collect();
        Some(missing.join(", "))
    }

    /// The world of a compiled component.
    pub fn of(engine: &wasmtime::Engine, component: &wasmtime::component::Component) -> Self {
        let component_type = component.component_type();
        let exports = component_type.exports(engine);
        Self::of_exports(exports.map(|(name, _)| name.to_string()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(exports: &[&str]) -> World {
        World::of_exports(exports.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn apps_proxies_and_others_are_told_apart() {
        assert_eq!(
            world(&["describe", "handle", "handle-async", "on-start"]),
            World::App
        );
        assert_eq!(
            world(&[
                "describe",
                "handle",
                "on-start",
                "on-stop",
                "run-background"
            ]),
            World::SyncApp
        );
        assert_eq!(world(&["wasi:http/incoming-handler@0.2.6"]), World::Proxy);
        assert_eq!(
            world(&["describe", "handle"]),
            World::Unknown(vec!["describe".into(), "handle".into()])
        );
        assert_eq!(world(&["wasi:http/handler@0.3.0"]), World::Service);
        assert!(matches!(
            world(&["wasi:http/handler@0.2.0"]),
            World::Unknown(_)
        ));
    }
}

//! One route table over every loaded component: finds the component and
//! route for a method and path, or says why none fits (404, 405).

use std::collections::BTreeMap;
use std::sync::Arc;

use http::Method;

use crate::app::AppComponent;
use crate::bindings::Manifest;
use crate::instances::state::Owner;
use crate::proxy::ProxyComponent;

/// Where a matched request goes.
#[derive(Clone)]
pub enum Target {
    /// A route of a Cello app component.
    App {
        component: Arc<AppComponent>,
        /// Index into the component's manifest routes.
        route: u32,
        is_async: bool,
    },
    /// A `wasi:http/proxy` component, which takes every path under its prefix.
    Proxy(Arc<ProxyComponent>),
}

impl Target {
    /// The component the target belongs to.
    pub fn owner(&self) -> &Arc<Owner> {
        match self {
            Target::App { component, .. } => component.owner(),
            Target::Proxy(proxy) => proxy.owner(),
        }
    }
}

/// Every method a path pattern answers, and the component that owns it.
struct Endpoint {
    owner: String,
    prefix: String,
    /// `None` as the method means any method.
    methods: Vec<(Option<Method>, Target)>,
}

/// The result of looking a request up.
pub enum RouteMatch<'a> {
    Found {
        target: &'a Target,
        /// `{name}` segment values.
        params: Vec<(String, String)>,
        /// The path with the component's prefix removed.
        app_path: String,
    },
    NotFound,
    /// The path exists but not for this method; `allow` lists the methods.
    MethodNotAllowed {
        allow: String,
        /// The component the path belongs to (for CORS preflights).
        owner: &'a Arc<Owner>,
    },
}

/// Collects routes from components, then builds the [`Router`].
#[derive(Default)]
pub struct RouterBuilder {
    endpoints: BTreeMap<String, Endpoint>,
    problems: Vec<String>,
}

/// Name of the catch-all parameter used for proxy components.
const REST: &str = "cello_rest";

impl RouterBuilder {
    /// Adds every route of an app component under `prefix`.
    pub fn add_app(
        &mut self,
        owner: &str,
        prefix: &str,
        manifest: &Manifest,
        component: &Arc<AppComponent>,
    ) {
        for (index, route) in manifest.routes.iter().enumerate() {
            let pattern = join(prefix, &route.path);
            let target = Target::App {
                component: component.clone(),
                route: index as u32,
                is_async: route.is_async,
            };
            let methods: Vec<Option<Method>> = if route.methods.is_empty() {
                vec![None]
            } else {
                let mut parsed = Vec::new();
                for m in &route.methods {
                    match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                        Ok(method) => parsed.push(Some(method)),
                        Err(_) => self.problems.push(format!(
                            "{owner}: route {} declares an invalid method {m:?}",
                            route.path
                        )),
                    }
                }
                parsed
            };
            for method in methods {
                self.add(owner, prefix, &pattern, method.clone(), target.clone());
                if route.path == "/" && !prefix.is_empty() {
                    // The app's root answers at both `/prefix` and `/prefix/`.
                    let slash = format!("{prefix}/");
                    self.add(owner, prefix, &slash, method, target.clone());
                }
            }
        }
    }

    /// Adds a proxy component as a catch-all under `prefix`.
    pub fn add_proxy(&mut self, owner: &str, prefix: &str, component: &Arc<ProxyComponent>) {
        let target = Target::Proxy(component.clone());
        if prefix.is_empty() {
            self.add(owner, prefix, "/", None, target.clone());
        } else {
            self.add(owner, prefix, prefix, None, target.clone());
            let slash = format!("{prefix}/");
            self.add(owner, prefix, &slash, None, target.clone());
        }
        self.add(
            owner,
            prefix,
            &format!("{prefix}/{{*{REST}}}"),
            None,
            target,
        );
    }

    fn add(
        &mut self,
        owner: &str,
        prefix: &str,
        pattern: &str,
        method: Option<Method>,
        target: Target,
    ) {
        let endpoint = self
            .endpoints
            .entry(pattern.to_string())
            .or_insert_with(|| Endpoint {
                owner: owner.to_string(),
                prefix: prefix.to_string(),
                methods: Vec::new(),
            });
        if endpoint.owner != owner {
            self.problems.push(format!(
                "route conflict: {pattern} is declared by both {} and {owner}",
                endpoint.owner
            ));
            return;
        }
        if endpoint.methods.iter().any(|(m, _)| *m == method) {
            let method = method.map_or("any method".to_string(), |m| m.to_string());
            self.problems
                .push(format!("{owner}: {method} {pattern} is declared twice"));
            return;
        }
        endpoint.methods.push((method, target));
    }

    /// The router, or every conflict found, each naming both sides.
    pub fn build(self) -> Result<Router, Vec<String>> {
        let mut problems = self.problems;
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        let mut tree = matchit::Router::new();
        for (pattern, endpoint) in self.endpoints {
            let owner = endpoint.owner.clone();
            match tree.insert(pattern.clone(), endpoint) {
                Ok(()) => {
                    owners.insert(pattern, owner);
                }
                Err(matchit::InsertError::Conflict { with }) => {
                    let other = owners.get(&with).map_or("another route", String::as_str);
                    problems.push(format!(
                        "route conflict: {pattern} of {owner} overlaps {with} of {other}"
                    ));
                }
                Err(e) => problems.push(format!("{owner}: invalid route {pattern}: {e}")),
            }
        }
        if problems.is_empty() {
            Ok(Router { tree })
        } else {
            Err(problems)
        }
    }
}

/// Finds the route for a request.
pub struct Router {
    tree: matchit::Router<Endpoint>,
}

impl Router {
    /// Looks up `method` and `path`.
    pub fn at(&self, method: &Method, path: &str) -> RouteMatch<'_> {
        let Ok(matched) = self.tree.at(path) else {
            return RouteMatch::NotFound;
        };
        let endpoint = matched.value;
        let find = |method: &Method| {
            endpoint
                .methods
                .iter()
                .find(|(m, _)| m.as_ref() == Some(method))
        };
        // HEAD is answered by a GET route when there is no HEAD route.
        let found = find(method)
            .or_else(|| {
                (method == Method::HEAD)
                    .then(|| find(&Method::GET))
                    .flatten()
            })
            .or_else(|| endpoint.methods.iter().find(|(m, _)| m.is_none()));
        let Some((_, target)) = found else {
            let mut allow: Vec<&str> = endpoint
                .methods
                .iter()
                .filter_map(|(m, _)| m.as_ref().map(Method::as_str))
                .collect();
            allow.sort_unstable();
            return RouteMatch::MethodNotAllowed {
                allow: allow.join(", "),
                owner: endpoint.methods[0].1.owner(),
            };
        };
        let params = matched
            .params
            .iter()
            .filter(|(k, _)| *k != REST)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let app_path = match path.strip_prefix(endpoint.prefix.as_str()) {
            Some("") => "/".to_string(),
            Some(rest) => rest.to_string(),
            None => path.to_string(),
        };
        RouteMatch::Found {
            target,
            params,
            app_path,
        }
    }
}

/// `prefix` + `path`, with exactly one slash between them.
fn join(prefix: &str, path: &str) -> String {
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    if prefix.is_empty() {
        path
    } else if path == "/" {
        prefix.to_string()
    } else {
        format!("{prefix}{path}")
    }
}

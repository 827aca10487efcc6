//! One route table over every loaded component: finds the component and
//! route for a method and path, or says why none fits (404, 405).

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderValue, Method};

use crate::app::AppComponent;
use crate::bindings::Manifest;
use crate::host_files;
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
    /// `prefix` as the `X-Forwarded-Prefix` its component is told, when
    /// nothing else (a tenant's mount, a proxy's own prefix) comes first:
    /// made once, where each request made it again.
    prefix_header: Option<HeaderValue>,
    /// `None` as the method means any method.
    methods: Vec<(Option<Method>, Target)>,
}

/// A path as a component sees it, without its prefix.
pub type AppPath = std::borrow::Cow<'static, str>;

/// The result of looking a request up.
pub enum RouteMatch<'a> {
    Found {
        target: &'a Target,
        /// `{name}` segment values.
        params: Vec<(String, String)>,
        /// The path with the component's prefix removed; not copied when it
        /// is the component's root.
        app_path: AppPath,
        /// The component's prefix, which `app_path` is relative to.
        prefix: &'a str,
        /// The prefix as the component's `X-Forwarded-Prefix`, alone.
        prefix_header: Option<&'a HeaderValue>,
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
        if host_files::is_reserved(pattern) {
            self.problems.push(format!(
                "{owner}: {pattern} is under {}, where the host serves its own files; \
                 declare the route, or set the prefix, elsewhere",
                host_files::PATH
            ));
            return;
        }
        let endpoint = self
            .endpoints
            .entry(pattern.to_string())
            .or_insert_with(|| Endpoint {
                owner: owner.to_string(),
                prefix: prefix.to_string(),
                prefix_header: prefix_header(prefix),
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
            Some("" | "/") => AppPath::Borrowed("/"),
            Some(rest) => AppPath::Owned(rest.to_string()),
            None => AppPath::Owned(path.to_string()),
        };
        RouteMatch::Found {
            target,
            params,
            app_path,
            prefix: &endpoint.prefix,
            prefix_header: endpoint.prefix_header.as_ref(),
        }
    }
}

/// `prefix` as an `X-Forwarded-Prefix`: without surrounding spaces and
/// slashes, after one slash; none for the root.
pub(crate) fn prefix_header(prefix: &str) -> Option<HeaderValue> {
    let prefix = prefix.trim().trim_matches('/');
    if prefix.is_empty() {
        return None;
    }
    HeaderValue::try_from(format!("/{prefix}")).ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostConfig;
    use crate::host::{Host, HostBuilder};
    use crate::loader::LoadedKind;

    /// The smallest `wasi:http/proxy` component: routes only need a target
    /// to point at, never a call.
    const PROXY: &str = r#"
        (component
          (import "wasi:http/types@0.2.3" (instance $types
            (export "incoming-request" (type (sub resource)))
            (export "response-outparam" (type (sub resource)))))
          (alias export $types "incoming-request" (type $request))
          (alias export $types "response-outparam" (type $outparam))
          (core module $m (func (export "handle") (param i32 i32)))
          (core instance $i (instantiate $m))
          (func $handle (param "request" (own $request)) (param "response-out" (own $outparam))
            (canon lift (core func $i "handle")))
          (instance $handler (export "handle" (func $handle)))
          (export "wasi:http/incoming-handler@0.2.3" (instance $handler)))
    "#;

    /// Components loaded by a real host, one per name, to route to.
    struct Components {
        _host: Host,
        _dir: tempfile::TempDir,
        by_name: BTreeMap<String, Target>,
    }

    impl Components {
        async fn load(names: &[&str]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let host = HostBuilder::new(HostConfig::default(), dir.path().join("state"))
                .compile_cache(false)
                .build()
                .expect("a host");
            let wasm = wat::parse_str(PROXY).expect("valid component text");
            let mut by_name = BTreeMap::new();
            for name in names {
                let file = dir.path().join(format!("{name}.wasm"));
                std::fs::write(&file, &wasm).unwrap();
                let loaded = host.loader().load_file(&file).await.expect("loads");
                let LoadedKind::Proxy(proxy) = loaded.kind else {
                    panic!("{name} loaded as an app");
                };
                by_name.insert(name.to_string(), Target::Proxy(proxy));
            }
            Self {
                _host: host,
                _dir: dir,
                by_name,
            }
        }

        fn target(&self, name: &str) -> Target {
            self.by_name[name].clone()
        }

        fn proxy(&self, name: &str) -> Arc<ProxyComponent> {
            match self.target(name) {
                Target::Proxy(proxy) => proxy,
                Target::App { .. } => unreachable!("only proxies are loaded"),
            }
        }

        /// A table of `routes`: each an owner, a method (`None`: any) and a
        /// pattern.
        fn table(&self, routes: &[(&str, Option<Method>, &str)]) -> RouterBuilder {
            let mut builder = RouterBuilder::default();
            for (owner, method, pattern) in routes {
                builder.add(owner, "", pattern, method.clone(), self.target(owner));
            }
            builder
        }
    }

    fn build(builder: RouterBuilder) -> Router {
        builder
            .build()
            .unwrap_or_else(|problems| panic!("conflicts: {problems:?}"))
    }

    fn conflicts(builder: RouterBuilder) -> Vec<String> {
        match builder.build() {
            Ok(_) => panic!("the table was accepted"),
            Err(problems) => problems,
        }
    }

    const GET: Option<Method> = Some(Method::GET);
    const POST: Option<Method> = Some(Method::POST);

    /// Who answers `method path`, with what parameters and path; or why
    /// nobody does.
    fn answer(router: &Router, method: Method, path: &str) -> String {
        match router.at(&method, path) {
            RouteMatch::Found {
                target,
                params,
                app_path,
                ..
            } => format!("{} {app_path} {params:?}", target.owner().component),
            RouteMatch::NotFound => "404".into(),
            RouteMatch::MethodNotAllowed { allow, owner } => {
                format!("405 {} allow: {allow}", owner.component)
            }
        }
    }

    #[tokio::test]
    async fn a_static_segment_beats_a_parameter() {
        let components = Components::load(&["shop", "blog"]).await;
        let router =
            build(components.table(&[("shop", GET, "/items/{id}"), ("blog", GET, "/items/new")]));
        assert_eq!(
            answer(&router, Method::GET, "/items/new"),
            "blog /items/new []"
        );
        assert_eq!(
            answer(&router, Method::GET, "/items/7"),
            "shop /items/7 [(\"id\", \"7\")]"
        );
    }

    #[tokio::test]
    async fn a_path_nobody_declared_is_not_found() {
        let components = Components::load(&["shop"]).await;
        let router = build(components.table(&[("shop", GET, "/items/{id}")]));
        for path in ["/", "/items", "/items/7/reviews", "/other"] {
            assert_eq!(answer(&router, Method::GET, path), "404", "{path}");
        }
    }

    #[tokio::test]
    async fn another_method_is_405_listing_the_allowed_ones_sorted() {
        let components = Components::load(&["shop"]).await;
        let delete = Some(Method::DELETE);
        let router = build(components.table(&[
            ("shop", POST, "/items"),
            ("shop", GET, "/items"),
            ("shop", delete, "/items"),
        ]));
        assert_eq!(
            answer(&router, Method::PUT, "/items"),
            "405 shop allow: DELETE, GET, POST"
        );
        assert_eq!(answer(&router, Method::POST, "/items"), "shop /items []");
    }

    #[tokio::test]
    async fn head_is_answered_by_get_unless_declared() {
        let components = Components::load(&["shop", "blog"]).await;
        let router = build(components.table(&[("shop", GET, "/items"), ("blog", POST, "/posts")]));
        assert_eq!(answer(&router, Method::HEAD, "/items"), "shop /items []");
        assert_eq!(
            answer(&router, Method::HEAD, "/posts"),
            "405 blog allow: POST"
        );
    }

    #[tokio::test]
    async fn a_route_for_any_method_answers_every_method() {
        let components = Components::load(&["shop"]).await;
        let router = build(components.table(&[("shop", None, "/hook")]));
        for method in [Method::GET, Method::PATCH, Method::OPTIONS] {
            assert_eq!(answer(&router, method, "/hook"), "shop /hook []");
        }
    }

    #[tokio::test]
    async fn a_proxy_takes_every_path_under_its_prefix_without_it() {
        let components = Components::load(&["api", "site"]).await;
        let mut builder = RouterBuilder::default();
        builder.add_proxy("api", "/api", &components.proxy("api"));
        builder.add_proxy("site", "", &components.proxy("site"));
        let router = build(builder);
        assert_eq!(answer(&router, Method::GET, "/api"), "api / []");
        assert_eq!(answer(&router, Method::GET, "/api/"), "api / []");
        assert_eq!(
            answer(&router, Method::POST, "/api/v1/items"),
            "api /v1/items []"
        );
        // Only whole segments: `/apix` is the catch-all's.
        assert_eq!(answer(&router, Method::GET, "/apix"), "site /apix []");
        assert_eq!(answer(&router, Method::GET, "/"), "site / []");
    }

    #[tokio::test]
    async fn a_match_names_the_prefix_its_path_was_found_under() {
        let components = Components::load(&["api"]).await;
        let mut builder = RouterBuilder::default();
        builder.add_proxy("api", "/api", &components.proxy("api"));
        let router = build(builder);
        for path in ["/api", "/api/", "/api/v1/items"] {
            let RouteMatch::Found { prefix, .. } = router.at(&Method::GET, path) else {
                panic!("{path} was not found");
            };
            assert_eq!(prefix, "/api", "{path}");
        }
    }

    #[tokio::test]
    async fn two_components_on_one_path_are_a_conflict_naming_both() {
        let components = Components::load(&["shop", "blog"]).await;
        let table = components.table(&[("shop", GET, "/items"), ("blog", POST, "/items")]);
        assert_eq!(
            conflicts(table),
            ["route conflict: /items is declared by both shop and blog"]
        );
    }

    #[tokio::test]
    async fn a_method_declared_twice_is_a_conflict() {
        let components = Components::load(&["shop"]).await;
        let table = components.table(&[
            ("shop", GET, "/items"),
            ("shop", GET, "/items"),
            ("shop", None, "/hook"),
            ("shop", None, "/hook"),
        ]);
        assert_eq!(
            conflicts(table),
            [
                "shop: GET /items is declared twice",
                "shop: any method /hook is declared twice"
            ]
        );
    }

    #[tokio::test]
    async fn overlapping_patterns_are_a_conflict_naming_both_owners() {
        let components = Components::load(&["shop", "blog"]).await;
        let table =
            components.table(&[("shop", GET, "/items/{id}"), ("blog", GET, "/items/{slug}")]);
        assert_eq!(
            conflicts(table),
            ["route conflict: /items/{slug} of blog overlaps /items/{id} of shop"]
        );
    }

    #[tokio::test]
    async fn a_route_under_the_hosts_own_path_is_refused() {
        let components = Components::load(&["shop", "api"]).await;
        let mut table = components.table(&[("shop", GET, "/_cello/items")]);
        table.add_proxy("api", "/_cello", &components.proxy("api"));
        let problems = conflicts(table);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems[0].starts_with("shop: /_cello/items is under /_cello/, where the host"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_prefix_and_a_path_join_with_one_slash() {
        assert_eq!(join("", "/items"), "/items");
        assert_eq!(join("", "items"), "/items");
        assert_eq!(join("/shop", "/"), "/shop");
        assert_eq!(join("/shop", "items/{id}"), "/shop/items/{id}");
    }
}

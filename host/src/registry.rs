//! What is in service: every component of the served directory and of each
//! tenant, and the route tables made from them.
//!
//! A change — a new version, a component removed, a tenant created or
//! deleted — builds new route tables beside the old ones and swaps them in
//! at once. Requests in flight finish on the components they started with;
//! new requests see the change; a component taken out of service is retired
//! (its instances run `on-stop`) once its last request has ended, and its
//! response-cache entries are dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::middleware::rate_limit::Limiter;
use arc_swap::ArcSwap;

use crate::app::AppComponent;
use crate::loader::{Loaded, LoadedKind, build_router};
use crate::router::Router;

/// How long a replaced component may keep serving requests that started
/// before the swap; then its idle instances are retired regardless.
const DRAIN: Duration = Duration::from_secs(60);

/// The components in service and the route tables over them.
pub struct Registry {
    routes: ArcSwap<Routes>,
    /// Held while a change is made, so changes apply one after another.
    served: tokio::sync::Mutex<Served>,
    /// Tenants are also reached as `{tenant}.{domain}` when set.
    domain: Option<String>,
}

/// Every component in service.
#[derive(Clone, Default)]
pub struct Served {
    /// The served directory's components, by name.
    pub main: BTreeMap<String, Arc<Loaded>>,
    pub tenants: BTreeMap<String, TenantApps>,
}

/// One tenant's components.
#[derive(Clone, Default)]
pub struct TenantApps {
    pub components: BTreeMap<String, Arc<Loaded>>,
    /// Requests per second across all its components.
    pub limiter: Option<Arc<Limiter>>,
    /// True while its components are being brought back after a restart.
    pub restoring: bool,
}

/// The route tables: one for the served directory, one per tenant.
pub struct Routes {
    main: Router,
    tenants: HashMap<String, TenantRoutes>,
    domain: Option<String>,
}

/// A tenant's route table and request-rate limit.
pub struct TenantRoutes {
    pub name: Arc<str>,
    pub router: Router,
    pub limiter: Option<Arc<Limiter>>,
    /// True while its components are being brought back after a restart:
    /// a route it does not have yet may be one still loading.
    pub restoring: bool,
}

/// Which table answers a request, and the path to look up in it.
pub enum Resolved<'a> {
    Main(&'a Router),
    Tenant {
        routes: &'a TenantRoutes,
        /// What the tenant was reached under: `/t/{tenant}`, or nothing
        /// when it was reached by its subdomain.
        mount: &'a str,
        /// The path without `/t/{tenant}`.
        path: &'a str,
    },
    /// The request names a tenant that does not exist; the directory's
    /// table may still answer the path.
    NoTenant {
        name: &'a str,
        main: &'a Router,
    },
}

/// The name in a `Host` header, without its port: `[::1]` of `[::1]:8080`.
/// None when it is not a valid authority.
fn host_name(host: &str) -> Option<&str> {
    let authority: http::uri::Authority = host.parse().ok()?;
    // The name is where the header starts (a Host header has no userinfo).
    host.get(..authority.host().len())
        .filter(|name| *name == authority.host())
}

/// Where tenants' apps are reached: `/t/{tenant}/...`, always.
const TENANT_PATH: &str = "/t/";

impl Routes {
    /// True when tenants are also told apart by the `Host` header.
    pub fn by_host(&self) -> bool {
        self.domain.is_some()
    }

    /// The table for a request to `path`, with `host` its `Host` header.
    pub fn resolve<'a>(&'a self, host: Option<&'a str>, path: &'a str) -> Resolved<'a> {
        if let (Some(domain), Some(host)) = (&self.domain, host.and_then(host_name))
            && let Some(tenant) = host
                .strip_suffix(domain.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
        {
            return self.tenant(tenant, "", path);
        }
        let Some(rest) = path.strip_prefix(TENANT_PATH) else {
            return Resolved::Main(&self.main);
        };
        let (tenant, tenant_path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let mount = &path[..TENANT_PATH.len() + tenant.len()];
        self.tenant(tenant, mount, tenant_path)
    }

    fn tenant<'a>(&'a self, name: &'a str, mount: &'a str, path: &'a str) -> Resolved<'a> {
        match self.tenants.get(name) {
            Some(routes) => Resolved::Tenant {
                routes,
                mount,
                path,
            },
            None => Resolved::NoTenant {
                name,
                main: &self.main,
            },
        }
    }
}

impl Served {
    /// Route tables over these components, or every conflict among them.
    fn routes(&self, domain: Option<String>) -> Result<Routes, Vec<String>> {
        let main = build_router(self.main.values().map(|l| &**l));
        let mut problems = main.as_ref().err().cloned().unwrap_or_default();
        let mut tenants = HashMap::new();
        for (name, apps) in &self.tenants {
            match build_router(apps.components.values().map(|l| &**l)) {
                Ok(router) => {
                    let routes = TenantRoutes {
                        name: name.as_str().into(),
                        router,
                        limiter: apps.limiter.clone(),
                        restoring: apps.restoring,
                    };
                    tenants.insert(name.clone(), routes);
                }
                Err(conflicts) => problems.extend(conflicts),
            }
        }
        match main {
            Ok(main) if problems.is_empty() => Ok(Routes {
                main,
                tenants,
                domain,
            }),
            _ => Err(problems),
        }
    }

    /// Every component, of the directory and of all tenants.
    fn all(&self) -> impl Iterator<Item = &Arc<Loaded>> {
        self.main
            .values()
            .chain(self.tenants.values().flat_map(|t| t.components.values()))
    }

    /// Every app component in service.
    pub fn apps(&self) -> Vec<Arc<AppComponent>> {
        self.all()
            .filter_map(|loaded| match &loaded.kind {
                LoadedKind::App(app, _) => Some(app.clone()),
                LoadedKind::Proxy(_) => None,
            })
            .collect()
    }
}

impl Registry {
    /// A registry serving nothing yet.
    pub fn new(domain: Option<String>) -> Arc<Self> {
        let served = Served::default();
        let routes = served
            .routes(domain.clone())
            .unwrap_or_else(|_| unreachable!("nothing cannot conflict"));
        Arc::new(Self {
            routes: ArcSwap::from_pointee(routes),
            served: tokio::sync::Mutex::new(served),
            domain,
        })
    }

    /// The route tables now; a request holds them until it ends.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.load_full()
    }

    /// A copy of what is in service now.
    pub async fn served(&self) -> Served {
        self.served.lock().await.clone()
    }

    /// Applies `edit` to what is in service. If the result routes without
    /// conflicts, runs `commit` (which writes the change down, say) and, if
    /// that succeeds too, swaps the new route tables in and retires what
    /// the edit took out. On any failure nothing changes.
    pub async fn change<E, C>(&self, edit: E, commit: C) -> Result<(), ChangeRefused>
    where
        E: FnOnce(&mut Served),
        C: Future<Output = Result<(), String>>,
    {
        let mut served = self.served.lock().await;
        let mut next = served.clone();
        edit(&mut next);
        let routes = next
            .routes(self.domain.clone())
            .map_err(ChangeRefused::Conflicts)?;
        commit.await.map_err(ChangeRefused::NotWritten)?;
        let kept: Vec<*const Loaded> = next.all().map(Arc::as_ptr).collect();
        let replaced: Vec<Arc<Loaded>> = served
            .all()
            .filter(|old| !kept.contains(&Arc::as_ptr(old)))
            .cloned()
            .collect();
        self.routes.store(Arc::new(routes));
        *served = next;
        drop(served);
        for loaded in replaced {
            let owner = loaded.owner();
            owner.cache.forget(owner);
            retire_when_done(loaded);
        }
        Ok(())
    }
}

/// Why a change was not made.
#[derive(Debug)]
pub enum ChangeRefused {
    /// Routes would collide; every collision, naming both sides.
    Conflicts(Vec<String>),
    /// The commit step failed.
    NotWritten(String),
}

impl ChangeRefused {
    /// Every problem, as sentences.
    pub fn problems(self) -> Vec<String> {
        match self {
            Self::Conflicts(problems) => problems,
            Self::NotWritten(problem) => vec![problem],
        }
    }
}

/// Retires `loaded`'s idle instances once no request holds it any more.
fn retire_when_done(loaded: Arc<Loaded>) {
    let LoadedKind::App(app, _) = &loaded.kind else {
        return;
    };
    let app = app.clone();
    drop(loaded);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + DRAIN;
        while Arc::strong_count(&app) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.retire_idle();
        // Again: requests that were in flight may have stored responses.
        app.owner().cache.forget(app.owner());
        tracing::info!(component = app.name(), "previous version retired");
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::RouterBuilder;

    fn empty() -> Router {
        let Ok(router) = RouterBuilder::default().build() else {
            panic!("an empty table has no conflicts");
        };
        router
    }

    /// Tables with one tenant, acme, also reached at `acme.example.com`.
    fn routes() -> Routes {
        let acme = TenantRoutes {
            name: "acme".into(),
            router: empty(),
            limiter: None,
            restoring: false,
        };
        Routes {
            main: empty(),
            tenants: HashMap::from([("acme".to_string(), acme)]),
            domain: Some("example.com".into()),
        }
    }

    /// The tenant, mount and path `host` and `path` resolve to.
    fn tenant_of<'a>(
        routes: &'a Routes,
        host: &'a str,
        path: &'a str,
    ) -> (&'a str, &'a str, &'a str) {
        match routes.resolve(Some(host), path) {
            Resolved::Tenant {
                routes,
                mount,
                path,
            } => (&*routes.name, mount, path),
            _ => panic!("{host}{path} is not a tenant's"),
        }
    }

    #[test]
    fn a_tenant_is_mounted_at_its_path_or_at_the_root_of_its_subdomain() {
        let routes = routes();
        let by_path = tenant_of(&routes, "localhost", "/t/acme/shop/items");
        assert_eq!(by_path, ("acme", "/t/acme", "/shop/items"));
        assert_eq!(
            tenant_of(&routes, "localhost", "/t/acme"),
            ("acme", "/t/acme", "/")
        );
        let by_host = tenant_of(&routes, "acme.example.com:8080", "/shop/items");
        assert_eq!(by_host, ("acme", "", "/shop/items"));
        assert!(matches!(
            routes.resolve(Some("localhost"), "/shop"),
            Resolved::Main(_)
        ));
    }

    #[test]
    fn the_host_name_drops_the_port_and_keeps_ipv6_literals_whole() {
        assert_eq!(host_name("acme.example.com:8080"), Some("acme.example.com"));
        assert_eq!(host_name("acme.example.com"), Some("acme.example.com"));
        assert_eq!(host_name("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_name("[2001:db8::1]"), Some("[2001:db8::1]"));
        assert_eq!(host_name("bad host"), None);
    }
}

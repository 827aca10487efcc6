//! Bringing tenants back after a restart, without holding up the listener.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt as _;
use http::StatusCode;

use super::{Change, Entry, Refusal, Tenant, TenantStore, Tenants, limiter, scope};
use crate::readiness::Readiness;
use crate::registry::TenantApps;

/// How many tenants' components are restored at once: a few, so that one
/// slow `on-start` does not hold up the others.
const RESTORING_AT_ONCE: usize = 4;

impl Tenants {
    /// Brings back every tenant on disk, in two steps. At once: each
    /// tenant with its quotas and tokens, in service with no components
    /// yet and marked as restoring, so that requests for its routes are
    /// answered 503 rather than 404. Then in the background: the current
    /// version of each component, each servable as soon as it is loaded,
    /// while `ready` names those still loading. A component that no longer
    /// loads is reported and left out (its versions stay, for a rollback).
    ///
    /// Tenants kept in PostgreSQL are brought in by a follower instead,
    /// which then keeps following the database's changes.
    pub async fn restore(self: &Arc<Self>, ready: Arc<Readiness>) {
        let store = match &self.store {
            TenantStore::Disk(store) => store.clone(),
            TenantStore::Postgres(pg) => {
                crate::cluster::follower::start(pg.clone(), self.clone(), ready);
                return;
            }
        };
        let (records, problems) = tokio::task::spawn_blocking(move || store.read_all())
            .await
            .unwrap_or_default();
        for problem in problems {
            tracing::error!("not restored: {problem}");
        }
        let mut restoring = Vec::new();
        let mut served = Vec::new();
        for (record, components) in records {
            let name = record.name.clone();
            let tenant = Tenant {
                scope: scope(&record),
                record,
                components: components.into_iter().collect(),
            };
            served.push((
                name.clone(),
                TenantApps {
                    components: BTreeMap::new(),
                    limiter: limiter(&tenant.record.quotas),
                    restoring: !tenant.components.is_empty(),
                },
            ));
            for component in tenant.components.keys() {
                ready.loading(format!("{name}/{component}"));
            }
            self.set_store_quotas(&tenant.record);
            self.remember_tokens(&tenant.record);
            let entry = Entry::new(tenant);
            // Taken before the admin API opens, so that no change to the
            // tenant comes before its restore.
            let lock = entry.changing.clone().try_lock_owned();
            let lock = lock.expect("nothing else knows the tenant yet");
            self.tenants.write().unwrap().insert(name, entry.clone());
            restoring.push(Change { entry, _lock: lock });
        }
        let added = self
            .registry
            .change(|now| now.tenants.extend(served), async { Ok(()) })
            .await;
        if let Err(refused) = added {
            let refused = refused.problems().join("; ");
            tracing::error!("tenants not restored: {refused}");
        }
        let tenants = self.clone();
        tokio::spawn(async move {
            futures::stream::iter(restoring)
                .for_each_concurrent(RESTORING_AT_ONCE, |change| {
                    tenants.restore_components(change, &ready)
                })
                .await;
            tracing::info!("every tenant restored");
        });
    }

    /// Loads the current version of each of a tenant's components and puts
    /// each in service as soon as it loads; then the tenant is restored.
    async fn restore_components(&self, change: Change, ready: &Readiness) {
        let tenant = change.entry.tenant();
        let name = &tenant.record.name;
        for (component, versions) in &tenant.components {
            let restored = match versions.current() {
                Some(version) => match self.load_version(&tenant, component, version).await {
                    Ok(loaded) => {
                        let serve =
                            self.swap(name, component, version.version, loaded, async { Ok(()) });
                        serve.await.map(drop)
                    }
                    Err(refusal) => Err(refusal),
                },
                None => Err(Refusal::new(StatusCode::CONFLICT, "no current version")),
            };
            if let Err(refusal) = restored {
                tracing::error!(
                    "not restored: tenant {name}, component {component}: {} {}",
                    refusal.error,
                    refusal.problems.join("; ")
                );
            }
            ready.loaded(&format!("{name}/{component}"));
        }
        let done = self
            .registry
            .change(
                |served| {
                    if let Some(apps) = served.tenants.get_mut(name) {
                        apps.restoring = false;
                    }
                },
                async { Ok(()) },
            )
            .await;
        if let Err(refused) = done {
            let refused = refused.problems().join("; ");
            tracing::error!("tenant {name} not restored: {refused}");
        }
    }
}

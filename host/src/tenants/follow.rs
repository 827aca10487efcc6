//! Following the cluster's store of record: what another host changed (a
//! tenant made, changed or deleted; a version uploaded or rolled back; a
//! component removed) is applied here as a change of this host's own
//! would be — compiled with this host's cache, started, swapped in
//! atomically — without writing anything.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt as _;

use super::{Change, ComponentRecord, Entry, Tenant, TenantApps, Tenants, limiter, scope};
use crate::cluster::tenant_store::PgTenants;
use crate::readiness::Readiness;

/// How many tenants a catch-up brings in line at once.
const FOLLOWING_AT_ONCE: usize = 4;

impl Tenants {
    /// Brings every tenant here in line with the database: those it has,
    /// and those this host has that it no longer has. An error is the
    /// store's (unreachable): the follower retries. A tenant the database
    /// refuses to give (a record no longer valid, say) is reported and
    /// skipped, so that it does not hold up the others.
    pub async fn catch_up(&self, pg: &PgTenants, ready: &Readiness) -> Result<(), String> {
        let mut names: BTreeSet<String> = pg.tenant_names().await?.into_iter().collect();
        names.extend(self.tenants.read().unwrap().keys().cloned());
        let failed: Vec<(String, String)> = futures::stream::iter(names)
            .map(|name| async move {
                let failed = self.follow(&name, pg, ready).await.err();
                failed.map(|problem| (name, problem))
            })
            .buffer_unordered(FOLLOWING_AT_ONCE)
            .filter_map(|failed| async move { failed })
            .collect()
            .await;
        for (tenant, problem) in failed {
            if !pg.reachable() {
                return Err(problem);
            }
            tracing::error!(tenant, "not followed: {problem}");
        }
        Ok(())
    }

    /// Brings tenant `name` here in line with the database. The tenant is
    /// read under its lock, so that what is applied is never older than
    /// what a change made through this host applied.
    pub async fn follow(
        &self,
        name: &str,
        pg: &PgTenants,
        ready: &Readiness,
    ) -> Result<(), String> {
        let change = match self.lock_tenant(name).await {
            Ok(change) => change,
            Err(_) => match self.add_followed(name, pg).await? {
                Some(change) => change,
                None => return Ok(()),
            },
        };
        let Some((record, components)) = pg.read_tenant(name).await? else {
            self.forget_tenant(change).await;
            return Ok(());
        };
        let known = change.entry.tenant();
        if serde_json::to_value(&known.record).ok() != serde_json::to_value(&record).ok() {
            let limiter = limiter(&record.quotas);
            let limited = self.registry.change(
                |served| {
                    if let Some(apps) = served.tenants.get_mut(name) {
                        apps.limiter = limiter;
                    }
                },
                async { Ok(()) },
            );
            if let Err(refused) = limited.await {
                let refused = refused.problems().join("; ");
                tracing::error!(tenant = name, "request-rate quota not applied: {refused}");
            }
            self.set_record(&change, record);
        }
        let components: BTreeMap<String, ComponentRecord> = components.into_iter().collect();
        for gone in known.components.keys() {
            if !components.contains_key(gone) {
                self.forget_component(&change, gone).await;
            }
        }
        for (component, stored) in components {
            self.follow_component(&change, component, stored, ready)
                .await;
        }
        let restored = self.registry.change(
            |served| {
                if let Some(apps) = served.tenants.get_mut(name) {
                    apps.restoring = false;
                }
            },
            async { Ok(()) },
        );
        if let Err(refused) = restored.await {
            let refused = refused.problems().join("; ");
            tracing::error!(tenant = name, "not restored: {refused}");
        }
        Ok(())
    }

    /// Serves the current version of a component as the database has it,
    /// unless it serves already; a version that does not load here is
    /// reported, and the one serving keeps serving.
    async fn follow_component(
        &self,
        change: &Change,
        name: String,
        stored: ComponentRecord,
        ready: &Readiness,
    ) {
        let tenant = change.entry.tenant();
        let label = format!("{}/{name}", tenant.record.name);
        let Some(wanted) = stored.current().cloned() else {
            return;
        };
        let serving = tenant
            .components
            .get(&name)
            .and_then(ComponentRecord::current);
        let same = serving.is_some_and(|serving| {
            (serving.version, &serving.blake3, serving.uploaded_at)
                == (wanted.version, &wanted.blake3, wanted.uploaded_at)
        });
        if !same {
            let loaded = self.load_version(&tenant, &name, &wanted).await;
            let swapped = match loaded {
                Ok(loaded) => {
                    let swap =
                        self.swap(&tenant.record.name, &name, wanted.version, loaded, async {
                            Ok(())
                        });
                    swap.await.map(drop)
                }
                Err(refusal) => Err(refusal),
            };
            if let Err(refusal) = swapped {
                let why = format!("{} {}", refusal.error, refusal.problems.join("; "));
                tracing::error!(component = %label, "version {} not followed: {why}", wanted.version);
                ready.stale(&label, &why);
                return;
            }
            ready.settled(&label);
            tracing::info!(component = %label, version = wanted.version, "following the cluster");
        }
        change.entry.set(|tenant| {
            tenant.components.insert(name, stored);
        });
    }

    /// Adds tenant `name`, made through another host, with no components
    /// yet (marked as restoring, so that its routes answer 503 rather than
    /// 404 until they load); `None` if the database has no such tenant.
    async fn add_followed(&self, name: &str, pg: &PgTenants) -> Result<Option<Change>, String> {
        let _creating = self.creating.lock().await;
        if let Ok(change) = self.lock_tenant(name).await {
            return Ok(Some(change));
        }
        let Some((record, components)) = pg.read_tenant(name).await? else {
            return Ok(None);
        };
        let apps = TenantApps {
            components: BTreeMap::new(),
            limiter: limiter(&record.quotas),
            restoring: !components.is_empty(),
        };
        let added = self.registry.change(
            |served| {
                served.tenants.insert(name.to_string(), apps);
            },
            async { Ok(()) },
        );
        if let Err(refused) = added.await {
            return Err(refused.problems().join("; "));
        }
        self.set_store_quotas(&record);
        self.remember_tokens(&record);
        let entry = Entry::new(Tenant {
            scope: scope(&record),
            record,
            components: BTreeMap::new(),
        });
        let lock = entry.changing.clone().try_lock_owned();
        let lock = lock.expect("nothing else knows the tenant yet");
        self.tenants
            .write()
            .unwrap()
            .insert(name.to_string(), entry.clone());
        tracing::info!(tenant = name, "tenant followed from the cluster");
        Ok(Some(Change { entry, _lock: lock }))
    }
}

//! The follower: one task per host that keeps the host's tenants in line
//! with the cluster's database. It `LISTEN`s on the tenants' channel and,
//! for each change announced, brings that tenant in line; on every
//! (re)connection it first runs a catch-up scan over every tenant, so that
//! a change announced while it was away is never lost, and again every
//! [`RESCAN`], so that a change this host failed to apply (its instances
//! all busy, say) is tried again.
//!
//! While the database is unreachable the host serves what it has; the
//! follower retries with a growing pause (logging the first failure and
//! the recovery, not every attempt), and `/readyz` says why: not ready
//! until the tenants are first loaded, ready with a warning after.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::schema::{CHANNEL, notified_tenant};
use super::tenant_store::{PgTenants, unreachable};
use crate::readiness::Readiness;
use crate::tenants::Tenants;

/// The first pause after a failed connection; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(4);
/// How often a connected follower scans every tenant again.
const RESCAN: Duration = Duration::from_secs(30);

/// Starts following `pg` for `tenants`.
pub fn start(pg: Arc<PgTenants>, tenants: Arc<Tenants>, ready: Arc<Readiness>) {
    ready.store_waiting("connecting to the tenants' store (PostgreSQL)".into());
    tokio::spawn(follow(pg, tenants, ready));
}

async fn follow(pg: Arc<PgTenants>, tenants: Arc<Tenants>, ready: Arc<Readiness>) {
    let mut pause = FIRST_PAUSE;
    let mut loaded_once = false;
    let mut failing = false;
    loop {
        let outcome = follow_once(&pg, &tenants, &ready, &mut loaded_once).await;
        pg.set_reachable(false);
        let why = match outcome {
            // Caught up and listened until the connection closed.
            Ok(why) => {
                pause = FIRST_PAUSE;
                tracing::warn!(
                    "lost the tenants' store (PostgreSQL): {why}; serving what is loaded, \
                     reconnecting"
                );
                failing = true;
                why
            }
            Err(why) => {
                if failing {
                    tracing::debug!("the tenants' store is still unreachable: {why}");
                } else {
                    tracing::warn!("the tenants' store is unreachable: {why}; retrying");
                    failing = true;
                }
                why
            }
        };
        if loaded_once {
            ready.store_degraded(why);
        } else {
            ready.store_waiting(why);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Connects, listens, catches up, then applies each change announced
/// until the connection closes (`Ok`, with why), or fails before it
/// listened and caught up (`Err`).
async fn follow_once(
    pg: &Arc<PgTenants>,
    tenants: &Arc<Tenants>,
    ready: &Arc<Readiness>,
    loaded_once: &mut bool,
) -> Result<String, String> {
    let (client, mut connection) = pg
        .config()
        .connect(NoTls)
        .await
        .map_err(|e| unreachable(&e.to_string()))?;
    let (notes, mut heard) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(note)) => {
                    let _ = notes.send(Ok(note.payload().to_string()));
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = notes.send(Err(e.to_string()));
                    return;
                }
            }
        }
        let _ = notes.send(Err("the connection closed".into()));
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| unreachable(&e.to_string()))?;
    if !*loaded_once {
        ready.store_waiting("loading every tenant from the tenants' store (PostgreSQL)".into());
    }
    // Listening first: a change committed during the scan is heard too.
    tenants.catch_up(pg, ready).await?;
    if !*loaded_once {
        tracing::info!("every tenant restored");
        *loaded_once = true;
    } else {
        tracing::info!("the tenants' store is back; caught up");
    }
    pg.set_reachable(true);
    ready.store_fine();
    let mut rescan = tokio::time::interval_at(tokio::time::Instant::now() + RESCAN, RESCAN);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let note = tokio::select! {
            note = heard.recv() => note,
            _ = rescan.tick() => {
                if let Err(why) = tenants.catch_up(pg, ready).await {
                    tracing::warn!("the periodic catch-up stopped: {why}");
                }
                continue;
            }
        };
        let payload = match note {
            Some(Ok(payload)) => payload,
            Some(Err(why)) => return Ok(why),
            None => break,
        };
        let Some(tenant) = notified_tenant(&payload) else {
            tracing::warn!("ignored a change notice that names no tenant: {payload}");
            continue;
        };
        let (pg, tenants, ready) = (pg.clone(), tenants.clone(), ready.clone());
        tokio::spawn(async move {
            if let Err(why) = tenants.follow(&tenant, &pg, &ready).await {
                // The next catch-up applies it.
                tracing::warn!(tenant, "change not followed yet: {why}");
            }
        });
    }
    drop(client);
    Ok("the connection closed".into())
}

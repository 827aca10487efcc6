//! Cache invalidations told to every host of a cluster over a Redis
//! channel: a tag invalidation, a new version or a removed component on
//! one host drops the matching entries on all of them. Entries stay in
//! each host's memory; only the drops travel.
//!
//! Each message names the host that sent it, which skips its own. A host
//! cut off from Redis cannot know what it missed: when its subscription
//! comes back, it drops every entry it holds. What it invalidated itself
//! while cut off is kept, in order, and sent once Redis answers again: the
//! other hosts may never have lost Redis (a host alone cut off), and
//! would otherwise keep serving what it dropped. Past [`MAX_PENDING`]
//! kept messages, they are replaced by one telling every host to drop
//! everything.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::redis::{CALL_TIMEOUT, Redis};
use crate::response_cache::{Fanout, Invalidation, ResponseCache};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// The channel every host publishes to and listens on.
const CHANNEL: &str = "cello:cache-invalidations";
/// How often a subscription checks that Redis still answers.
const PING_EVERY: Duration = Duration::from_secs(1);
/// The pause before subscribing again after losing the subscription, and
/// before sending again what could not be sent.
const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(500);
/// Invalidations kept while they cannot be sent.
const MAX_PENDING: usize = 10_000;
/// Invalidations made and not yet taken to be sent; past them, a
/// component's are coalesced (see [`Fanout`]).
const QUEUED: usize = 1024;

/// One message on the channel.
#[derive(Serialize, Deserialize)]
struct Message {
    /// The sending host, unique per process.
    from: u64,
    invalidation: Invalidation,
}

/// Sends `cache`'s invalidations to the other hosts and drops theirs from
/// it, until the process ends.
pub fn start(redis: Arc<Redis>, cache: Arc<ResponseCache>) {
    let host = host_id();
    let outgoing = cache.broadcast(QUEUED);
    tokio::spawn(publish(redis.clone(), host, outgoing));
    tokio::spawn(listen(redis, host, cache));
}

fn host_id() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS gives random bytes");
    u64::from_le_bytes(bytes)
}

async fn publish(redis: Arc<Redis>, host: u64, outgoing: Arc<Fanout>) {
    let mut pending = Pending::default();
    loop {
        // Waits for the next invalidation; with some unsent, for at most
        // the pause before sending them again.
        let next = if pending.is_empty() {
            outgoing.next().await
        } else {
            match tokio::time::timeout(RESUBSCRIBE_AFTER, outgoing.next()).await {
                Ok(next) => next,
                Err(_) => {
                    send_pending(&redis, &mut pending).await;
                    continue;
                }
            }
        };
        let Some(invalidation) = next else { return };
        pending.push(Message {
            from: host,
            invalidation,
        });
        send_pending(&redis, &mut pending).await;
    }
}

/// Invalidations this host made that the others have not been sent.
#[derive(Default)]
struct Pending {
    messages: std::collections::VecDeque<String>,
    /// More were made than kept: the others are to drop everything.
    overflowed: Option<u64>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.overflowed.is_none()
    }

    fn push(&mut self, message: Message) {
        if self.overflowed.is_some() {
            return;
        }
        if self.messages.len() >= MAX_PENDING {
            tracing::warn!(
                "{MAX_PENDING} cache invalidations could not be sent to the other hosts; \
                 they will be told to drop every cached response instead"
            );
            self.messages.clear();
            self.overflowed = Some(message.from);
            return;
        }
        let text = serde_json::to_string(&message).expect("an invalidation serialises");
        self.messages.push_back(text);
    }

    /// The next message to send.
    fn front(&self) -> Option<String> {
        match self.overflowed {
            Some(from) => Some(
                serde_json::to_string(&Message {
                    from,
                    invalidation: Invalidation::Everything,
                })
                .expect("an invalidation serialises"),
            ),
            None => self.messages.front().cloned(),
        }
    }

    fn sent(&mut self) {
        if self.overflowed.take().is_none() {
            self.messages.pop_front();
        }
    }
}

/// Sends what is pending, in order, until all is sent or Redis fails.
async fn send_pending(redis: &Redis, pending: &mut Pending) {
    while let Some(message) = pending.front() {
        let message = &message;
        let published = redis
            .call(|mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(CHANNEL)
                    .arg(message)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await;
        if let Err(failure) = published {
            tracing::debug!(
                "{} cache invalidations not yet sent to the other hosts: {failure}",
                pending.messages.len().max(1)
            );
            return;
        }
        pending.sent();
    }
}

async fn listen(redis: Arc<Redis>, host: u64, cache: Arc<ResponseCache>) {
    let mut cut_off = false;
    loop {
        let lost = match subscribe(&redis).await {
            Ok((mut sink, mut stream)) => {
                if cut_off {
                    // Whatever was invalidated meanwhile was not heard here.
                    cache.drop_all();
                    tracing::info!(
                        "cache invalidations heard again; dropped every cached response, any \
                         of which may have been invalidated meanwhile"
                    );
                    cut_off = false;
                }
                redis.answered();
                let mut ping = tokio::time::interval(PING_EVERY);
                loop {
                    tokio::select! {
                        message = stream.next() => match message {
                            Some(message) => heard(host, &cache, &message),
                            None => break "the subscription ended".to_string(),
                        },
                        _ = ping.tick() => {
                            let pong = tokio::time::timeout(CALL_TIMEOUT, sink.ping::<redis::Value>()).await;
                            match pong {
                                Ok(Ok(_)) => {}
                                Ok(Err(e)) => break e.to_string(),
                                Err(_) => break "no answer to a ping".to_string(),
                            }
                        }
                    }
                }
            }
            Err(why) => why,
        };
        if !cut_off {
            redis.failed(format!("cache invalidations: {lost}"));
            cut_off = true;
        }
        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
    }
}

async fn subscribe(
    redis: &Redis,
) -> Result<(redis::aio::PubSubSink, redis::aio::PubSubStream), String> {
    let subscribed = tokio::time::timeout(CALL_TIMEOUT, async {
        let mut pubsub = redis.client().get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        Ok::<_, redis::RedisError>(pubsub.split())
    })
    .await;
    match subscribed {
        Ok(Ok(split)) => Ok(split),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", CALL_TIMEOUT.as_millis())),
    }
}

/// Drops what another host's `message` names.
fn heard(host: u64, cache: &ResponseCache, message: &redis::Msg) {
    let parsed = std::str::from_utf8(message.get_payload_bytes())
        .ok()
        .and_then(|text| serde_json::from_str::<Message>(text).ok());
    match parsed {
        Some(message) if message.from == host => {}
        Some(message) => cache.heard(message.invalidation),
        None => tracing::warn!("an unreadable message on {CHANNEL}; ignored"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_as_it_was_written() {
        let message = Message {
            from: 7,
            invalidation: Invalidation::Tags {
                component: "acme/shop".into(),
                tags: vec!["items".into()],
            },
        };
        let text = serde_json::to_string(&message).unwrap();
        assert_eq!(
            text,
            r#"{"from":7,"invalidation":{"tags":{"component":"acme/shop","tags":["items"]}}}"#
        );
        let read: Message = serde_json::from_str(&text).unwrap();
        assert_eq!(read.invalidation, message.invalidation);
    }

    fn component(name: &str) -> Message {
        Message {
            from: 7,
            invalidation: Invalidation::Component(name.into()),
        }
    }

    fn next(pending: &Pending) -> Invalidation {
        let text = pending.front().expect("something pending");
        serde_json::from_str::<Message>(&text).unwrap().invalidation
    }

    #[test]
    fn unsent_invalidations_go_out_in_the_order_they_were_made() {
        let mut pending = Pending::default();
        pending.push(component("a"));
        pending.push(component("b"));
        assert_eq!(next(&pending), Invalidation::Component("a".into()));
        // Not sent: the same one is tried again.
        assert_eq!(next(&pending), Invalidation::Component("a".into()));
        pending.sent();
        assert_eq!(next(&pending), Invalidation::Component("b".into()));
        pending.sent();
        assert!(pending.is_empty());
    }

    #[test]
    fn too_many_unsent_become_one_drop_of_everything() {
        let mut pending = Pending::default();
        for i in 0..=MAX_PENDING {
            pending.push(component(&i.to_string()));
        }
        pending.push(component("after"));
        assert_eq!(next(&pending), Invalidation::Everything);
        pending.sent();
        assert!(pending.is_empty());
    }
}

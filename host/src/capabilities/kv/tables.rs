//! The tables behind the store, and what one write transaction changes in
//! them: the values, each namespace's usage, and the expiry index, kept
//! in step so that a quota is checked, and expired values removed,
//! without a scan.

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition};

use super::{TABLE, expiry, live, scope_of};

/// namespace → (bytes, keys) it holds; an entry's bytes are its key's and
/// its stored value's (expiry included).
pub(super) const USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("kv-usage");
/// (expiry, namespace, key) → nothing: every value with an expiry, soonest
/// first.
pub(super) const EXPIRIES: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("kv-expiries");

/// The tables one write transaction changes.
pub(super) struct Tables<'txn> {
    pub(super) data: redb::Table<'txn, (&'static str, &'static str), &'static [u8]>,
    usage: redb::Table<'txn, &'static str, (u64, u64)>,
    expiries: redb::Table<'txn, (u64, &'static str, &'static str), ()>,
}

impl<'txn> Tables<'txn> {
    /// The three tables, opened in `write`.
    pub(super) fn open(write: &'txn redb::WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(Self {
            data: write.open_table(TABLE)?,
            usage: write.open_table(USAGE)?,
            expiries: write.open_table(EXPIRIES)?,
        })
    }

    /// Stores `stored` under `key` of `namespace`: counted, and indexed by
    /// its expiry.
    pub(super) fn insert(
        &mut self,
        namespace: &str,
        key: &str,
        stored: &[u8],
    ) -> Result<(), redb::StorageError> {
        let old = self
            .data
            .insert((namespace, key), stored)?
            .map(|old| (entry_bytes(key, old.value()), expiry(old.value())));
        if let Some((_, expires)) = old
            && expires != 0
        {
            self.expiries.remove((expires, namespace, key))?;
        }
        let expires = expiry(stored);
        if expires != 0 {
            self.expiries.insert((expires, namespace, key), ())?;
        }
        let new = entry_bytes(key, stored);
        self.count(namespace, |(bytes, keys)| match old {
            Some((old, _)) => (bytes.saturating_sub(old).saturating_add(new), keys),
            None => (bytes.saturating_add(new), keys.saturating_add(1)),
        })
    }

    /// Removes `key` of `namespace`; whether it was there, and live.
    pub(super) fn remove(
        &mut self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<bool>, redb::StorageError> {
        let Some(old) = self.data.remove((namespace, key))? else {
            return Ok(None);
        };
        let was_live = live(old.value()).is_some();
        let (freed, expires) = (entry_bytes(key, old.value()), expiry(old.value()));
        drop(old);
        if expires != 0 {
            self.expiries.remove((expires, namespace, key))?;
        }
        self.count(namespace, |(bytes, keys)| {
            (bytes.saturating_sub(freed), keys.saturating_sub(1))
        })?;
        Ok(Some(was_live))
    }

    /// Removes up to `most` values, of any namespace, that expired by
    /// `now`; how many it removed.
    pub(super) fn reclaim(&mut self, now: u64, most: usize) -> Result<usize, redb::StorageError> {
        let mut expired = Vec::new();
        for entry in self.expiries.iter()?.take(most) {
            let (entry, _) = entry?;
            let (expires, namespace, key) = entry.value();
            if expires > now {
                break;
            }
            expired.push((expires, namespace.to_string(), key.to_string()));
        }
        for (expires, namespace, key) in &expired {
            let stored = self.data.get((namespace.as_str(), key.as_str()))?;
            let indexed = stored.is_some_and(|stored| expiry(stored.value()) == *expires);
            if indexed {
                self.remove(namespace, key)?;
            } else {
                self.expiries
                    .remove((*expires, namespace.as_str(), key.as_str()))?;
            }
        }
        Ok(expired.len())
    }

    /// Bytes and keys held by the namespaces of `scope` together.
    pub(super) fn used(&self, scope: &str) -> Result<(u64, u64), redb::StorageError> {
        let mut total = (0u64, 0u64);
        for entry in self.usage.range(scope..)? {
            let (namespace, count) = entry?;
            if scope_of(namespace.value()) != scope {
                break;
            }
            let (bytes, keys) = count.value();
            total = (total.0.saturating_add(bytes), total.1.saturating_add(keys));
        }
        Ok(total)
    }

    /// Changes the count of `namespace` by `change`.
    pub(super) fn count(
        &mut self,
        namespace: &str,
        change: impl FnOnce((u64, u64)) -> (u64, u64),
    ) -> Result<(), redb::StorageError> {
        let current = self.usage.get(namespace)?.map_or((0, 0), |c| c.value());
        match change(current) {
            (_, 0) => self.usage.remove(namespace)?.map(drop),
            counted => self.usage.insert(namespace, counted)?.map(drop),
        };
        Ok(())
    }
}

/// Counts what each namespace holds and indexes expiries, once: for a
/// store written before they were kept.
pub(super) fn count_usage(write: &redb::WriteTransaction) -> Result<(), redb::Error> {
    write.delete_table(USAGE)?;
    write.delete_table(EXPIRIES)?;
    let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut expiring = Vec::new();
    let table = write.open_table(TABLE)?;
    for entry in table.iter()? {
        let (key, value) = entry?;
        let (namespace, key) = key.value();
        let count = counts.entry(namespace.to_string()).or_default();
        count.0 += entry_bytes(key, value.value());
        count.1 += 1;
        let expires = expiry(value.value());
        if expires != 0 {
            expiring.push((expires, namespace.to_string(), key.to_string()));
        }
    }
    drop(table);
    let mut usage = write.open_table(USAGE)?;
    for (namespace, count) in &counts {
        usage.insert(namespace.as_str(), count)?;
    }
    let mut expiries = write.open_table(EXPIRIES)?;
    for (expires, namespace, key) in &expiring {
        expiries.insert((*expires, namespace.as_str(), key.as_str()), ())?;
    }
    Ok(())
}

/// What one entry counts against its quota.
pub(super) fn entry_bytes(key: &str, stored: &[u8]) -> u64 {
    (key.len() + stored.len()) as u64
}

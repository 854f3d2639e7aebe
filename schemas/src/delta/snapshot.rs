//! The state a Delta log replays to: protocol, metadata, live files, tombstones and each
//! application's transaction version; and the actions a checkpoint of it holds.

use std::collections::BTreeMap;

use super::actions::{Action, Add, Metadata, Protocol, Remove, Txn};

/// A table at one version.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The version replayed to; -1 before the table exists.
    pub version: i64,
    /// Protocol, once the table exists.
    pub protocol: Option<Protocol>,
    /// Metadata, once the table exists.
    pub metadata: Option<Metadata>,
    /// Live files by path.
    pub files: BTreeMap<String, Add>,
    /// Removed files by path (kept for checkpoints until their retention passes).
    pub tombstones: BTreeMap<String, Remove>,
    /// Transaction versions by application id.
    pub txns: BTreeMap<String, Txn>,
    /// Replayed without files (a writer that only needs its txn versions): `files` and
    /// `tombstones` stay empty, so memory does not grow with the table, and the
    /// snapshot must not be checkpointed.
    pub without_files: bool,
}

impl Snapshot {
    /// The state before version 0.
    pub fn empty() -> Snapshot {
        Snapshot {
            version: -1,
            ..Snapshot::default()
        }
    }

    /// Whether the table exists (version 0 is committed).
    pub fn exists(&self) -> bool {
        self.version >= 0
    }

    /// Applies the actions of `version` (the next one).
    pub fn apply(&mut self, version: i64, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Add(_) | Action::Remove(_) if self.without_files => {}
                Action::Add(add) => {
                    self.tombstones.remove(&add.path);
                    self.files.insert(add.path.clone(), add);
                }
                Action::Remove(r) => {
                    self.files.remove(&r.path);
                    self.tombstones.insert(r.path.clone(), r);
                }
                Action::Metadata(m) => self.metadata = Some(m),
                Action::Protocol(p) => self.protocol = Some(p),
                Action::Txn(t) => {
                    self.txns.insert(t.app_id.clone(), t);
                }
                Action::CommitInfo(_) => {}
            }
        }
        self.version = version;
    }

    /// The version `app_id` has committed, if any.
    pub fn txn_version(&self, app_id: &str) -> Option<i64> {
        self.txns.get(app_id).map(|t| t.version)
    }

    /// Live rows by the files' statistics (files without them count 0).
    pub fn rows(&self) -> i64 {
        self.files
            .values()
            .filter_map(|a| a.stats.as_deref())
            .filter_map(super::stats::num_records)
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
            .sum()
    }

    /// The actions of a checkpoint at this version: protocol, metadata, every txn, every
    /// live file, and the tombstones removed after `keep_tombstones_after_ms` (older ones
    /// are past the retention in which a reader or VACUUM may still need them).
    pub fn checkpoint_actions(&self, keep_tombstones_after_ms: i64) -> Vec<Action> {
        let mut out = Vec::with_capacity(2 + self.txns.len() + self.files.len());
        out.extend(self.protocol.map(Action::Protocol));
        out.extend(self.metadata.clone().map(Action::Metadata));
        out.extend(self.txns.values().cloned().map(Action::Txn));
        out.extend(self.files.values().cloned().map(Action::Add));
        out.extend(
            self.tombstones
                .values()
                .filter(|r| r.deletion_timestamp.unwrap_or(0) > keep_tombstones_after_ms)
                .cloned()
                .map(Action::Remove),
        );
        out
    }
}

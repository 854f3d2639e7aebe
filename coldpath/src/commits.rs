//! Reading the hot path's checkpoint log: which raw files are committed, found from the
//! commit entries after the last one this job has seen in each partition's log.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use kvlake_schemas::checkpoint::BatchCommit;
use kvlake_schemas::layout::{LogEntryKind, META_PREFIX, RAW_TABLE, parse_log_entry_name};
use kvlake_schemas::time::parse_date;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::ColdError;

/// A committed raw file and the UTC day it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedRaw {
    pub day: i32,
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// What a scan of the log found: the new files and each log's last commit.
#[derive(Debug, Default)]
pub struct Scan {
    pub files: Vec<CommittedRaw>,
    /// Log folder (relative to the lake root) → highest commit sequence seen.
    pub positions: BTreeMap<String, u64>,
    pub commits_read: usize,
}

/// The day of a raw file from its `raw/date=YYYY-MM-DD/...` path.
pub fn day_of_raw_path(path: &str) -> Option<i32> {
    let rest = path.strip_prefix(RAW_TABLE)?.strip_prefix("/date=")?;
    let date = rest.get(..10)?;
    parse_date(date).and_then(|d| i32::try_from(d).ok())
}

async fn folders(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    rel: &str,
) -> Result<Vec<String>, ColdError> {
    let prefix = root.child_path(rel);
    let listing = store
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(|e| ColdError::storage(rel, e))?;
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(|name| format!("{rel}/{name}")))
        .collect())
}

trait ChildPath {
    fn child_path(&self, rel: &str) -> Path;
}

impl ChildPath for Path {
    fn child_path(&self, rel: &str) -> Path {
        rel.split('/')
            .filter(|s| !s.is_empty())
            .fold(self.clone(), |p, part| p.join(part))
    }
}

/// Lists every partition log and reads the commit entries after `seen` (log folder →
/// last sequence already processed). Plans without a commit are never read: a batch
/// still being written is invisible here until its commit lands.
pub async fn scan(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    seen: &BTreeMap<String, u64>,
) -> Result<Scan, ColdError> {
    let mut logs = Vec::new();
    for topic in folders(store, root, &format!("{META_PREFIX}/log")).await? {
        logs.extend(folders(store, root, &topic).await?);
    }
    let mut entries: Vec<(String, u64, Path)> = Vec::new();
    for log in logs {
        let last = seen.get(&log).copied();
        let prefix = root.child_path(&log);
        let listing: Vec<_> = match last {
            Some(seq) => {
                let offset = prefix.clone().join(format!("{seq:020}.commit.json"));
                store
                    .list_with_offset(Some(&prefix), &offset)
                    .try_collect()
                    .await
            }
            None => store.list(Some(&prefix)).try_collect().await,
        }
        .map_err(|e| ColdError::storage(&log, e))?;
        for meta in listing {
            let Some(name) = meta.location.filename() else {
                continue;
            };
            if let Some((seq, LogEntryKind::Commit)) = parse_log_entry_name(name)
                && last.is_none_or(|l| seq > l)
            {
                entries.push((log.clone(), seq, meta.location.clone()));
            }
        }
    }
    let commits_read = entries.len();
    let bodies: Vec<(String, u64, BatchCommit)> = futures::stream::iter(entries)
        .map(|(log, seq, location)| async move {
            let bytes = store
                .get(&location)
                .await
                .map_err(|e| ColdError::storage(location.as_ref(), e))?
                .bytes()
                .await
                .map_err(|e| ColdError::storage(location.as_ref(), e))?;
            let commit: BatchCommit =
                serde_json::from_slice(&bytes).map_err(|e| ColdError::Corrupt {
                    path: location.to_string(),
                    reason: e.to_string(),
                })?;
            Ok::<_, ColdError>((log, seq, commit))
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    let mut scan = Scan {
        commits_read,
        positions: seen.clone(),
        ..Scan::default()
    };
    for (log, seq, commit) in bodies {
        let position = scan.positions.entry(log).or_insert(seq);
        *position = (*position).max(seq);
        for f in commit.files.into_iter().filter(|f| f.table == RAW_TABLE) {
            let day = day_of_raw_path(&f.path).ok_or_else(|| ColdError::Corrupt {
                path: f.path.clone(),
                reason: "a raw file outside raw/date=YYYY-MM-DD/".into(),
            })?;
            scan.files.push(CommittedRaw {
                day,
                path: f.path,
                rows: f.rows,
                bytes: f.bytes,
            });
        }
    }
    scan.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_paths_give_their_day() {
        assert_eq!(
            day_of_raw_path("raw/date=1970-01-02/hour=03/x.parquet"),
            Some(1)
        );
        assert_eq!(day_of_raw_path("deadletter/date=1970-01-02/x"), None);
        assert_eq!(day_of_raw_path("raw/date=1970-13-02/x"), None);
    }
}

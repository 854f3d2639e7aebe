//! `kvlake migrate`: a lake written before Delta tables becomes Delta tables in place.
//! The raw and dead-letter tables get exactly the files the checkpoint log committed
//! (never an uncommitted attempt), each partition's `txn` at its last commit, so the hot
//! path continues from where it was; the cold path's folders are taken as they are.
//! No data file is rewritten; statistics come from the files' footers.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use kvlake_lake::delta::now_ms;
use kvlake_lake::maintain::convert_folder;
use kvlake_lake::tables::{dead_letter_table, raw_table};
use kvlake_lake::{CommitOutcome, DeltaTable, Lake, TableDef};
use kvlake_schemas::checkpoint::BatchCommit;
use kvlake_schemas::delta::stats::stats_of_file;
use kvlake_schemas::delta::{Action, CommitInfo, Txn};
use kvlake_schemas::layout::{LogEntryKind, META_PREFIX, parse_log_entry_name};

use crate::error::HotError;
use crate::publish::{add_of, app_id, mark_delta};

/// Adds per Delta commit while migrating (a commit is one JSON object; keep it modest).
const ADDS_PER_COMMIT: usize = 5_000;

/// What a migration did.
#[derive(Debug, Default, Clone)]
pub struct MigrateReport {
    /// Checkpoint-log commits read.
    pub commits: usize,
    /// Files added per table.
    pub files: BTreeMap<String, usize>,
}

/// Migrates the raw and dead-letter tables from the checkpoint log, and `folders`
/// (the cold path's tables) from their files.
pub async fn migrate(lake: &Lake, folders: &[TableDef]) -> Result<MigrateReport, HotError> {
    let listed = lake.list(&format!("{META_PREFIX}/log")).await?;
    let commit_paths: Vec<String> = listed
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            parse_log_entry_name(p.rsplit('/').next().unwrap_or_default())
                .is_some_and(|(_, k)| k == LogEntryKind::Commit)
        })
        .collect();
    let commits: Vec<BatchCommit> = futures::stream::iter(commit_paths)
        .map(|p| async move {
            let bytes = lake.get(&p).await?.unwrap_or_default();
            serde_json::from_slice::<BatchCommit>(&bytes).map_err(|e| HotError::LogRecord {
                path: p,
                detail: e.to_string(),
            })
        })
        .buffered(16)
        .try_collect()
        .await?;
    let mut report = MigrateReport {
        commits: commits.len(),
        ..MigrateReport::default()
    };
    let mut last_seq: BTreeMap<String, i64> = BTreeMap::new();
    for c in &commits {
        let v = last_seq.entry(app_id(&c.topic, c.partition)).or_insert(-1);
        *v = (*v).max(i64::try_from(c.seq).unwrap_or(i64::MAX));
    }
    for def in [raw_table(), dead_letter_table()] {
        let table = DeltaTable::new(lake, def.clone());
        let mut snap = table.load().await?;
        table.create_if_missing(&mut snap).await?;
        let files: Vec<_> = commits
            .iter()
            .filter(|c| snap.txn_version(&app_id(&c.topic, c.partition)) < Some(c.seq as i64))
            .flat_map(|c| c.files.iter().filter(|f| f.table == def.path))
            .collect();
        let mut adds = Vec::with_capacity(files.len());
        for f in files {
            let stats = match &f.stats {
                Some(s) => Some(s.clone()),
                None => match lake.get(&f.path).await? {
                    Some(bytes) => {
                        let schema = def.file_schema.clone();
                        tokio::task::spawn_blocking(move || stats_of_file(&bytes, &schema).ok())
                            .await
                            .map_err(|e| HotError::Task(e.to_string()))?
                    }
                    None => {
                        return Err(HotError::LogRecord {
                            path: f.path.clone(),
                            detail: "a committed file is missing from the lake".into(),
                        });
                    }
                },
            };
            adds.push(add_of(f, stats));
        }
        report.files.insert(def.path.clone(), adds.len());
        let mut chunks: Vec<Vec<Action>> = adds
            .chunks(ADDS_PER_COMMIT)
            .map(|c| c.iter().cloned().map(Action::Add).collect())
            .collect();
        // The txns go with the last chunk: until then a rerun adds the same paths again,
        // which replaces them (one entry per path), so an interrupted migration resumes.
        let txns = last_seq.iter().map(|(app, v)| {
            Action::Txn(Txn {
                app_id: app.clone(),
                version: *v,
                last_updated: Some(now_ms()),
            })
        });
        match chunks.last_mut() {
            Some(last) => last.extend(txns),
            None => chunks.push(txns.collect()),
        }
        for chunk in chunks {
            let info = CommitInfo {
                timestamp: now_ms(),
                operation: "CONVERT",
                parameters: BTreeMap::from([("source".into(), "kvlake checkpoint log".into())]),
                blind_append: true,
            };
            let mut actions = vec![info.action()];
            actions.extend(chunk);
            while let CommitOutcome::Conflict = table.commit(&mut snap, actions.clone()).await? {}
        }
    }
    for def in folders {
        let n = convert_folder(&DeltaTable::new(lake, def.clone())).await?;
        report.files.insert(def.path.clone(), n);
    }
    mark_delta(lake).await?;
    Ok(report)
}

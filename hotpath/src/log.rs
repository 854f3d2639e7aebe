//! The checkpoint log of one topic partition, in the lake next to the data: plans written
//! create-if-absent before a batch's files, commits after them. See ARCHITECTURE.md.

use bytes::Bytes;
use kvlake_schemas::checkpoint::{self, BatchCommit, BatchPlan, Resume};
use kvlake_schemas::layout::{LogEntryKind, log_dir, log_entry_path, parse_log_entry_name};
use serde::de::DeserializeOwned;

use crate::error::HotError;
use crate::lake::{Created, Lake};
use crate::publish::Tables;

/// Whether this writer still owns the partition after a create-if-absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// Written by us, or an identical record was already there (a re-run of the same batch).
    Ours,
    /// Another writer recorded a different batch under this sequence number: let go.
    Lost {
        /// The other writer's id.
        by: String,
    },
}

/// One partition's log.
#[derive(Debug, Clone)]
pub struct PartitionLog {
    lake: Lake,
    topic: String,
    partition: i32,
}

impl PartitionLog {
    /// The log of `topic[partition]` in `lake`.
    pub fn new(lake: Lake, topic: &str, partition: i32) -> Self {
        PartitionLog {
            lake,
            topic: topic.to_string(),
            partition,
        }
    }

    async fn read<T: DeserializeOwned>(
        &self,
        seq: u64,
        kind: LogEntryKind,
    ) -> Result<Option<T>, HotError> {
        let path = log_entry_path(&self.topic, self.partition, seq, kind);
        let Some(bytes) = self.lake.get(&path).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| HotError::LogRecord {
                path,
                detail: e.to_string(),
            })
    }

    /// Sequence numbers of the plans and commits present, ascending.
    async fn entries(&self) -> Result<(Vec<u64>, Vec<u64>), HotError> {
        let dir = log_dir(&self.topic, self.partition);
        // The hint names a committed batch; entries are immutable and sort by sequence,
        // so listing from it finds everything newer without reading years of history.
        let listed = match self.latest_hint().await {
            Some(seq) => {
                self.lake
                    .list_after(&dir, &format!("{dir}/{seq:020}"))
                    .await?
            }
            None => self.lake.list(&dir).await?,
        };
        let mut plans = Vec::new();
        let mut commits = Vec::new();
        for (path, _) in listed {
            let name = path.rsplit('/').next().unwrap_or_default();
            match parse_log_entry_name(name) {
                Some((seq, LogEntryKind::Plan)) => plans.push(seq),
                Some((seq, LogEntryKind::Commit)) => commits.push(seq),
                None => {}
            }
        }
        plans.sort_unstable();
        commits.sort_unstable();
        Ok((plans, commits))
    }

    fn hint_path(&self) -> String {
        format!("{}/_latest.json", log_dir(&self.topic, self.partition))
    }

    /// The last committed sequence number the hint records; never authoritative.
    async fn latest_hint(&self) -> Option<u64> {
        let bytes = self.lake.get(&self.hint_path()).await.ok()??;
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()?
            .get("seq")?
            .as_u64()
    }

    /// [`PartitionLog::resume`], after publishing the last commit to the Delta tables if a
    /// crash came between the two: every earlier commit was published before the next
    /// plan was written, so the last one is the only one that can be missing.
    pub async fn resume_published(&self, tables: &Tables) -> Result<Resume, HotError> {
        let (resume, last_commit) = self.resume_with_last().await?;
        if let Some(c) = last_commit {
            tables
                .publish(&c, std::collections::BTreeMap::new())
                .await?;
        }
        Ok(resume)
    }

    /// Where this partition resumes: from the last commit, or by re-running the last plan.
    pub async fn resume(&self) -> Result<Resume, HotError> {
        Ok(self.resume_with_last().await?.0)
    }

    async fn resume_with_last(&self) -> Result<(Resume, Option<BatchCommit>), HotError> {
        let (plans, commits) = self.entries().await?;
        // Both at once: a start reads every partition's log, and each round trip counts.
        let (last_plan, last_commit) = tokio::try_join!(
            async {
                match plans.last() {
                    Some(&s) => self.read::<BatchPlan>(s, LogEntryKind::Plan).await,
                    None => Ok(None),
                }
            },
            async {
                match commits.last() {
                    Some(&s) => self.read::<BatchCommit>(s, LogEntryKind::Commit).await,
                    None => Ok(None),
                }
            },
        )?;
        let resume =
            checkpoint::resume(&self.topic, self.partition, last_plan, last_commit.as_ref())?;
        Ok((resume, last_commit))
    }

    /// Every commit, in order: what a reader that follows the log sees.
    pub async fn commits(&self) -> Result<Vec<BatchCommit>, HotError> {
        let mut commits: Vec<u64> = self
            .lake
            .list(&log_dir(&self.topic, self.partition))
            .await?
            .iter()
            .filter_map(|(path, _)| {
                parse_log_entry_name(path.rsplit('/').next().unwrap_or_default())
            })
            .filter_map(|(seq, kind)| (kind == LogEntryKind::Commit).then_some(seq))
            .collect();
        commits.sort_unstable();
        let mut out = Vec::with_capacity(commits.len());
        for seq in commits {
            if let Some(c) = self.read::<BatchCommit>(seq, LogEntryKind::Commit).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Records a plan before its files are written.
    pub async fn write_plan(&self, plan: &BatchPlan) -> Result<Fence, HotError> {
        let path = log_entry_path(&self.topic, self.partition, plan.seq, LogEntryKind::Plan);
        match self.lake.put_if_absent(&path, to_json(plan)).await? {
            Created::Created => Ok(Fence::Ours),
            Created::AlreadyExists => {
                let theirs: Option<BatchPlan> = self.read(plan.seq, LogEntryKind::Plan).await?;
                Ok(match theirs {
                    Some(t)
                        if (t.start_offset, t.end_offset)
                            == (plan.start_offset, plan.end_offset) =>
                    {
                        Fence::Ours
                    }
                    Some(t) => Fence::Lost { by: t.writer },
                    None => Fence::Lost {
                        by: "unknown".into(),
                    },
                })
            }
        }
    }

    /// Records a commit after its files are written. An identical commit already there
    /// (another writer finished the same planned batch) counts as ours: same range, same files.
    pub async fn write_commit(&self, commit: &BatchCommit) -> Result<Fence, HotError> {
        let path = log_entry_path(
            &self.topic,
            self.partition,
            commit.seq,
            LogEntryKind::Commit,
        );
        fail::fail_point!("before-commit", |_| Err(HotError::Task(
            "failpoint before-commit".into()
        )));
        match self.lake.put_if_absent(&path, to_json(commit)).await? {
            Created::Created => {
                // Best effort: a stale or missing hint only makes the next start list more.
                let hint = Bytes::from(format!("{{\"seq\":{}}}", commit.seq));
                if let Err(e) = self.lake.put(&self.hint_path(), hint).await {
                    tracing::debug!(error = %e, "could not update the log hint");
                }
                Ok(Fence::Ours)
            }
            Created::AlreadyExists => {
                let theirs: Option<BatchCommit> =
                    self.read(commit.seq, LogEntryKind::Commit).await?;
                Ok(match theirs {
                    Some(t)
                        if (t.start_offset, t.end_offset)
                            == (commit.start_offset, commit.end_offset) =>
                    {
                        Fence::Ours
                    }
                    Some(t) => Fence::Lost { by: t.writer },
                    None => Fence::Lost {
                        by: "unknown".into(),
                    },
                })
            }
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(v).unwrap_or_default())
}

/// Deletes the checkpoint-log entries no restart needs: a partition resumes from its
/// newest plan and commit, and every commit before the newest is already in the Delta
/// tables, so all but the newest `keep` entries of each log can go. Keeps a year of
/// service from leaving millions of small objects; returns how many were deleted.
pub async fn prune(lake: &Lake, keep: u64) -> Result<usize, HotError> {
    use futures::StreamExt;
    let root = format!("{}/log", kvlake_schemas::layout::META_PREFIX);
    let mut by_dir: std::collections::BTreeMap<String, Vec<(u64, String)>> = Default::default();
    for (path, _) in lake.list(&root).await? {
        let Some((dir, name)) = path.rsplit_once('/') else {
            continue;
        };
        if let Some((seq, _)) = parse_log_entry_name(name) {
            by_dir.entry(dir.to_string()).or_default().push((seq, path));
        }
    }
    let doomed: Vec<String> = by_dir
        .into_values()
        .flat_map(|entries| {
            let newest = entries.iter().map(|(s, _)| *s).max().unwrap_or(0);
            entries
                .into_iter()
                .filter(move |(s, _)| s + keep < newest)
                .map(|(_, p)| p)
        })
        .collect();
    let n = doomed.len();
    let results: Vec<Result<(), HotError>> = futures::stream::iter(doomed)
        .map(|p| async move { lake.delete(&p).await.map_err(HotError::from) })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seq: u64, start: i64, end: i64, writer: &str) -> BatchPlan {
        BatchPlan {
            version: 1,
            topic: "audit".into(),
            partition: 2,
            seq,
            start_offset: start,
            end_offset: end,
            messages: 1,
            writer: writer.into(),
            planned_at: String::new(),
        }
    }

    fn commit(p: &BatchPlan) -> BatchCommit {
        BatchCommit {
            version: 1,
            topic: p.topic.clone(),
            partition: p.partition,
            seq: p.seq,
            start_offset: p.start_offset,
            end_offset: p.end_offset,
            files: vec![],
            raw_rows: 0,
            dead_letter_rows: 0,
            writer: p.writer.clone(),
            committed_at: String::new(),
        }
    }

    #[tokio::test]
    async fn plan_commit_resume_and_fencing_on_the_local_store() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), &[], None).unwrap();
        let log = PartitionLog::new(lake, "audit", 2);
        assert_eq!(log.resume().await.unwrap(), Resume::Fresh);
        let p0 = plan(0, 0, 10, "a");
        assert_eq!(log.write_plan(&p0).await.unwrap(), Fence::Ours);
        assert_eq!(log.resume().await.unwrap(), Resume::Rerun(p0.clone()));
        // A re-run of the same plan by another writer is not a conflict.
        assert_eq!(
            log.write_plan(&plan(0, 0, 10, "b")).await.unwrap(),
            Fence::Ours
        );
        // A different batch under the same number is.
        assert_eq!(
            log.write_plan(&plan(0, 0, 12, "b")).await.unwrap(),
            Fence::Lost { by: "a".into() }
        );
        assert_eq!(log.write_commit(&commit(&p0)).await.unwrap(), Fence::Ours);
        assert_eq!(
            log.resume().await.unwrap(),
            Resume::From { seq: 1, offset: 10 }
        );
        assert_eq!(log.commits().await.unwrap(), vec![commit(&p0)]);
        // With a hint, resume lists from it and still sees a newer uncommitted plan.
        let p1 = plan(1, 10, 20, "a");
        log.write_plan(&p1).await.unwrap();
        assert_eq!(log.latest_hint().await, Some(0));
        assert_eq!(log.resume().await.unwrap(), Resume::Rerun(p1.clone()));
        log.write_commit(&commit(&p1)).await.unwrap();
        assert_eq!(log.latest_hint().await, Some(1));
        assert_eq!(
            log.resume().await.unwrap(),
            Resume::From { seq: 2, offset: 20 }
        );
    }
}

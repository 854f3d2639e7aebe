//! Record formats of the checkpoint log (one log per topic partition, in the lake) and
//! the pure rule that decides where a partition resumes.

use serde::{Deserialize, Serialize};

/// Version of the log record format.
pub const LOG_FORMAT_VERSION: u32 = 1;

/// Written create-if-absent before a batch's files: fixes the batch's offset range so a
/// restart re-runs it to the same files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPlan {
    /// [`LOG_FORMAT_VERSION`].
    pub version: u32,
    /// Topic (event hub).
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Position in this partition's log, from 0, without gaps.
    pub seq: u64,
    /// First offset of the batch.
    pub start_offset: i64,
    /// One past the last offset of the batch.
    pub end_offset: i64,
    /// Messages in the range (offsets may have gaps, so not always end - start).
    pub messages: u64,
    /// The instance that planned it (host and process), for operators.
    pub writer: String,
    /// When it was planned, RFC 3339 UTC.
    pub planned_at: String,
}

/// One file a batch wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedFile {
    /// Path relative to the lake root (including any output prefix).
    pub path: String,
    /// `raw` or `deadletter`.
    pub table: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Delta statistics of the file (absent in logs written before Delta tables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
}

/// Written create-if-absent after a batch's files: the batch is part of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCommit {
    /// [`LOG_FORMAT_VERSION`].
    pub version: u32,
    /// Topic (event hub).
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Same as the plan's.
    pub seq: u64,
    /// Same as the plan's.
    pub start_offset: i64,
    /// Same as the plan's.
    pub end_offset: i64,
    /// Files of the batch, raw and dead-letter.
    pub files: Vec<CommittedFile>,
    /// Raw rows written.
    pub raw_rows: u64,
    /// Dead-letter rows written.
    pub dead_letter_rows: u64,
    /// The instance that committed it.
    pub writer: String,
    /// When it was committed, RFC 3339 UTC.
    pub committed_at: String,
}

/// Where a partition goes on from, decided from the last plan and the last commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Nothing in the log: start from the configured starting offsets.
    Fresh,
    /// The last plan is committed: the next batch is `seq`, from `offset`.
    From {
        /// Sequence number of the next plan.
        seq: u64,
        /// Offset the next batch starts at.
        offset: i64,
    },
    /// The last plan has no commit: re-run it, same range, same files.
    Rerun(BatchPlan),
}

/// The log is not in a state this version of kvlake can continue from.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogError {
    /// A commit without its plan, or more than one uncommitted plan.
    #[error("checkpoint log of {topic}[{partition}] is inconsistent: {detail}")]
    Inconsistent {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// What is wrong.
        detail: String,
    },
    /// A plan or commit that does not start where the previous batch ended.
    #[error(
        "checkpoint of {topic}[{partition}] batch {seq} starts at offset {start} but the previous batch ended at {expected}: checkpoints only move forward"
    )]
    Gap {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offending batch.
        seq: u64,
        /// Its start offset.
        start: i64,
        /// Where the previous batch ended.
        expected: i64,
    },
    /// A log record written by a newer kvlake.
    #[error(
        "checkpoint log record format {found} is newer than this kvlake understands ({LOG_FORMAT_VERSION}): upgrade kvlake"
    )]
    NewerFormat {
        /// Version found.
        found: u32,
    },
}

/// Decides where a partition resumes from its newest plan and newest commit.
pub fn resume(
    topic: &str,
    partition: i32,
    last_plan: Option<BatchPlan>,
    last_commit: Option<&BatchCommit>,
) -> Result<Resume, LogError> {
    let inconsistent = |detail: String| LogError::Inconsistent {
        topic: topic.to_string(),
        partition,
        detail,
    };
    for v in [
        last_plan.as_ref().map(|p| p.version),
        last_commit.map(|c| c.version),
    ]
    .into_iter()
    .flatten()
    {
        if v > LOG_FORMAT_VERSION {
            return Err(LogError::NewerFormat { found: v });
        }
    }
    match (last_plan, last_commit) {
        (None, None) => Ok(Resume::Fresh),
        (None, Some(c)) => Err(inconsistent(format!("commit {} has no plan", c.seq))),
        (Some(p), None) if p.seq == 0 => Ok(Resume::Rerun(p)),
        (Some(p), None) => Err(inconsistent(format!(
            "plan {} but no commit before it",
            p.seq
        ))),
        (Some(p), Some(c)) if p.seq == c.seq => {
            if (p.start_offset, p.end_offset) != (c.start_offset, c.end_offset) {
                return Err(inconsistent(format!(
                    "commit {} does not match its plan's offsets",
                    c.seq
                )));
            }
            Ok(Resume::From {
                seq: c.seq + 1,
                offset: c.end_offset,
            })
        }
        (Some(p), Some(c)) if p.seq == c.seq + 1 => {
            check_follows(topic, partition, c.end_offset, &p)?;
            Ok(Resume::Rerun(p))
        }
        (Some(p), Some(c)) => Err(inconsistent(format!(
            "newest plan is {} but newest commit is {}",
            p.seq, c.seq
        ))),
    }
}

/// A new plan must start exactly where the previous batch ended.
pub fn check_follows(
    topic: &str,
    partition: i32,
    previous_end: i64,
    plan: &BatchPlan,
) -> Result<(), LogError> {
    if plan.start_offset != previous_end || plan.end_offset < plan.start_offset {
        return Err(LogError::Gap {
            topic: topic.to_string(),
            partition,
            seq: plan.seq,
            start: plan.start_offset,
            expected: previous_end,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seq: u64, start: i64, end: i64) -> BatchPlan {
        BatchPlan {
            version: 1,
            topic: "t".into(),
            partition: 0,
            seq,
            start_offset: start,
            end_offset: end,
            messages: (end - start) as u64,
            writer: "w".into(),
            planned_at: String::new(),
        }
    }

    fn commit(p: &BatchPlan) -> BatchCommit {
        BatchCommit {
            version: 1,
            topic: p.topic.clone(),
            partition: 0,
            seq: p.seq,
            start_offset: p.start_offset,
            end_offset: p.end_offset,
            files: vec![],
            raw_rows: 0,
            dead_letter_rows: 0,
            writer: "w".into(),
            committed_at: String::new(),
        }
    }

    #[test]
    fn resume_decisions() {
        assert_eq!(resume("t", 0, None, None), Ok(Resume::Fresh));
        let p0 = plan(0, 0, 10);
        assert_eq!(
            resume("t", 0, Some(p0.clone()), None),
            Ok(Resume::Rerun(p0.clone()))
        );
        assert_eq!(
            resume("t", 0, Some(p0.clone()), Some(&commit(&p0))),
            Ok(Resume::From { seq: 1, offset: 10 })
        );
        let p1 = plan(1, 10, 20);
        assert_eq!(
            resume("t", 0, Some(p1.clone()), Some(&commit(&p0))),
            Ok(Resume::Rerun(p1))
        );
        let gap = plan(1, 12, 20);
        assert!(matches!(
            resume("t", 0, Some(gap), Some(&commit(&p0))),
            Err(LogError::Gap { .. })
        ));
        assert!(matches!(
            resume("t", 0, Some(plan(3, 30, 40)), Some(&commit(&p0))),
            Err(LogError::Inconsistent { .. })
        ));
        assert!(matches!(
            resume("t", 0, None, Some(&commit(&p0))),
            Err(LogError::Inconsistent { .. })
        ));
        let mut newer = plan(0, 0, 1);
        newer.version = 9;
        assert_eq!(
            resume("t", 0, Some(newer), None),
            Err(LogError::NewerFormat { found: 9 })
        );
    }

    #[test]
    fn records_round_trip_as_json() {
        let p = plan(7, 70, 80);
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<BatchPlan>(&text).unwrap(), p);
    }
}

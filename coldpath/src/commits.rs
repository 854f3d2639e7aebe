//! What the cold path reads of the raw table: its Delta log. The live files of each day
//! come from the newest snapshot (checkpoint + recent commits), and the days to
//! recompute from the commits since the version the last run saw, so neither the state
//! nor a run's cost grows with the lake's age.

use std::collections::{BTreeMap, BTreeSet};

use kvlake_lake::DeltaTable;
use kvlake_schemas::delta::stats::num_records;
use kvlake_schemas::delta::{Action, Snapshot};
use kvlake_schemas::layout::RAW_TABLE;
use kvlake_schemas::time::parse_date;

use crate::error::ColdError;

/// A live raw file and its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFile {
    /// Path relative to the lake root.
    pub path: String,
    /// Rows, from the file's statistics.
    pub rows: u64,
}

/// The raw table at its newest version, by day.
#[derive(Debug, Default)]
pub struct RawDays {
    /// The raw table's version (-1: no table yet).
    pub version: i64,
    /// Day (since epoch) → its live files.
    pub days: BTreeMap<i32, Vec<RawFile>>,
}

impl RawDays {
    /// The live files of a snapshot, by their `date` partition.
    pub fn of(snap: &Snapshot) -> RawDays {
        let mut days: BTreeMap<i32, Vec<RawFile>> = BTreeMap::new();
        for add in snap.files.values() {
            let Some(day) = day_of(&add.partition_values) else {
                continue;
            };
            let rows = add.stats.as_deref().and_then(num_records).unwrap_or(0);
            days.entry(day).or_default().push(RawFile {
                path: format!("{RAW_TABLE}/{}", add.path),
                rows,
            });
        }
        RawDays {
            version: snap.version,
            days,
        }
    }

    /// Every day with data.
    pub fn known_days(&self) -> BTreeSet<i32> {
        self.days.keys().copied().collect()
    }

    /// The live files of `day`.
    pub fn files_of(&self, day: i32) -> &[RawFile] {
        self.days.get(&day).map_or(&[], Vec::as_slice)
    }
}

fn day_of(values: &BTreeMap<String, Option<String>>) -> Option<i32> {
    let d = parse_date(values.get("date")?.as_deref()?)?;
    i32::try_from(d).ok()
}

/// The days whose rows changed between `since` (the version the last run saw; `None`
/// for the first run) and `now`. Compaction (`dataChange=false`) changes no day.
/// When the commits in between are gone (the log keeps 30 days), every day is changed.
pub async fn changed_days(
    raw: &DeltaTable,
    since: Option<i64>,
    now: &RawDays,
) -> Result<BTreeSet<i32>, ColdError> {
    let Some(since) = since else {
        return Ok(now.known_days());
    };
    if since >= now.version {
        return Ok(BTreeSet::new());
    }
    let Some(commits) = raw.commits_between(since, now.version).await? else {
        tracing::warn!(
            since,
            "the raw table's log no longer holds every commit since the last cold run: recomputing every day"
        );
        return Ok(now.known_days());
    };
    let mut days = BTreeSet::new();
    for (_, actions) in commits {
        for a in actions {
            let values = match &a {
                Action::Add(add) if add.data_change => Some(&add.partition_values),
                Action::Remove(r) if r.data_change => r.partition_values.as_ref(),
                _ => None,
            };
            days.extend(values.and_then(day_of));
        }
    }
    Ok(days)
}

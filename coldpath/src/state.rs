//! The cold path's checkpoint in the lake (`_kvlake/cold/state.json`): how far it has read
//! each partition's log, and the committed raw files of every day it knows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kvlake_schemas::layout::META_PREFIX;
use kvlake_schemas::time::{format_date, parse_date};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::commits::CommittedRaw;
use crate::error::ColdError;

/// Where the state lives, relative to the lake root.
pub const STATE_PATH: &str = "_kvlake/cold/state.json";
const VERSION: u32 = 1;
/// What to do about an unreadable state: without it the next run reads every commit again
/// and recomputes every table, which is always correct.
const REBUILD_HINT: &str =
    "delete it, and the next `kvlake cold` recomputes every table from the checkpoint log";

/// One committed raw file, as remembered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawFile {
    pub path: String,
    pub rows: u64,
}

/// Everything a run needs to carry on from the previous one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdState {
    pub version: u32,
    /// Log folder → highest commit sequence already taken in.
    pub logs: BTreeMap<String, u64>,
    /// `YYYY-MM-DD` → committed raw files of that day.
    pub days: BTreeMap<String, Vec<RawFile>>,
    /// When the last run finished (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
}

fn state_path(root: &Path) -> Path {
    STATE_PATH
        .split('/')
        .fold(root.clone(), |p, part| p.join(part))
}

impl ColdState {
    /// Reads the state, or an empty one on the first run.
    pub async fn load(store: &Arc<dyn ObjectStore>, root: &Path) -> Result<ColdState, ColdError> {
        debug_assert!(STATE_PATH.starts_with(META_PREFIX));
        let path = state_path(root);
        let bytes = match store.get(&path).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| ColdError::storage(STATE_PATH, e))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Ok(ColdState {
                    version: VERSION,
                    ..ColdState::default()
                });
            }
            Err(e) => return Err(ColdError::storage(STATE_PATH, e)),
        };
        let state: ColdState = serde_json::from_slice(&bytes).map_err(|e| ColdError::Corrupt {
            path: STATE_PATH.into(),
            reason: format!("{e}; {REBUILD_HINT}"),
        })?;
        if state.version != VERSION {
            return Err(ColdError::Corrupt {
                path: STATE_PATH.into(),
                reason: format!("version {} is not {VERSION}; {REBUILD_HINT}", state.version),
            });
        }
        Ok(state)
    }

    /// Replaces the state in one write: a crash before it leaves the previous state, and
    /// the next run recomputes the same days with the same result.
    pub async fn save(&self, store: &Arc<dyn ObjectStore>, root: &Path) -> Result<(), ColdError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| ColdError::Corrupt {
            path: STATE_PATH.into(),
            reason: e.to_string(),
        })?;
        store
            .put(&state_path(root), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| ColdError::storage(STATE_PATH, e))
    }

    /// Takes in newly committed files; returns the days they touch. A file already known
    /// (the same batch seen twice) is not added again.
    pub fn add(&mut self, files: &[CommittedRaw]) -> BTreeSet<i32> {
        let mut touched = BTreeSet::new();
        for f in files {
            let list = self.days.entry(format_date(i64::from(f.day))).or_default();
            if !list.iter().any(|known| known.path == f.path) {
                list.push(RawFile {
                    path: f.path.clone(),
                    rows: f.rows,
                });
            }
            touched.insert(f.day);
        }
        touched
    }

    /// Every day with committed raw data.
    pub fn known_days(&self) -> BTreeSet<i32> {
        self.days
            .keys()
            .filter_map(|d| parse_date(d))
            .filter_map(|d| i32::try_from(d).ok())
            .collect()
    }

    /// The committed raw files of `day`.
    pub fn files_of(&self, day: i32) -> &[RawFile] {
        self.days
            .get(&format_date(i64::from(day)))
            .map_or(&[], Vec::as_slice)
    }
}

//! The cold path's checkpoint in the lake (`_kvlake/cold/state.json`): the raw table's
//! version the last run took in. Everything else is read from the tables' Delta logs.

use std::sync::Arc;

use kvlake_schemas::layout::META_PREFIX;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::ColdError;

/// Where the state lives, relative to the lake root.
pub const STATE_PATH: &str = "_kvlake/cold/state.json";
const VERSION: u32 = 2;
/// What to do about an unreadable state: without it the next run recomputes every
/// table from the raw table, which is always correct.
const REBUILD_HINT: &str =
    "delete it, and the next `kvlake cold` recomputes every table from the raw table";

/// Everything a run needs to carry on from the previous one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdState {
    pub version: u32,
    /// The raw table's version the last run computed from; `None` before the first.
    #[serde(default)]
    pub raw_version: Option<i64>,
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
    /// Reads the state, or an empty one on the first run. A state of the format before
    /// Delta tables (version 1, a list of files) starts over: every day is recomputed.
    pub async fn load(store: &Arc<dyn ObjectStore>, root: &Path) -> Result<ColdState, ColdError> {
        debug_assert!(STATE_PATH.starts_with(META_PREFIX));
        let fresh = ColdState {
            version: VERSION,
            ..ColdState::default()
        };
        let path = state_path(root);
        let bytes = match store.get(&path).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| ColdError::storage(STATE_PATH, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(fresh),
            Err(e) => return Err(ColdError::storage(STATE_PATH, e)),
        };
        let state: ColdState = serde_json::from_slice(&bytes).map_err(|e| ColdError::Corrupt {
            path: STATE_PATH.into(),
            reason: format!("{e}; {REBUILD_HINT}"),
        })?;
        match state.version {
            VERSION => Ok(state),
            1 => {
                tracing::info!("cold state from before Delta tables: recomputing every day once");
                Ok(fresh)
            }
            v => Err(ColdError::Corrupt {
                path: STATE_PATH.into(),
                reason: format!("version {v} is not {VERSION}; {REBUILD_HINT}"),
            }),
        }
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
}

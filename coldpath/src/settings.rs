//! The anomaly thresholds: defaults from `sql/defaults.toml` (shared with the Spark runner),
//! checks, and the `{{name}}` values substituted into the SQL definitions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ColdError;

/// The defaults file, also read by `deploy/spark/kvlake_cold.py`.
pub const DEFAULTS_TOML: &str = include_str!("../sql/defaults.toml");

/// Thresholds of the anomaly definitions; see `sql/defaults.toml` for where each default
/// comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub mass_retrieval_threshold: u64,
    pub excluded_app_ids: Vec<String>,
    pub sensitive_operations: Vec<String>,
    pub list_read_min_secrets: u64,
    pub denied_burst_min: u64,
    pub window_minutes: u32,
    pub warmup_days: u32,
    pub score_threshold: f64,
    pub volume_min_baseline: f64,
    pub volume_min_ratio: f64,
    pub new_subject_min_operations: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        // The file is part of the build and a unit test parses it.
        #[allow(clippy::expect_used)]
        serde_json::from_value(defaults_value()).expect("sql/defaults.toml is valid")
    }
}

/// The defaults as a JSON value, for layering under user settings.
pub fn defaults_value() -> serde_json::Value {
    // A parse failure is a build defect caught by `defaults_parse`.
    #[allow(clippy::expect_used)]
    let table: toml::Table = toml::from_str(DEFAULTS_TOML).expect("sql/defaults.toml parses");
    #[allow(clippy::expect_used)]
    serde_json::to_value(table).expect("TOML converts to JSON")
}

fn setting(name: &str, reason: impl Into<String>) -> ColdError {
    ColdError::Setting {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// App ids are GUIDs and operation names are words: anything else would be pasted into SQL.
fn check_words(
    name: &str,
    values: &[String],
    allowed: impl Fn(char) -> bool,
) -> Result<(), ColdError> {
    for v in values {
        if v.is_empty() || !v.chars().all(&allowed) {
            return Err(setting(
                name,
                format!("`{v}` is not a valid entry (letters, digits and `-` only)"),
            ));
        }
    }
    Ok(())
}

impl Thresholds {
    /// Rejects values the definitions cannot use, naming the setting.
    pub fn validate(&self) -> Result<(), ColdError> {
        if !(1..=10).contains(&self.window_minutes) {
            return Err(setting(
                "window_minutes",
                "must be 1 to 10 (the definitions join 10-minute buckets)",
            ));
        }
        if self.warmup_days == 0 || self.warmup_days > 28 {
            return Err(setting(
                "warmup_days",
                "must be 1 to 28 (the baseline window)",
            ));
        }
        for (name, v) in [
            ("score_threshold", self.score_threshold),
            ("volume_min_baseline", self.volume_min_baseline),
            ("volume_min_ratio", self.volume_min_ratio),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(setting(name, "must be a finite number, 0 or more"));
            }
        }
        check_words("excluded_app_ids", &self.excluded_app_ids, |c| {
            c.is_ascii_hexdigit() || c == '-'
        })?;
        if self.sensitive_operations.is_empty() {
            return Err(setting(
                "sensitive_operations",
                "must name at least one operation",
            ));
        }
        check_words("sensitive_operations", &self.sensitive_operations, |c| {
            c.is_ascii_alphanumeric()
        })
    }

    /// The `{{name}}` values of the definitions (lists become SQL string lists).
    pub fn sql_values(&self) -> BTreeMap<&'static str, String> {
        let list = |v: &[String]| {
            if v.is_empty() {
                // `x NOT IN ('')` keeps every real value.
                "''".to_string()
            } else {
                v.iter()
                    .map(|s| format!("'{}'", s.to_lowercase()))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let ops = self
            .sensitive_operations
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        BTreeMap::from([
            (
                "mass_retrieval_threshold",
                self.mass_retrieval_threshold.to_string(),
            ),
            ("excluded_app_ids", list(&self.excluded_app_ids)),
            ("sensitive_operations", ops),
            (
                "list_read_min_secrets",
                self.list_read_min_secrets.to_string(),
            ),
            ("denied_burst_min", self.denied_burst_min.to_string()),
            ("window_minutes", self.window_minutes.to_string()),
            ("warmup_days", self.warmup_days.to_string()),
            ("score_threshold", sql_number(self.score_threshold)),
            ("volume_min_baseline", sql_number(self.volume_min_baseline)),
            ("volume_min_ratio", sql_number(self.volume_min_ratio)),
            (
                "new_subject_min_operations",
                self.new_subject_min_operations.to_string(),
            ),
        ])
    }
}

/// A decimal literal both engines read as a number (never `1e3` or `inf`).
fn sql_number(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0');
    format!("{s}0")
}

/// Replaces every `{{name}}` in `sql`; a placeholder without a value is an error, so a
/// definition never runs half-filled.
pub fn substitute(
    table: &str,
    sql: &str,
    values: &BTreeMap<&'static str, String>,
) -> Result<String, ColdError> {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| ColdError::output(table, "unclosed `{{` in the definition"))?;
        let name = after[..end].trim();
        let value = values
            .get(name)
            .ok_or_else(|| ColdError::output(table, format!("no value for `{{{{{name}}}}}`")))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let t = Thresholds::default();
        assert_eq!(t.mass_retrieval_threshold, 25);
        assert_eq!(t.sensitive_operations.len(), 7);
        t.validate().unwrap();
    }

    #[test]
    fn bad_values_name_the_setting() {
        let mut t = Thresholds {
            window_minutes: 11,
            ..Thresholds::default()
        };
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("window_minutes")
        );
        t.window_minutes = 10;
        t.excluded_app_ids = vec!["x'); DROP".into()];
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("excluded_app_ids")
        );
    }

    #[test]
    fn substitution_fills_every_placeholder_or_fails() {
        let values = Thresholds::default().sql_values();
        let sql = substitute("t", "a {{warmup_days}} b {{ score_threshold }}", &values).unwrap();
        assert_eq!(sql, "a 7 b 3.0");
        assert!(substitute("t", "{{nope}}", &values).is_err());
        assert!(substitute("t", "{{warmup_days", &values).is_err());
        assert_eq!(sql_number(1.5), "1.50");
        assert_eq!(sql_number(5.0), "5.0");
    }
}

//! What the criterion benches and the harnesses share: the speed layer's thresholds as the
//! binary reads them, and a generator corpus cut into Kafka messages.

use kvlake_generator::{Format, Generator, GeneratorConfig};
use kvlake_hotpath::messages::Msg;
use kvlake_hotpath::speed::Thresholds;

/// The speed layer's thresholds from `coldpath/sql/defaults.toml`, field for field (the
/// binary's own mapping lowers the excluded app ids the same way).
pub fn speed_thresholds() -> Thresholds {
    let t = kvlake_coldpath::Thresholds::default();
    Thresholds {
        mass_retrieval_threshold: t.mass_retrieval_threshold,
        excluded_app_ids: t
            .excluded_app_ids
            .iter()
            .map(|a| a.to_lowercase())
            .collect(),
        sensitive_operations: t.sensitive_operations,
        list_read_min_secrets: t.list_read_min_secrets,
        denied_burst_min: t.denied_burst_min,
        window_minutes: t.window_minutes,
        warmup_days: t.warmup_days,
        score_threshold: t.score_threshold,
        volume_min_baseline: t.volume_min_baseline,
        volume_min_ratio: t.volume_min_ratio,
        new_subject_min_operations: t.new_subject_min_operations,
    }
}

/// `records` generator records in envelope messages (one per line, offsets from 0), at
/// `events_per_second` of event time.
pub fn envelope_messages(records: usize, events_per_second: f64, seed: u64) -> Vec<Msg> {
    let mut g = Generator::new(GeneratorConfig {
        seed,
        events_per_second,
        ..GeneratorConfig::default()
    });
    let mut out = Vec::new();
    g.write_records(records, Format::Envelope, &mut out);
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| Msg {
            offset: i as i64,
            timestamp_ms: Some(1_793_527_200_000),
            payload: l.to_vec(),
        })
        .collect()
}

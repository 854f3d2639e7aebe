//! Memory of the speed layer's rules per 1,000 identities: fills `speed::Rules` with a
//! synthetic estate (each identity 30 calls a day on 3 of 40 vaults from 2 IPs, spread
//! over 4 partitions) and reports the measured RSS growth and the state's own estimate
//! (`State::approx_bytes`, the `kvlake_hot_alert_state_bytes` gauge), after the first day
//! (live state only) and after 29 days (live state plus the 28-day history the stream
//! rolled in, as a month-old lake loads from the cold path's tables).
//!
//! `cargo build -p kvlake-benches --bin speed-state && target/debug/speed-state [identities] [days]`

use anyhow::{Context, Result};
use kvlake_hotpath::speed::event::Event;
use kvlake_hotpath::speed::history::History;
use kvlake_hotpath::speed::rules::{Rules, Thresholds};

const DAY: i64 = 86_400_000_000;
/// 2026-11-01.
const START: i64 = 20_393 * DAY;
const PARTITIONS: i64 = 4;

fn rss_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).context("statm")?.parse()?;
    Ok(pages * 4096)
}

fn thresholds() -> Thresholds {
    Thresholds {
        mass_retrieval_threshold: 25,
        excluded_app_ids: vec!["509e4652-da8d-478d-a730-e9d4a1996ca4".into()],
        sensitive_operations: ["VaultDelete", "KeyDelete", "SecretDelete", "SecretPurge"]
            .map(String::from)
            .to_vec(),
        list_read_min_secrets: 10,
        denied_burst_min: 10,
        window_minutes: 10,
        warmup_days: 7,
        score_threshold: 3.0,
        volume_min_baseline: 5.0,
        volume_min_ratio: 1.5,
        new_subject_min_operations: 5,
    }
}

/// One identity's calls of day `d`.
fn calls(i: u64, d: i64, out: &mut Vec<Event>) {
    let oid = format!("{:08x}-0000-4000-8000-{:012x}", i as u32, i);
    let vaults =
        [i % 40, (i * 7 + 3) % 40, (i * 13 + 5) % 40].map(|v| format!("kv-app-{v:02}-prod"));
    let ips = [
        format!("10.{}.{}.{}", i % 200, (i / 200) % 250, 1 + i % 250),
        format!("172.16.{}.{}", i % 250, 1 + (i / 250) % 250),
    ];
    for k in 0..30u64 {
        let (op, status, object) = match k {
            0 => ("SecretList", 200, None),
            1 | 2 => ("SecretSet", 403, Some(format!("s-{}", k % 8))),
            3..=20 => ("SecretGet", 200, Some(format!("s-{}", k % 8))),
            21..=26 => ("KeyGet", 200, Some(format!("k-{}", k % 3))),
            _ => ("VaultGet", 200, None),
        };
        let t = START + d * DAY + ((i * 7919 + k * 2_879_000_000_u64) % (DAY as u64)) as i64;
        out.push(Event {
            partition: ((i + k) as i64 % PARTITIONS) as i32,
            offset: 0,
            record_index: 0,
            time: t,
            operation: op.into(),
            success: status < 400,
            http_status: Some(status),
            identity: Some(oid.as_str().into()),
            object_id: Some(oid.as_str().into()),
            app_id: Some("0e2f6b1c-1111-2222-3333-444444444444".into()),
            vault: Some(vaults[(k % 3) as usize].as_str().into()),
            ip: Some(ips[(k % 2) as usize].as_str().into()),
            object_name: object.map(Into::into),
        });
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let identities: u64 = args.get(1).map_or(Ok(5000), |s| s.parse())?;
    let days: i64 = args.get(2).map_or(Ok(29), |s| s.parse())?;
    let base = rss_bytes()?;
    let mut rules = Rules::new(thresholds(), "kv-audit", History::default(), 3_600_000_000);
    let mut offsets = [0i64; PARTITIONS as usize];
    let per_k = identities as f64 / 1000.0;
    println!(
        "speed-layer state, {identities} identities x 30 calls a day, 3 vaults and 2 IPs each, {PARTITIONS} partitions ({})",
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        }
    );
    let mut alerts = 0usize;
    for d in 0..days {
        let mut day = Vec::with_capacity(identities as usize * 30);
        for i in 0..identities {
            calls(i, d, &mut day);
        }
        day.sort_by_key(|e| e.time);
        for (n, mut e) in day.into_iter().enumerate() {
            let p = e.partition as usize;
            e.offset = offsets[p];
            offsets[p] += 1;
            alerts += rules.observe(&e, e.time).len();
            if n % 2000 == 0 {
                rules.evict();
            }
        }
        rules.evict();
        if d == 0 || d == days - 1 {
            let rss = rss_bytes()?.saturating_sub(base);
            let est = rules.state.approx_bytes();
            println!(
                "after day {:>2}: RSS +{:>6.1} MiB = {:>6.0} KiB per 1,000 identities; state estimate {:>6.0} KiB per 1,000 (live days {}, history days {})",
                d + 1,
                rss as f64 / f64::from(1 << 20),
                rss as f64 / 1024.0 / per_k,
                est as f64 / 1024.0 / per_k,
                rules.state.days().count(),
                rules.history.lake_days.len()
            );
        }
    }
    println!("({alerts} alerts raised on the way)");
    Ok(())
}

//! One test per rule: pure, no I/O.

use super::*;

const D: i64 = 20_400; // a day number: 2025-11-08
const T0: i64 = D * DAY;

fn thresholds() -> Thresholds {
    // The values of coldpath/sql/defaults.toml (the binary reads the file itself).
    Thresholds {
        mass_retrieval_threshold: 25,
        excluded_app_ids: vec!["509e4652-da8d-478d-a730-e9d4a1996ca4".into()],
        sensitive_operations: [
            "VaultDelete",
            "KeyDelete",
            "SecretDelete",
            "SecretPurge",
            "KeyPurge",
            "SecretBackup",
            "KeyBackup",
        ]
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

/// A lake that has 10 days before day D, during which `known` used vault kv1.
fn warm_history(known: &[&str]) -> History {
    let mut h = History::default();
    for d in 0..10 {
        let day = (D - 10 + d) as i32;
        h.lake_days.insert(day);
        for id in known {
            h.pair(*id, "kv1", day);
            h.ip(*id, "10.0.0.1", day);
        }
    }
    h
}

fn rules(h: History) -> Rules {
    Rules::new(thresholds(), "audit", h, 3_600_000_000)
}

fn ev(p: i32, offset: i64, t: i64, op: &str, id: &str) -> Event {
    Event {
        partition: p,
        offset,
        record_index: 0,
        time: t,
        operation: op.into(),
        success: true,
        http_status: Some(200),
        identity: Some(id.into()),
        object_id: Some(id.into()),
        app_id: None,
        vault: Some("kv1".into()),
        ip: Some("10.0.0.1".into()),
        object_name: Some("s".into()),
    }
}

fn kinds(a: &[Alert]) -> Vec<&str> {
    a.iter().map(|a| a.kind.as_str()).collect()
}

#[test]
fn sensitive_operation_fires_once_per_caller_vault_operation_and_day() {
    let mut r = rules(History::default());
    let a = r.observe(&ev(0, 1, T0 + 5, "SecretPurge", "u1"), 7);
    assert_eq!(kinds(&a), ["sensitive_operation"]);
    assert_eq!(a[0].caller_object_id.as_deref(), Some("u1"));
    assert_eq!((a[0].partition, a[0].offset), (Some(0), Some(1)));
    assert!(
        a[0].description.contains("SecretPurge"),
        "{}",
        a[0].description
    );
    assert!(
        r.observe(&ev(1, 1, T0 + 6, "SecretPurge", "u1"), 7)
            .is_empty()
    );
    let mut failed = ev(0, 2, T0 + 7, "KeyPurge", "u1");
    failed.success = false;
    assert!(r.observe(&failed, 7).is_empty());
    assert_eq!(
        r.observe(&ev(0, 3, T0 + DAY, "SecretPurge", "u1"), 7).len(),
        1
    );
}

#[test]
fn mass_retrieval_counts_every_partition_and_fires_once_after_the_warmup() {
    let mut r = rules(warm_history(&["u1"]));
    let mut fired = Vec::new();
    for i in 0..40 {
        // Spread over four partitions: no partition alone crosses 25.
        fired.extend(r.observe(
            &ev(
                i % 4,
                i64::from(i),
                T0 + i64::from(i) * MINUTE,
                "SecretGet",
                "u1",
            ),
            1,
        ));
    }
    let mass: Vec<&Alert> = fired
        .iter()
        .filter(|a| a.kind == "mass_secret_retrieval")
        .collect();
    assert_eq!(mass.len(), 1);
    assert_eq!(mass[0].observed, 26.0);
    assert_eq!(mass[0].subject, "u1");
    // Before the lake's warm-up nothing fires; excluded apps are never counted.
    let mut cold = rules(History::default());
    let mut excluded = rules(warm_history(&["u2"]));
    for i in 0..40 {
        assert!(
            cold.observe(&ev(0, i, T0 + i, "SecretGet", "u2"), 1)
                .iter()
                .all(|a| a.kind != "mass_secret_retrieval")
        );
        let mut e = ev(0, i, T0 + i, "SecretGet", "u2");
        e.app_id = Some("509e4652-da8d-478d-a730-e9d4a1996ca4".into());
        assert!(excluded.observe(&e, 1).is_empty());
    }
}

#[test]
fn mass_retrieval_of_a_warm_caller_needs_three_deviations_above_its_mean() {
    let mut h = warm_history(&["u1"]);
    for d in 0..10 {
        h.put(Metric::Reads("u1".into()), (D - 10 + d) as i32, 40, 0);
    }
    let mut r = rules(h);
    let mut n = 0;
    for i in 0..60 {
        for a in r.observe(&ev(0, i, T0 + i, "SecretGet", "u1"), 1) {
            if a.kind == "mass_secret_retrieval" {
                n = a.observed as i64;
            }
        }
    }
    // mean 40, spread sqrt(40) ≈ 6.3: fires at 40 + 3 × 6.32 → 59.
    assert_eq!(n, 59);
}

#[test]
fn denied_burst_slides_across_midnight() {
    let mut r = rules(warm_history(&["u1"]));
    let mut out = Vec::new();
    for i in 0..10 {
        let mut e = ev(
            i % 3,
            i64::from(i),
            T0 + DAY - 5 * MINUTE + i64::from(i) * 30_000_000,
            "SecretGet",
            "u1",
        );
        e.success = false;
        e.http_status = Some(403);
        out.extend(r.observe(&e, 1));
    }
    let bursts: Vec<&Alert> = out.iter().filter(|a| a.kind == "denied_burst").collect();
    assert_eq!(bursts.len(), 1, "{out:?}");
    assert_eq!(bursts[0].observed, 10.0);
    assert_eq!(bursts[0].window_end - bursts[0].window_start, 10 * MINUTE);
}

#[test]
fn list_then_read_counts_different_secrets_after_a_list() {
    let mut r = rules(warm_history(&["u1"]));
    let mut out = r.observe(&ev(0, 0, T0, "SecretList", "u1"), 1);
    for i in 0..12 {
        let mut e = ev(
            i % 2,
            i64::from(i) + 1,
            T0 + i64::from(i) * 20_000_000,
            "SecretGet",
            "u1",
        );
        e.object_name = Some(format!("s{}", i % 11).into()); // 11 different
        out.extend(r.observe(&e, 1));
    }
    let l: Vec<&Alert> = out.iter().filter(|a| a.kind == "list_then_read").collect();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].observed, 10.0);
    // Reads after the window do not count.
    let mut r = rules(warm_history(&["u1"]));
    r.observe(&ev(0, 0, T0, "SecretList", "u1"), 1);
    for i in 0..12 {
        let mut e = ev(0, i + 1, T0 + 11 * MINUTE + i, "SecretGet", "u1");
        e.object_name = Some(format!("s{i}").into());
        assert!(r.observe(&e, 1).iter().all(|a| a.kind != "list_then_read"));
    }
}

#[test]
fn list_counts_kept_up_to_date_equal_counts_from_scratch() -> Result<(), std::num::TryFromIntError>
{
    // Lists and reads of one key in no time order, over two partitions of this instance
    // and one of another (its contribution replaced now and then, as an exchange does,
    // with new events and with events it dropped): after every step the lists and
    // per-list counts the rules keep equal a count from the window events, and at the
    // end the day's peak is the largest number of different secrets read within a
    // list's window at any step, counted here from the events.
    let mut r = rules(warm_history(&["u1"]));
    let wk: WinKey = ("u1".into(), "kv1".into());
    let mut other = Contribution {
        partition: 9,
        ..Contribution::default()
    };
    let mut seed = 7u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    let (mut dropped, mut largest) = (0, 0);
    for i in 0..600 {
        let t = T0 + i64::try_from(next(40 * 60))? * 1_000_000;
        let list = next(8) == 0;
        // Denials too: they are kept beside the lists and reads, and a denied read is
        // learnt once, as a denial.
        let denied = !list && next(5) == 0;
        let secret: Name = format!("s{}", next(14)).into();
        if next(10) == 0 {
            other.windows.entry(wk.clone()).or_default().push(WinEvent {
                t,
                kind: if list {
                    WinKind::List
                } else if denied {
                    WinKind::Denied
                } else {
                    WinKind::Get
                },
                secret: (!list && !denied).then(|| secret.clone()),
            });
        } else {
            let mut e = ev(
                i32::try_from(next(2))?,
                i,
                t,
                if list { "SecretList" } else { "SecretGet" },
                "u1",
            );
            e.object_name = Some(secret.clone());
            if denied {
                e.http_status = Some(403);
            }
            r.observe(&e, 1);
        }
        if next(40) == 0 || i == 599 {
            // The other instance sometimes drops events too (its eviction): an event
            // here and there, or everything before a time.
            if let Some(v) = other.windows.get_mut(&wk)
                && next(3) == 0
                && i < 599
            {
                let gone: Vec<WinEvent> = if next(2) == 0 {
                    let at = usize::try_from(next(v.len() as u64))?;
                    vec![v.remove(at)]
                } else {
                    let floor = T0 + i64::try_from(next(20 * 60))? * 1_000_000;
                    let (keep, gone) = v.drain(..).partition(|e| e.t >= floor);
                    *v = keep;
                    gone
                };
                dropped += gone.len();
            }
            let (_, windows) = r.replace(other.clone());
            r.reevaluate(&[], &windows, 1);
        }
        if let Some(c) = r.list_reads.get(&wk) {
            let lists: std::collections::BTreeSet<i64> = r
                .state
                .window_events(&wk)
                .filter(|e| e.kind == WinKind::List)
                .map(|e| e.t)
                .collect();
            let kept: std::collections::BTreeSet<i64> = c.around(None).map(|(l, _)| l).collect();
            assert_eq!(kept, lists, "the lists counted are the window's lists");
            let mut denials: Vec<i64> = r
                .state
                .window_events(&wk)
                .filter(|e| e.kind == WinKind::Denied)
                .map(|e| e.t)
                .collect();
            denials.sort_unstable();
            let kept: Vec<i64> = c.denials(i64::MIN, i64::MAX).collect();
            assert_eq!(kept, denials, "the denials kept are the window's denials");
        }
        for (l, n) in r
            .list_reads
            .get(&wk)
            .into_iter()
            .flat_map(|c| c.around(None))
        {
            let secrets: std::collections::BTreeSet<&str> = r
                .state
                .window_events(&wk)
                .filter(|e| e.kind == WinKind::Get && e.t >= l && e.t <= l + 10 * MINUTE)
                .filter_map(|e| e.secret.as_deref())
                .collect();
            assert_eq!(n, secrets.len() as u64, "list at {l}");
            largest = largest.max(n);
        }
    }
    let peak = r
        .peaks
        .get(&(D as i32, Metric::PeakList("u1".into(), "kv1".into())))
        .copied();
    assert!(largest >= 10, "the test needs a burst");
    assert!(dropped >= 10, "the test needs dropped events ({dropped})");
    assert_eq!(peak, Some(largest));
    Ok(())
}

#[test]
fn day_text_is_format_date() {
    for day in (-800_000..3_000_000)
        .step_by(997)
        .chain([0, 20_400, 2_932_896, -719_468])
    {
        assert_eq!(
            day_text(day).as_str(),
            format_date(i64::from(day)),
            "day {day}"
        );
    }
}

#[test]
fn new_identity_on_vault_needs_the_warmup_and_five_calls() {
    let mut r = rules(warm_history(&["known"]));
    let mut out = Vec::new();
    for i in 0..6 {
        out.extend(r.observe(
            &ev(
                i % 2,
                i64::from(i),
                T0 + i64::from(i),
                "SecretGet",
                "stranger",
            ),
            1,
        ));
        assert!(
            r.observe(&ev(0, 100, T0 + 1, "SecretGet", "known"), 1)
                .iter()
                .all(|a| a.kind != "new_identity_on_vault")
        );
    }
    let n: Vec<&Alert> = out
        .iter()
        .filter(|a| a.kind == "new_identity_on_vault")
        .collect();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].observed, 5.0);
    assert_eq!(n[0].vault_name.as_deref(), Some("kv1"));
    let mut fresh = rules(History::default());
    for i in 0..6 {
        assert!(
            fresh
                .observe(&ev(0, i, T0 + i, "SecretGet", "stranger"), 1)
                .iter()
                .all(|a| a.kind != "new_identity_on_vault")
        );
    }
}

#[test]
fn new_ip_fires_for_a_known_identity_only() {
    let mut r = rules(warm_history(&["known"]));
    let mut out = Vec::new();
    for i in 0..5 {
        let mut e = ev(0, i, T0 + i, "SecretGet", "known");
        e.ip = Some("192.0.2.7".into());
        out.extend(r.observe(&e, 1));
    }
    let n: Vec<&Alert> = out
        .iter()
        .filter(|a| a.kind == "new_ip_for_identity")
        .collect();
    assert_eq!(n.len(), 1);
    assert_eq!(
        (n[0].subject_type.as_str(), n[0].subject.as_str()),
        ("ip", "192.0.2.7")
    );
}

#[test]
fn unusual_volume_fires_when_todays_count_crosses_the_baseline() {
    let mut h = warm_history(&[]);
    for d in 0..10 {
        h.put(Metric::Vault("kv9".into()), (D - 10 + d) as i32, 20, 0);
    }
    let mut r = rules(h);
    let mut at = None;
    for i in 0..60 {
        let mut e = ev(0, i, T0 + i, "SecretGet", "someone");
        e.vault = Some("kv9".into());
        e.identity = None;
        e.object_id = None;
        for a in r.observe(&e, 1) {
            if a.kind == "unusual_volume" {
                assert!(at.is_none(), "fires once");
                at = Some(a.observed);
            }
        }
    }
    // mean 20, spread sqrt(20) ≈ 4.47: 3 deviations → 33.4, 1.5× → 30: fires at 34.
    assert_eq!(at, Some(34.0));
}

#[test]
fn records_later_than_the_lateness_are_left_to_the_cold_path() {
    let mut r = rules(History::default());
    r.observe(&ev(0, 0, T0 + 2 * DAY, "SecretGet", "u1"), 1);
    r.evict();
    assert!(r.observe(&ev(0, 1, T0, "SecretPurge", "u1"), 1).is_empty());
    assert_eq!(r.late_records, 1);
    // The closed day went into the history.
    assert!(r.history.lake_days.contains(&((D + 2 - 1) as i32)) || r.state.days().count() == 1);
}

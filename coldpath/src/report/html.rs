//! The page: one HTML file with its CSS, the SVG charts, a JSON block of the numbers
//! behind each chart, and the findings with their raw events. Nothing is fetched when it
//! opens (a Content-Security-Policy of `default-src 'none'` says so to the browser too).

use std::fmt::Write;

use kvlake_schemas::time::{format_timestamp_micros, parse_date};
use serde::Serialize;

use super::model::{Finding, ReportData};
use super::svg::{self, HBar, count, kind_class};

/// Text and attribute values from the data, escaped for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON data block; `<`, `>` and `&` are escaped inside strings so no value can close
/// the element.
fn json_block(out: &mut String, id: &str, value: &impl Serialize) {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    let text = text
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let _ = write!(
        out,
        r#"<script type="application/json" id="{id}">{text}</script>"#
    );
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

fn time_text(t: Option<i64>) -> String {
    t.map(|t| {
        let s = format_timestamp_micros(t);
        // 2026-11-09T10:15:30.000000Z → 2026-11-09 10:15:30
        format!("{} {}", &s[..10], &s[11..19])
    })
    .unwrap_or_else(|| "–".into())
}

fn opt(v: &Option<String>) -> String {
    v.as_deref().map_or_else(|| "–".to_string(), esc)
}

const CSS: &str = r#"
:root{--bg:#fff;--fg:#1d232b;--muted:#5b6673;--line:#d9dee4;--faint:#eef1f4;--card:#f6f8fa;
--accent:#2563a8;--band:rgba(37,99,168,.16);--bad:#c62828;--badbg:rgba(198,40,40,.10);--warm:rgba(120,120,120,.12);
--k0:#c62828;--k1:#6a1b9a;--k2:#ef6c00;--k3:#ad1457;--k4:#2e7d32;--k5:#1565c0;--k6:#00838f;--k7:#5d4037;--s0:#2563a8;--s1:#ef6c00}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--fg:#e3e7ec;--muted:#9aa5b1;--line:#343b44;--faint:#1f252c;--card:#181d23;
--accent:#6aa7ea;--band:rgba(106,167,234,.22);--bad:#ff6b6b;--badbg:rgba(255,107,107,.16);--warm:rgba(200,200,200,.10);
--k0:#ff6b6b;--k1:#c792ea;--k2:#ffb74d;--k3:#f48fb1;--k4:#81c784;--k5:#64b5f6;--k6:#4dd0e1;--k7:#bcaaa4;--s0:#6aa7ea;--s1:#ffb74d}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1240px;padding:24px;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:36px 0 6px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:0 0 4px}.meta,.caption,figcaption{color:var(--muted)}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:22px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(370px,1fr));gap:10px}
figure{margin:8px 0;break-inside:avoid}figure.small{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:8px}
svg.chart{max-width:100%;height:auto;display:block}
svg text{fill:var(--muted);font-size:11px}svg .title{fill:var(--fg);font-size:11px}svg .kind-label,svg .bar-label{fill:var(--fg);font-size:12px}
svg .bar-note{font-size:11px}svg line.grid{stroke:var(--line);stroke-width:1}svg line.faint{stroke:var(--faint)}
svg line.base,svg line.tick{stroke:var(--muted)}
svg .band{fill:var(--band)}svg .line{fill:none;stroke:var(--accent);stroke-width:1.8}
svg .pt{fill:var(--accent)}svg .pt.bad{fill:var(--bad);stroke:var(--bg);stroke-width:1}svg .anomaly-day{fill:var(--badbg)}
svg .bar{fill:var(--accent)}svg .bar.s0{fill:var(--s0)}svg .bar.s1{fill:var(--s1)}svg .usual{stroke:var(--fg);stroke-width:3}
svg .warmup{fill:var(--warm)}svg .warmup-label{fill:var(--muted);font-style:italic}
svg .mark{stroke:var(--bg);stroke-width:1.2}
.k0{fill:var(--k0);background:var(--k0)}.k1{fill:var(--k1);background:var(--k1)}.k2{fill:var(--k2);background:var(--k2)}.k3{fill:var(--k3);background:var(--k3)}
.k4{fill:var(--k4);background:var(--k4)}.k5{fill:var(--k5);background:var(--k5)}.k6{fill:var(--k6);background:var(--k6)}.k7{fill:var(--k7);background:var(--k7)}
.legend{display:flex;flex-wrap:wrap;gap:14px;color:var(--muted);margin:4px 0}.sw{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-1px;margin-right:4px}
.sw.band{background:var(--band);border:1px solid var(--accent)}.sw.line{background:var(--accent);height:3px;vertical-align:3px}
.sw.bad{background:var(--bad);border-radius:6px}.sw.s0{background:var(--s0)}.sw.s1{background:var(--s1)}.sw.bar{background:var(--accent)}
.sw.usual{background:var(--fg);width:3px}.sw.warm{background:var(--warm);border:1px solid var(--line)}
.kind{display:inline-block;color:#fff;border-radius:3px;padding:0 6px;font-size:12px;font-weight:600}
@media (prefers-color-scheme:dark){.kind{color:#111418}}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:4px 6px;text-align:left;vertical-align:top}
th{color:var(--muted);font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.raw{font-size:12px}table.raw td{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
caption{text-align:left;color:var(--muted);padding:2px 0}
.finding{border:1px solid var(--line);border-left:4px solid var(--bad);border-radius:6px;padding:10px 14px;margin:12px 0;break-inside:avoid}
.finding.alert{border-left-color:var(--accent)}.sentence{font-size:15px;margin:4px 0 8px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0 0 6px}dt{color:var(--muted)}dd{margin:0;word-break:break-all}
.note{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:8px 12px}
a{color:var(--accent)}footer{margin-top:40px;color:var(--muted);font-size:12px}
@media print{:root{--bg:#fff;--fg:#000;--muted:#444;--line:#bbb;--faint:#ddd;--card:#fff;--accent:#1f4e89;--band:rgba(31,78,137,.18)}
body{max-width:none;padding:0;font-size:11px}.grid{grid-template-columns:repeat(2,1fr)}h2{break-after:avoid}
a{color:inherit;text-decoration:none}.finding,figure,tr{break-inside:avoid}}
@page{size:A4;margin:12mm}
"#;

/// The whole page.
pub fn render(d: &ReportData) -> String {
    let first = parse_date(&d.period.first).unwrap_or(0);
    let last = parse_date(&d.period.last).unwrap_or(first);
    let days = last - first + 1;
    let kinds: Vec<String> = {
        let mut k: Vec<String> = super::data::ANOMALY_KINDS
            .iter()
            .map(|s| s.to_string())
            .collect();
        for extra in d.kinds.iter().map(|k| &k.kind) {
            if !k.contains(extra) {
                k.push(extra.clone());
            }
        }
        for f in &d.findings {
            if !k.contains(&f.kind) {
                k.push(f.kind.clone());
            }
        }
        k
    };
    let anomalies = d.findings.iter().filter(|f| f.source == "anomaly").count();
    let alerts = d.findings.iter().filter(|f| f.source == "alert").count();
    let mut o = String::with_capacity(256 * 1024);
    let scope = d
        .vault_filter
        .as_deref()
        .map_or(String::new(), |v| format!(" on vault {}", esc(v)));
    let _ = write!(
        o,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="color-scheme" content="light dark">
<title>kvlake report: Key Vault activity {f} to {l}{scope}</title><style>{CSS}</style></head><body>
<header><h1>Key Vault activity, {f} to {l}{scope}</h1>
<p class="meta">Lake <code>{lake}</code> · {n} UTC days asked, {ld} with data · generated {gen} by <code>kvlake report</code> from the cold path's tables (<code>agg/*</code>) and the raw table</p></header>"#,
        f = d.period.first,
        l = d.period.last,
        lake = esc(&d.lake),
        n = d.period.days,
        ld = d.period.lake_days.len(),
        gen = esc(&d.generated_at),
    );

    // Summary.
    let _ = write!(
        o,
        r#"<section id="summary"><div class="cards">
<div class="card"><b>{}</b>calls</div><div class="card"><b>{}</b>vaults</div><div class="card"><b>{}</b>identities</div>
<div class="card"><b>{anomalies}</b>anomalies</div><div class="card"><b>{}</b>alerts</div></div>"#,
        count(d.calls as f64),
        d.vault_calls.len(),
        count(d.identities as f64),
        if d.alerts_table {
            alerts.to_string()
        } else {
            "–".into()
        }
    );
    o.push_str(r#"<table id="kinds"><caption>Anomaly kinds: how many the cold path found in the period shown and in the whole lake</caption><thead><tr><th>kind</th><th class="num">in the period</th><th class="num">in the lake</th><th class="num">alerts in the period</th></tr></thead><tbody>"#);
    for k in &d.kinds {
        let _ = write!(
            o,
            r#"<tr data-kind="{kind}"><td><span class="kind {c}">{kind}</span></td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            k.in_period,
            k.in_lake,
            k.alerts_in_period,
            kind = esc(&k.kind),
            c = kind_class(&kinds, &k.kind)
        );
    }
    o.push_str("</tbody></table>");
    if !d.alerts_table {
        o.push_str(r#"<p class="note" id="no-alerts">This lake has no <code>alerts</code> table: the speed layer (streaming detections of <code>kvlake hot</code>) has not written one, so only the cold path's daily anomalies are shown.</p>"#);
    }
    json_block(
        &mut o,
        "data-summary",
        &serde_json::json!({
            "lake": d.lake, "period": d.period, "vault_filter": d.vault_filter,
            "calls": d.calls, "identities": d.identities, "kinds": d.kinds,
            "alerts_table": d.alerts_table, "settings": d.settings,
        }),
    );
    o.push_str("</section>");

    // Calls per vault.
    o.push_str(r#"<section id="calls"><h2>Calls per day on each vault</h2><div class="legend"><span><span class="sw line"></span>calls per UTC day</span><span><span class="sw band"></span>usual range</span><span><span class="sw bad"></span>day with an anomaly on the vault</span></div><div class="grid">"#);
    for (i, v) in d.vault_calls.iter().enumerate() {
        let _ = write!(
            o,
            r#"<figure class="small" data-vault="{name}"><h3>{name} <span class="meta">· {} calls</span></h3>{}</figure>"#,
            count(v.total as f64),
            svg::vault_calls(v, first, days, i),
            name = esc(&v.vault)
        );
    }
    if d.vault_calls.is_empty() {
        o.push_str(r#"<p class="note">No calls in the period.</p>"#);
    }
    let _ = write!(
        o,
        r#"</div><p class="caption">Calls (all operations, every result) per UTC day on each vault, from <code>agg/vault_daily</code>; busiest vault first. The shaded band is the vault's usual range from <code>agg/baselines</code>: its mean over the 28 days before, plus or minus {k} × the spread (the standard deviation, at least √mean and 1), and at least {r} × the mean at the top — above the band a day is reported as <code>unusual_volume</code>. The band starts once the vault has {w} days of history. Red marks and columns: days with an anomaly on the vault (any kind; hover for which).</p>"#,
        k = d.settings.score_threshold,
        r = d.settings.volume_min_ratio,
        w = d.settings.warmup_days
    );
    json_block(&mut o, "data-vault-calls", &d.vault_calls);
    o.push_str("</section>");

    // Timeline.
    let _ = write!(
        o,
        r#"<section id="timeline-section"><h2>Anomalies{} over time</h2><div class="legend"><span><span class="sw bad"></span>anomaly (cold path, daily)</span>{}</div><figure>{}<figcaption>Every finding of the period on a time axis (UTC), one row per kind; an anomaly is placed at the start of its window (mid-day when its window is the whole day), an alert at the start of its window. Hover a mark for its sentence; click to jump to it in the list below. {} anomalies{}.</figcaption></figure>"#,
        if d.alerts_table { " and alerts" } else { "" },
        if d.alerts_table {
            r#"<span>◆ alert (speed layer, seconds after the event)</span>"#
        } else {
            ""
        },
        svg::timeline(&d.findings, &kinds, first, days),
        anomalies,
        if d.alerts_table {
            format!(", {alerts} alerts")
        } else {
            " (no alerts table in this lake)".to_string()
        }
    );
    let timeline: Vec<serde_json::Value> = d
        .findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "source": f.source, "kind": f.kind, "date": f.date, "window_start": f.window_start,
                "subject": f.subject, "vault": f.vault, "alert_id": f.alert_id,
            })
        })
        .collect();
    json_block(&mut o, "data-timeline", &timeline);
    o.push_str("</section>");

    // Top readers.
    o.push_str(r#"<section id="readers"><h2>Top identities by secret reads</h2><div class="legend"><span><span class="sw bar"></span>reads in the period</span><span><span class="sw usual"></span>usual volume for the same days</span></div>"#);
    if d.top_readers.is_empty() {
        o.push_str(
            r#"<p class="note">No successful secret, key or vault reads in the period.</p>"#,
        );
    } else {
        let bars: Vec<HBar> = d
            .top_readers
            .iter()
            .map(|r| {
                let name = r.upn.clone().unwrap_or_else(|| r.identity.clone());
                HBar {
                    label: short(&name, 44),
                    full: match &r.upn {
                        Some(u) => format!("{u} ({})", r.identity),
                        None => r.identity.clone(),
                    },
                    value: r.reads as f64,
                    mark: r.usual_for_period,
                    note: format!(
                        "busiest {}: {}{}",
                        r.busiest_date.get(5..).unwrap_or_default(),
                        count(r.busiest_reads as f64),
                        r.usual_per_day
                            .map_or(String::new(), |u| format!(", usual {}/day", count(u)))
                    ),
                    attrs: format!(
                        r#"data-identity="{}" data-reads="{}""#,
                        esc(&r.identity),
                        r.reads
                    ),
                }
            })
            .collect();
        let _ = write!(
            o,
            r#"<figure>{}<figcaption>The {} identities with the most successful SecretGet, KeyGet and VaultGet calls in the period, from <code>agg/identity_daily</code> (<code>secret_reads</code>){}. The dark tick is their usual volume: the identity's 28-day daily mean from <code>agg/baselines</code> (all vaults; taken on its first day in the period with {} days of history) times the {} days of the period. After each bar: its busiest day and that day's reads. Mass secret retrieval starts above {} reads in a day.</figcaption></figure>"#,
            svg::hbars(
                "top-readers",
                "Top identities by secret reads",
                &bars,
                "successful secret, key and vault reads in the period"
            ),
            d.top_readers.len(),
            d.vault_filter
                .as_deref()
                .map_or(String::new(), |v| format!(" on vault {}", esc(v))),
            d.settings.warmup_days,
            d.period.lake_days.len(),
            d.settings.mass_retrieval_threshold
        );
    }
    json_block(&mut o, "data-top-readers", &d.top_readers);
    o.push_str("</section>");

    // New subjects.
    o.push_str(r#"<section id="new"><h2>New identities on vaults, new IPs per identity</h2><div class="legend"><span><span class="sw s0"></span>identity on a vault for the first time</span><span><span class="sw s1"></span>identity from an IP for the first time</span><span><span class="sw warm"></span>warm-up (the lake is too young for "new" to mean anything)</span></div>"#);
    let _ = write!(
        o,
        r#"<figure>{}<figcaption>First-seen pairs per UTC day, from <code>agg/baselines</code> (scopes <code>vault_identity</code> and <code>identity_ip</code>, rows whose <code>first_seen</code> is that day). In the first {} days of the lake everything is new. The cold path reports a pair from {} calls in the day (<code>new_identity_on_vault</code>, <code>new_ip_for_identity</code>).</figcaption></figure>"#,
        svg::new_subjects(&d.new_days, first, days, d.settings.warmup_days),
        d.settings.warmup_days,
        d.settings.new_subject_min_operations
    );
    if d.new_subjects.is_empty() {
        o.push_str(r#"<p class="note">No first-seen pair after the warm-up in the period.</p>"#);
    } else {
        let _ = write!(
            o,
            r#"<table id="new-list"><caption>First-seen pairs after the warm-up, newest first: {} of {}</caption><thead><tr><th>day</th><th>what</th><th>identity</th><th>vault / IP</th><th class="num">calls that day</th></tr></thead><tbody>"#,
            d.new_subjects.len(),
            d.new_subjects_total
        );
        for s in &d.new_subjects {
            let _ = write!(
                o,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td></tr>"#,
                s.date,
                if s.what == "identity_on_vault" {
                    "new on vault"
                } else {
                    "new IP"
                },
                esc(&s.identity),
                esc(s.vault.as_deref().or(s.ip.as_deref()).unwrap_or("–")),
                count(s.calls as f64)
            );
        }
        o.push_str("</tbody></table>");
    }
    json_block(
        &mut o,
        "data-new-subjects",
        &serde_json::json!({"days": d.new_days, "listed": d.new_subjects, "total": d.new_subjects_total}),
    );
    o.push_str("</section>");

    // Denied.
    o.push_str(r#"<section id="denied"><h2>Denied calls (401/403)</h2>"#);
    if d.denied_vaults.is_empty() {
        o.push_str(r#"<p class="note">No call of a known identity was denied in the period.</p>"#);
    } else {
        let vault_bars: Vec<HBar> = d
            .denied_vaults
            .iter()
            .map(|v| HBar {
                label: short(&v.vault, 44),
                full: v.vault.clone(),
                value: v.denied as f64,
                mark: None,
                note: format!(
                    "{:.1}% of {} calls",
                    100.0 * v.denied as f64 / v.calls.max(1) as f64,
                    count(v.calls as f64)
                ),
                attrs: format!(
                    r#"data-vault="{}" data-denied="{}""#,
                    esc(&v.vault),
                    v.denied
                ),
            })
            .collect();
        let id_bars: Vec<HBar> = d
            .denied_identities
            .iter()
            .map(|v| {
                let name = v.upn.clone().unwrap_or_else(|| v.identity.clone());
                HBar {
                    label: short(&format!("{name} · {}", v.vault), 44),
                    full: format!("{} on {}", v.identity, v.vault),
                    value: v.denied as f64,
                    mark: None,
                    note: format!("of {} calls", count(v.calls as f64)),
                    attrs: format!(
                        r#"data-identity="{}" data-vault="{}" data-denied="{}""#,
                        esc(&v.identity),
                        esc(&v.vault),
                        v.denied
                    ),
                }
            })
            .collect();
        let _ = write!(
            o,
            r#"<figure>{}<figcaption>Calls answered 401 or 403 per vault in the period, from <code>agg/identity_daily</code> (<code>denied_operations</code>; calls without any identity, such as a client's first unauthenticated try, are not counted). After each bar: the share of the vault's calls.</figcaption></figure><figure>{}<figcaption>The {} identity–vault pairs with the most denied calls. A burst of {} or more within {} minutes is reported as <code>denied_burst</code>.</figcaption></figure>"#,
            svg::hbars(
                "denied-vaults",
                "Denied calls per vault",
                &vault_bars,
                "calls answered 401/403 in the period"
            ),
            svg::hbars(
                "denied-identities",
                "Denied calls per identity and vault",
                &id_bars,
                "calls answered 401/403 in the period"
            ),
            d.denied_identities.len(),
            d.settings.denied_burst_min,
            d.settings.window_minutes
        );
    }
    json_block(
        &mut o,
        "data-denied",
        &serde_json::json!({"vaults": d.denied_vaults, "identities": d.denied_identities}),
    );
    o.push_str("</section>");

    // Findings.
    findings(&mut o, d, &kinds);

    let _ = write!(
        o,
        r#"<footer>Made by <code>kvlake report</code> from the Delta tables of the lake: <code>agg/vault_daily</code>, <code>agg/identity_daily</code>, <code>agg/baselines</code>, <code>agg/anomalies</code>{}, and the committed raw rows behind each finding (<code>raw</code>). The page loads nothing: charts are inline SVG, the numbers behind each chart are in the JSON blocks next to it (<code>data-*</code> ids). Times are UTC.</footer></body></html>"#,
        if d.alerts_table {
            ", <code>alerts</code>"
        } else {
            ""
        }
    );
    o
}

fn findings(o: &mut String, d: &ReportData, kinds: &[String]) {
    let _ = write!(
        o,
        r#"<section id="findings"><h2>Every finding, with the raw events behind it</h2>"#
    );
    if d.findings.is_empty() {
        o.push_str(r#"<p class="note">No anomaly in the period.</p>"#);
    } else {
        o.push_str(r#"<table id="findings-table"><caption>Anomalies (and alerts) of the period in time order; the details and raw events of each follow the table</caption><thead><tr><th>#</th><th>day</th><th>kind</th><th>what happened</th><th>subject</th><th>vault</th><th>window (UTC)</th></tr></thead><tbody>"#);
        for (i, f) in d.findings.iter().enumerate() {
            let _ = write!(
                o,
                r##"<tr data-kind="{kind}" data-source="{}"><td><a href="#finding-{i}">{n}</a></td><td>{}</td><td><span class="kind {c}">{kind}</span>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} – {}</td></tr>"##,
                f.source,
                f.date,
                if f.source == "alert" { " alert" } else { "" },
                esc(&f.description),
                opt(&f.subject),
                opt(&f.vault),
                time_text(f.window_start),
                time_text(f.window_end),
                n = i + 1,
                kind = esc(&f.kind),
                c = kind_class(kinds, &f.kind)
            );
        }
        o.push_str("</tbody></table>");
        for (i, f) in d.findings.iter().enumerate() {
            finding(o, i, f, kinds);
        }
    }
    json_block(o, "data-findings", &d.findings);
    o.push_str("</section>");
}

fn finding(o: &mut String, i: usize, f: &Finding, kinds: &[String]) {
    let num = |v: Option<f64>| v.map_or_else(|| "–".to_string(), count);
    let _ = write!(
        o,
        r#"<article class="finding {src}" id="finding-{i}" data-kind="{kind}"><h3>{n}. <span class="kind {c}">{kind}</span> {date} · {src}{id}</h3><p class="sentence">{desc}</p><dl><dt>subject</dt><dd>{subject}{st}</dd><dt>vault</dt><dd>{vault}</dd><dt>identity</dt><dd>{identity}</dd><dt>IP</dt><dd>{ip}</dd><dt>window</dt><dd>{ws} – {we} UTC</dd><dt>observed / usual / score</dt><dd>{obs} / {base} / {score}</dd></dl>"#,
        n = i + 1,
        src = f.source,
        kind = esc(&f.kind),
        c = kind_class(kinds, &f.kind),
        date = f.date,
        id = f
            .alert_id
            .as_deref()
            .map_or(String::new(), |a| format!(" <code>{}</code>", esc(a))),
        desc = esc(&f.description),
        subject = opt(&f.subject),
        st = f
            .subject_type
            .as_deref()
            .map_or(String::new(), |t| format!(" ({})", esc(t))),
        vault = opt(&f.vault),
        identity = opt(&f.identity),
        ip = opt(&f.ip),
        ws = time_text(f.window_start),
        we = time_text(f.window_end),
        obs = num(f.observed),
        base = num(f.baseline),
        score = f
            .score
            .map_or_else(|| "–".to_string(), |s| format!("{s:.1}")),
    );
    if let Some(note) = &f.raw.note {
        let _ = write!(o, r#"<p class="note">{}</p>"#, esc(note));
    }
    let _ = write!(
        o,
        r#"<table class="raw" data-total="{t}" data-shown="{s}"><caption>Raw events behind it: {s} of {t} (first by time), matched on {filter}</caption>"#,
        t = f.raw.total,
        s = f.raw.rows.len(),
        filter = esc(&f.raw.filter)
    );
    if !f.raw.rows.is_empty() {
        o.push_str("<thead><tr><th>time (UTC)</th><th>operation</th><th>HTTP</th><th>vault</th><th>identity</th><th>IP</th><th>object</th><th>source (partition/offset/record)</th></tr></thead><tbody>");
        for r in &f.raw.rows {
            let who = match (&r.upn, &r.identity) {
                (Some(u), _) => u.clone(),
                (None, Some(i)) => i.clone(),
                _ => "–".into(),
            };
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {}/{}/{}</td></tr>",
                esc(&r.time_text),
                opt(&r.operation),
                r.status.map_or_else(|| "–".to_string(), |s| s.to_string()),
                opt(&r.vault),
                esc(&who),
                opt(&r.ip),
                opt(&r.object),
                opt(&r.source),
                r.partition
                    .map_or_else(|| "–".to_string(), |v| v.to_string()),
                r.offset.map_or_else(|| "–".to_string(), |v| v.to_string()),
                r.record_index
                    .map_or_else(|| "–".to_string(), |v| v.to_string()),
            );
        }
        o.push_str("</tbody>");
    }
    o.push_str("</table></article>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_the_data_is_escaped() {
        assert_eq!(
            esc(r#"<img src=x onerror="a">&'"#),
            "&lt;img src=x onerror=&quot;a&quot;&gt;&amp;&#39;"
        );
        let mut o = String::new();
        json_block(&mut o, "x", &serde_json::json!({"upn": "</script><b>"}));
        assert!(
            !o[..o.len() - "</script>".len()].contains("</script>"),
            "{o}"
        );
        let back: serde_json::Value = serde_json::from_str(
            o.trim_start_matches(r#"<script type="application/json" id="x">"#)
                .trim_end_matches("</script>"),
        )
        .unwrap_or_default();
        assert_eq!(back["upn"], "</script><b>");
    }
}

//! The charts, drawn as inline SVG: axes with units, a few marks per value, every mark
//! carrying its numbers as `data-*` attributes and a `<title>` a pointer shows. Colours
//! come from the page's CSS classes, so the light and dark themes and print restyle them.

use std::fmt::Write;

use kvlake_schemas::time::{format_date, parse_date};

use super::html::esc;
use super::model::{Finding, NewDay, VaultSeries};

const DAY_MICROS: i64 = 86_400_000_000;

/// Coordinates with one decimal: enough on screen, short in the file.
fn n(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// A count as people read it: 12,345; fractions with one decimal.
pub fn count(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if (v - v.round()).abs() > 1e-9 && v.abs() < 100.0 {
        return format!("{v:.1}");
    }
    let i = v.round() as i64;
    let s = i.unsigned_abs().to_string();
    let mut out = String::new();
    for (k, c) in s.chars().enumerate() {
        if k > 0 && (s.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if i < 0 { format!("-{out}") } else { out }
}

/// A rounded top and tick step for `max` with about four ticks.
fn ticks(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let step = if step < 1.0 { 1.0 } else { step };
    ((max / step).ceil() * step, step)
}

/// Short date label of a day number: `11-09`.
fn mmdd(day: i64) -> String {
    format_date(day).get(5..).unwrap_or_default().to_string()
}

/// A plot area inside an SVG of `w` × `h`.
struct Frame {
    w: f64,
    h: f64,
    l: f64,
    r: f64,
    t: f64,
    b: f64,
}

impl Frame {
    fn pw(&self) -> f64 {
        self.w - self.l - self.r
    }
    fn ph(&self) -> f64 {
        self.h - self.t - self.b
    }
    fn open(&self, out: &mut String, id: &str, label: &str) {
        let _ = write!(
            out,
            r#"<svg id="{id}" class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">"#,
            w = n(self.w),
            h = n(self.h),
            label = esc(label)
        );
    }
    /// Horizontal grid lines and labels of a value axis from 0 to `top`, and its title.
    fn y_axis(&self, out: &mut String, top: f64, step: f64, title: &str) {
        out.push_str(r#"<g class="axis">"#);
        let mut v = 0.0;
        while v <= top + step / 2.0 {
            let y = self.t + self.ph() * (1.0 - v / top);
            let _ = write!(
                out,
                r#"<line class="grid" x1="{}" x2="{}" y1="{y}" y2="{y}"/><text x="{}" y="{}" text-anchor="end">{}</text>"#,
                n(self.l),
                n(self.w - self.r),
                n(self.l - 4.0),
                n(y + 3.5),
                count(v),
                y = n(y)
            );
            v += step;
        }
        let _ = write!(
            out,
            r#"<text class="title" transform="translate({},{}) rotate(-90)" text-anchor="middle">{}</text></g>"#,
            n(11.0),
            n(self.t + self.ph() / 2.0),
            esc(title)
        );
    }
    /// Day labels along the bottom (`days` slots from `first`), and the axis title.
    fn day_axis(&self, out: &mut String, first: i64, days: i64, title: &str) {
        let every = (days as f64 / (self.pw() / 46.0)).ceil().max(1.0) as i64;
        out.push_str(r#"<g class="axis">"#);
        let slot = self.pw() / days as f64;
        let base = self.t + self.ph();
        let _ = write!(
            out,
            r#"<line class="base" x1="{}" x2="{}" y1="{b}" y2="{b}"/>"#,
            n(self.l),
            n(self.w - self.r),
            b = n(base)
        );
        let mut i = 0;
        while i < days {
            let x = self.l + slot * (i as f64 + 0.5);
            let _ = write!(
                out,
                r#"<line class="tick" x1="{x}" x2="{x}" y1="{}" y2="{}"/><text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
                n(base),
                n(base + 4.0),
                n(base + 15.0),
                mmdd(first + i),
                x = n(x)
            );
            i += every;
        }
        let _ = write!(
            out,
            r#"<text class="title" x="{}" y="{}" text-anchor="middle">{}</text></g>"#,
            n(self.l + self.pw() / 2.0),
            n(self.h - 4.0),
            esc(title)
        );
    }
}

/// Calls per day of one vault with its usual band and the days of its anomalies.
pub fn vault_calls(series: &VaultSeries, first: i64, days: i64, idx: usize) -> String {
    let f = Frame {
        w: 360.0,
        h: 180.0,
        l: 52.0,
        r: 8.0,
        t: 10.0,
        b: 36.0,
    };
    let max = series
        .days
        .iter()
        .map(|d| (d.calls as f64).max(d.high.unwrap_or(0.0)))
        .fold(0.0, f64::max);
    let (top, step) = ticks(max);
    let slot = f.pw() / days as f64;
    let x = |day: i64| f.l + slot * ((day - first) as f64 + 0.5);
    let y = |v: f64| f.t + f.ph() * (1.0 - v / top);
    let mut out = String::new();
    f.open(
        &mut out,
        &format!("vault-calls-{idx}"),
        &format!("Calls per day on vault {}", series.vault),
    );
    f.y_axis(&mut out, top, step, "calls / day");
    f.day_axis(&mut out, first, days, "UTC day");
    let day_of = |d: &str| parse_date(d).unwrap_or(first);
    // Days with an anomaly on this vault, as a tinted column.
    for d in series.days.iter().filter(|d| !d.anomalies.is_empty()) {
        let day = day_of(&d.date);
        let _ = write!(
            out,
            r#"<rect class="anomaly-day" x="{}" y="{}" width="{}" height="{}" data-date="{}" data-kinds="{}"><title>{}: {}</title></rect>"#,
            n(x(day) - slot / 2.0),
            n(f.t),
            n(slot),
            n(f.ph()),
            d.date,
            esc(&d.anomalies.join(" ")),
            d.date,
            esc(&d.anomalies.join(", "))
        );
    }
    // The band, one polygon per run of days that have one.
    let mut run: Vec<(i64, f64, f64)> = Vec::new();
    let flush = |run: &mut Vec<(i64, f64, f64)>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let mut pts: Vec<String> = run
            .iter()
            .map(|(d, _, hi)| format!("{},{}", n(x(*d)), n(y(*hi))))
            .collect();
        pts.extend(
            run.iter()
                .rev()
                .map(|(d, lo, _)| format!("{},{}", n(x(*d)), n(y(*lo)))),
        );
        if run.len() == 1 {
            // A lone day: a short bar instead of a degenerate polygon.
            let (d, lo, hi) = run[0];
            let _ = write!(
                out,
                r#"<rect class="band" x="{}" y="{}" width="{}" height="{}"/>"#,
                n(x(d) - slot / 3.0),
                n(y(hi)),
                n(slot * 2.0 / 3.0),
                n(y(lo) - y(hi))
            );
        } else {
            let _ = write!(out, r#"<polygon class="band" points="{}"/>"#, pts.join(" "));
        }
        run.clear();
    };
    for d in &series.days {
        match (d.low, d.high) {
            (Some(lo), Some(hi)) => run.push((day_of(&d.date), lo, hi)),
            _ => flush(&mut run, &mut out),
        }
    }
    flush(&mut run, &mut out);
    let line: Vec<String> = series
        .days
        .iter()
        .map(|d| format!("{},{}", n(x(day_of(&d.date))), n(y(d.calls as f64))))
        .collect();
    let _ = write!(
        out,
        r#"<polyline class="line" points="{}"/>"#,
        line.join(" ")
    );
    for d in &series.days {
        let usual = match (d.mean_28, d.low, d.high) {
            (Some(m), Some(lo), Some(hi)) => {
                format!("; usual {} (range {} – {})", count(m), count(lo), count(hi))
            }
            _ => String::new(),
        };
        let bad = if d.anomalies.is_empty() { "" } else { " bad" };
        let _ = write!(
            out,
            r#"<circle class="pt{bad}" cx="{}" cy="{}" r="{}" data-vault="{}" data-date="{}" data-calls="{}"><title>{} {}: {} calls{usual}</title></circle>"#,
            n(x(day_of(&d.date))),
            n(y(d.calls as f64)),
            if bad.is_empty() { "2.2" } else { "3.6" },
            esc(&series.vault),
            d.date,
            d.calls,
            esc(&series.vault),
            d.date,
            count(d.calls as f64)
        );
    }
    out.push_str("</svg>");
    out
}

/// The CSS class of a finding kind's colour.
pub fn kind_class(kinds: &[String], kind: &str) -> String {
    let i = kinds.iter().position(|k| k == kind).unwrap_or(kinds.len());
    format!("k{}", i % 8)
}

/// Findings on a time axis, one row per kind: circles for anomalies, diamonds for alerts.
pub fn timeline(findings: &[Finding], kinds: &[String], first: i64, days: i64) -> String {
    let row = 26.0;
    let f = Frame {
        w: 960.0,
        h: 14.0 + row * kinds.len().max(1) as f64 + 40.0,
        l: 200.0,
        r: 16.0,
        t: 10.0,
        b: 40.0,
    };
    let t0 = first * DAY_MICROS;
    let t1 = (first + days) * DAY_MICROS;
    let x = |t: i64| f.l + f.pw() * ((t.clamp(t0, t1) - t0) as f64 / (t1 - t0) as f64);
    let mut out = String::new();
    f.open(
        &mut out,
        "timeline",
        "Anomalies and alerts over time, by kind",
    );
    out.push_str(r#"<g class="axis">"#);
    let every = (days as f64 / (f.pw() / 46.0)).ceil().max(1.0) as i64;
    let base = f.t + f.ph();
    for i in 0..=days {
        let xx = x((first + i) * DAY_MICROS);
        let _ = write!(
            out,
            r#"<line class="{}" x1="{xx}" x2="{xx}" y1="{}" y2="{}"/>"#,
            if i % every == 0 { "grid" } else { "grid faint" },
            n(f.t),
            n(base),
            xx = n(xx)
        );
        if i % every == 0 && i < days {
            let _ = write!(
                out,
                r#"<text x="{}" y="{}" text-anchor="start">{}</text>"#,
                n(xx + 2.0),
                n(base + 15.0),
                mmdd(first + i)
            );
        }
    }
    for (k, kind) in kinds.iter().enumerate() {
        let yy = f.t + row * (k as f64 + 0.5);
        let _ = write!(
            out,
            r#"<line class="grid faint" x1="{}" x2="{}" y1="{y}" y2="{y}"/><text class="kind-label" x="{}" y="{}" text-anchor="end">{}</text>"#,
            n(f.l),
            n(f.w - f.r),
            n(f.l - 8.0),
            n(yy + 4.0),
            esc(kind),
            y = n(yy)
        );
    }
    let _ = write!(
        out,
        r#"<text class="title" x="{}" y="{}" text-anchor="middle">time (UTC), one column per day</text></g>"#,
        n(f.l + f.pw() / 2.0),
        n(f.h - 4.0)
    );
    for (i, finding) in findings.iter().enumerate() {
        let k = kinds.iter().position(|k| *k == finding.kind).unwrap_or(0);
        let yy = f.t + row * (k as f64 + 0.5);
        let day = parse_date(&finding.date).unwrap_or(first);
        let t = finding
            .window_start
            .filter(|t| t.div_euclid(DAY_MICROS) == day)
            .unwrap_or(day * DAY_MICROS + DAY_MICROS / 2);
        let xx = x(t);
        let class = kind_class(kinds, &finding.kind);
        let title = format!("{} {}: {}", finding.date, finding.kind, finding.description);
        let attrs = format!(
            r#"data-source="{}" data-kind="{}" data-date="{}" data-finding="{i}""#,
            finding.source,
            esc(&finding.kind),
            finding.date
        );
        if finding.source == "alert" {
            let _ = write!(
                out,
                r##"<a href="#finding-{i}"><path class="mark alert {class}" d="M{} {}l6 6l-6 6l-6 -6z" {attrs}><title>{}</title></path></a>"##,
                n(xx),
                n(yy - 6.0),
                esc(&title)
            );
        } else {
            let _ = write!(
                out,
                r##"<a href="#finding-{i}"><circle class="mark {class}" cx="{}" cy="{}" r="5" {attrs}><title>{}</title></circle></a>"##,
                n(xx),
                n(yy),
                esc(&title)
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// One row of a horizontal bar chart.
#[derive(Debug)]
pub struct HBar {
    pub label: String,
    /// Shown on hover: the full name.
    pub full: String,
    pub value: f64,
    /// A reference mark (the usual volume), when there is one.
    pub mark: Option<f64>,
    /// Text after the bar.
    pub note: String,
    /// `data-*` attributes of the bar, already escaped.
    pub attrs: String,
}

/// Horizontal bars, largest first as given, on a value axis titled `axis`.
pub fn hbars(id: &str, label: &str, bars: &[HBar], axis: &str) -> String {
    let row = 24.0;
    let f = Frame {
        w: 960.0,
        h: 10.0 + row * bars.len().max(1) as f64 + 40.0,
        l: 310.0,
        r: 200.0,
        t: 10.0,
        b: 40.0,
    };
    let max = bars
        .iter()
        .map(|b| b.value.max(b.mark.unwrap_or(0.0)))
        .fold(0.0, f64::max);
    let (top, step) = ticks(max);
    let x = |v: f64| f.l + f.pw() * (v / top);
    let mut out = String::new();
    f.open(&mut out, id, label);
    out.push_str(r#"<g class="axis">"#);
    let base = f.t + f.ph();
    let mut v = 0.0;
    while v <= top + step / 2.0 {
        let _ = write!(
            out,
            r#"<line class="grid" x1="{xx}" x2="{xx}" y1="{}" y2="{}"/><text x="{xx}" y="{}" text-anchor="middle">{}</text>"#,
            n(f.t),
            n(base),
            n(base + 15.0),
            count(v),
            xx = n(x(v))
        );
        v += step;
    }
    let _ = write!(
        out,
        r#"<text class="title" x="{}" y="{}" text-anchor="middle">{}</text></g>"#,
        n(f.l + f.pw() / 2.0),
        n(f.h - 4.0),
        esc(axis)
    );
    for (i, b) in bars.iter().enumerate() {
        let yy = f.t + row * i as f64;
        let _ = write!(
            out,
            r#"<text class="bar-label" x="{}" y="{}" text-anchor="end">{}<title>{}</title></text>"#,
            n(f.l - 8.0),
            n(yy + row / 2.0 + 4.0),
            esc(&b.label),
            esc(&b.full)
        );
        let _ = write!(
            out,
            r#"<rect class="bar" x="{}" y="{}" width="{}" height="{}" {}><title>{}: {}</title></rect>"#,
            n(f.l),
            n(yy + 4.0),
            n((x(b.value) - f.l).max(1.0)),
            n(row - 8.0),
            b.attrs,
            esc(&b.full),
            count(b.value)
        );
        if let Some(m) = b.mark {
            let _ = write!(
                out,
                r#"<line class="usual" x1="{xx}" x2="{xx}" y1="{}" y2="{}" data-usual="{}"><title>usual: {}</title></line>"#,
                n(yy + 1.0),
                n(yy + row - 1.0),
                n(m),
                count(m),
                xx = n(x(m))
            );
        }
        let _ = write!(
            out,
            r#"<text class="bar-note" x="{}" y="{}">{}</text>"#,
            n(x(b.value.max(b.mark.unwrap_or(0.0))) + 6.0),
            n(yy + row / 2.0 + 4.0),
            esc(&b.note)
        );
    }
    out.push_str("</svg>");
    out
}

/// First-seen pairs per day: two bars a day, warm-up days shaded.
pub fn new_subjects(days_data: &[NewDay], first: i64, days: i64, warmup: u32) -> String {
    let f = Frame {
        w: 960.0,
        h: 230.0,
        l: 52.0,
        r: 10.0,
        t: 12.0,
        b: 40.0,
    };
    let max = days_data
        .iter()
        .map(|d| d.new_identity_on_vault.max(d.new_ip_for_identity) as f64)
        .fold(0.0, f64::max);
    let (top, step) = ticks(max);
    let slot = f.pw() / days as f64;
    let y = |v: f64| f.t + f.ph() * (1.0 - v / top);
    let mut out = String::new();
    f.open(
        &mut out,
        "new-subjects",
        "First-seen identities on vaults and IPs per identity, per day",
    );
    let mut labelled = false;
    for d in days_data.iter().filter(|d| d.lake_age < i64::from(warmup)) {
        let i = parse_date(&d.date).unwrap_or(first) - first;
        let _ = write!(
            out,
            r#"<rect class="warmup" x="{}" y="{}" width="{}" height="{}" data-date="{}"/>"#,
            n(f.l + slot * i as f64),
            n(f.t),
            n(slot),
            n(f.ph()),
            d.date
        );
        if !labelled {
            labelled = true;
            let _ = write!(
                out,
                r#"<text class="warmup-label" x="{}" y="{}">warm-up: everything is new</text>"#,
                n(f.l + slot * i as f64 + 3.0),
                n(f.t + 11.0)
            );
        }
    }
    f.y_axis(&mut out, top, step, "first-seen pairs");
    f.day_axis(&mut out, first, days, "UTC day");
    for d in days_data {
        let i = (parse_date(&d.date).unwrap_or(first) - first) as f64;
        let w = (slot * 0.36).max(1.0);
        for (k, (series, v)) in [
            ("identity_on_vault", d.new_identity_on_vault),
            ("ip_for_identity", d.new_ip_for_identity),
        ]
        .into_iter()
        .enumerate()
        {
            let xx = f.l + slot * i + slot * 0.14 + w * k as f64;
            let _ = write!(
                out,
                r#"<rect class="bar s{k}" x="{}" y="{}" width="{}" height="{}" data-date="{}" data-series="{series}" data-count="{v}"><title>{}: {v} {}</title></rect>"#,
                n(xx),
                n(y(v as f64)),
                n(w),
                n(f.t + f.ph() - y(v as f64)),
                d.date,
                d.date,
                if k == 0 {
                    "identities on a vault for the first time"
                } else {
                    "identities from a new IP"
                }
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_like_numbers() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(1234567.0), "1,234,567");
        assert_eq!(count(-1200.0), "-1,200");
        assert_eq!(count(2.5), "2.5");
        assert_eq!(count(f64::NAN), "–");
    }

    #[test]
    fn ticks_cover_the_maximum() {
        for max in [0.0, 1.0, 3.0, 7.0, 99.0, 1234.0, 2.0e6] {
            let (top, step) = ticks(max);
            assert!(
                top >= max && step >= 1.0 && top / step <= 6.0,
                "{max}: {top} {step}"
            );
        }
    }
}

//! Progress display for long runs in a terminal (`hot --until-caught-up`, replays,
//! `convert`, later `cold`): a bar with rate and ETA, drawn on stderr by indicatif.
//!
//! Drawn only when both stdout and stderr are terminals; otherwise every call is a no-op
//! and nothing is written, so scheduled jobs and pipes get clean output. Log lines
//! written while a bar is shown go through [`LogWriter`], which lifts the bar first.
//!
//! ```ignore
//! let p = Progress::new("cold", "rows");      // counter until a total is known
//! p.add_total(n);                             // now a bar with ETA
//! p.set_message("vault_daily");
//! p.inc(rows);
//! p.finish("aggregates built");
//! ```

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// The bar being shown, if any, for [`LogWriter`].
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn shown() -> std::sync::MutexGuard<'static, Option<ProgressBar>> {
    SHOWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether progress is drawn in this process: stdout and stderr are both terminals.
pub fn on_terminal() -> bool {
    std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// One progress display: a counter while the total is unknown, a bar with ETA once
/// [`Progress::add_total`] is called. Cheap to clone; clones show the same bar.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
    unit: &'static str,
}

impl Progress {
    /// A display labelled `label`, counting `unit`s (e.g. "messages", "files", "rows").
    /// Hidden unless [`on_terminal`].
    pub fn new(label: &'static str, unit: &'static str) -> Self {
        let target = if on_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self::with_target(label, unit, target)
    }

    /// A display that never draws.
    pub fn hidden() -> Self {
        Self::with_target("", "", ProgressDrawTarget::hidden())
    }

    fn with_target(label: &'static str, unit: &'static str, target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(None, target)
            .with_prefix(label)
            .with_style(counter_style(unit));
        if !bar.is_hidden() {
            // A ticker thread redraws the spinner and elapsed time between updates; only
            // when the bar is shown, so a hidden one starts nothing.
            bar.enable_steady_tick(Duration::from_millis(250));
            *shown() = Some(bar.clone());
        }
        Progress { bar, unit }
    }

    /// Whether anything is drawn.
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// `n` more units of work became known; the first call turns the counter into a bar.
    pub fn add_total(&self, n: u64) {
        if self.bar.length().is_none() {
            self.bar.set_length(0);
            self.bar.set_style(bar_style(self.unit));
        }
        self.bar.inc_length(n);
    }

    /// `n` units done.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// What is being worked on, shown after the bar.
    pub fn set_message(&self, msg: impl Into<Cow<'static, str>>) {
        self.bar.set_message(msg);
    }

    /// Stops the display, leaving its last state with `msg` on the terminal.
    pub fn finish(&self, msg: impl Into<Cow<'static, str>>) {
        self.bar.finish_with_message(msg);
        // One bar is shown at a time: it is this one. indicatif leaves the cursor on the
        // bar's line; what is printed next (the report on stdout) starts on a new one.
        if self.is_visible() {
            *shown() = None;
            eprintln!();
        }
    }

    /// Position and total.
    #[cfg(test)]
    fn position(&self) -> (u64, Option<u64>) {
        (self.bar.position(), self.bar.length())
    }
}

fn rate(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:.0}/s", state.per_sec());
}

fn counter_style(unit: &'static str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{spinner}} {{prefix}} {{human_pos}} {unit} ({{rate}}, {{elapsed}}) {{wide_msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_spinner())
    .with_key("rate", rate)
}

fn bar_style(unit: &'static str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{prefix}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{rate}}, eta {{eta}}) {{wide_msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key("rate", rate)
    .progress_chars("=> ")
}

/// The hot path's and `convert`'s hooks, shown on this display.
impl kvlake_hotpath::progress::ProgressSink for Progress {
    fn add_total(&self, units: u64) {
        Progress::add_total(self, units);
    }
    fn advance(&self, units: u64, _rows: u64) {
        self.inc(units);
    }
    fn working_on(&self, what: &str) {
        self.set_message(what.to_string());
    }
}

/// stderr for log lines that lifts a shown bar while the line is written, so logs and
/// the bar do not tear each other on a terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = shown().clone();
        match bar {
            Some(b) => b
                .suspend(|| std::io::stderr().write_all(buf))
                .map(|()| buf.len()),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_display_counts_but_draws_nothing() {
        let p = Progress::hidden();
        assert!(!p.is_visible());
        p.inc(3);
        assert_eq!(p.position(), (3, None));
        p.add_total(10);
        p.add_total(5);
        p.inc(2);
        assert_eq!(p.position(), (5, Some(15)));
        p.finish("done");
        assert!(shown().is_none());
    }
}

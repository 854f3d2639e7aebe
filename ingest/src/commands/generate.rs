//! `kvlake generate`: synthetic traffic on stdout.

use std::io::Write;

use anyhow::{Context, Result};
use kvlake_generator::{Format, Generator, GeneratorConfig, MessageKind};

use crate::cli::{GenerateArgs, GenerateFormat};

pub fn run(args: &GenerateArgs) -> Result<()> {
    let mut g = Generator::new(GeneratorConfig {
        seed: args.seed,
        bad_message_rate: args.bad_rate,
        ..GeneratorConfig::default()
    });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut buf = Vec::with_capacity(1 << 20);
    let mut left = args.records;
    while left > 0 {
        buf.clear();
        match (args.format, args.bad_rate > 0.0) {
            (GenerateFormat::Envelope, true) => {
                let m = g.next_message();
                let n = match m.kind {
                    MessageKind::Good { records } => records,
                    MessageKind::Bad { .. } => 1,
                };
                buf.extend_from_slice(&m.bytes);
                buf.push(b'\n');
                left = left.saturating_sub(n);
            }
            (format, _) => {
                let n = left.min(10_000);
                let format = if format == GenerateFormat::Lines {
                    Format::Lines
                } else {
                    Format::Envelope
                };
                g.write_records(n, format, &mut buf);
                left -= n;
            }
        }
        if let Err(e) = out.write_all(&buf) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e).context("writing to stdout");
        }
    }
    out.flush()
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(e)
            }
        })
        .context("writing to stdout")
}

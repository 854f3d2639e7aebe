//! `kvlake generate`: synthetic traffic on stdout.

use std::io::Write;

use anyhow::{Context, Result, anyhow, bail};
use kvlake_generator::{Attack, Format, Generator, GeneratorConfig, MessageKind};
use kvlake_schemas::time::{format_timestamp_micros, parse_timestamp_micros};

use crate::cli::{GenerateArgs, GenerateFormat};

/// `KIND@OFFSET[:PARAM]`, e.g. `mass-secret-retrieval@9d4h:300` or
/// `sensitive-operation@12d:KeyBackup`. PARAM is the count, factor or operation.
pub fn parse_attack(spec: &str) -> Result<Attack> {
    let (kind, rest) = spec
        .split_once('@')
        .ok_or_else(|| anyhow!("--attack `{spec}`: write KIND@OFFSET, e.g. denied-burst@9d4h"))?;
    let (offset, param) = match rest.split_once(':') {
        Some((o, p)) => (o, Some(p)),
        None => (rest, None),
    };
    let at = humantime::parse_duration(offset)
        .with_context(|| format!("--attack `{spec}`: `{offset}` is not a duration (e.g. 9d4h)"))?;
    let at_micros = i64::try_from(at.as_micros())
        .map_err(|_| anyhow!("--attack `{spec}`: offset too large"))?;
    let number = |default: usize| -> Result<usize> {
        param.map_or(Ok(default), |p| {
            p.parse()
                .with_context(|| format!("--attack `{spec}`: `{p}` is not a count"))
        })
    };
    Ok(match kind {
        "mass-secret-retrieval" => Attack::MassSecretRetrieval {
            at_micros,
            count: number(200)?,
        },
        "list-then-read" => Attack::ListThenRead {
            at_micros,
            gets: number(30)?,
        },
        "sensitive-operation" => Attack::SensitiveOperation {
            at_micros,
            operation: param.unwrap_or("SecretPurge").to_string(),
        },
        "new-identity-on-vault" => Attack::NewIdentityOnVault { at_micros },
        "volume-spike" => Attack::VolumeSpike {
            at_micros,
            factor: param.map_or(Ok(30.0), |p| {
                p.parse()
                    .with_context(|| format!("--attack `{spec}`: `{p}` is not a factor"))
            })?,
        },
        "denied-burst" => Attack::DeniedBurst {
            at_micros,
            count: number(40)?,
        },
        "new-ip-for-identity" => Attack::NewIpForIdentity { at_micros },
        other => bail!(
            "--attack `{spec}`: unknown kind `{other}` (mass-secret-retrieval, list-then-read, \
             sensitive-operation, new-identity-on-vault, volume-spike, denied-burst, new-ip-for-identity)"
        ),
    })
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    let attacks = args
        .attacks
        .iter()
        .map(|a| parse_attack(a))
        .collect::<Result<Vec<_>>>()?;
    let mut config = GeneratorConfig {
        seed: args.seed,
        bad_message_rate: args.bad_rate,
        events_per_second: args.events_per_second,
        vaults: args.vaults,
        identities: args.identities,
        attacks,
        shape: args.shape.into(),
        ..GeneratorConfig::default()
    };
    if let Some(start) = &args.start {
        config.start_time_micros = parse_timestamp_micros(start).ok_or_else(|| {
            anyhow!("--start `{start}` is not an RFC 3339 time (e.g. 2026-11-01T00:00:00Z)")
        })?;
    }
    if !(args.events_per_second.is_finite() && args.events_per_second > 0.0) {
        bail!("--events-per-second must be a positive number");
    }
    let mut g = Generator::new(config);
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
    if let Some(path) = &args.injected {
        let mut report = String::new();
        for a in g.injected() {
            let line = serde_json::json!({
                "attack": format!("{:?}", a.attack),
                "vault": a.vault,
                "object_id": a.object_id,
                "ip": a.ip,
                "start": format_timestamp_micros(a.start_micros),
                "end": format_timestamp_micros(a.end_micros),
            });
            report.push_str(&line.to_string());
            report.push('\n');
        }
        std::fs::write(path, report)
            .with_context(|| format!("cannot write --injected {}", path.display()))?;
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

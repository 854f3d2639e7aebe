//! What the process used, from /proc (Linux): peak resident memory and CPU seconds,
//! logged at the end of a run so operators and the benchmark harness see them.

/// Peak RSS in bytes and user+system CPU seconds, when /proc can tell.
pub fn usage() -> Option<(u64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (rest.get(11)?.parse().ok()?, rest.get(12)?.parse().ok()?);
    // Clock ticks are 100 per second on every Linux kvlake targets.
    Some((hwm_kb * 1024, (utime + stime) / 100.0))
}

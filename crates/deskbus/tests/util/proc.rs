//! What `/proc` says of a process. Only std: the benches include this file
//! too (`#[path]`).

use std::time::Duration;

/// CPU time (user and system) process `pid` (or `"self"`) has used so far;
/// panics when the process is gone, so that a reading never passes for an
/// idle process.
pub fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"));
    // After the command name, which is in parentheses: utime and stime are
    // the 12th and 13th fields, in clock ticks (USER_HZ, 100 on Linux).
    let (_, rest) = stat.rsplit_once(')').expect("a /proc stat line");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

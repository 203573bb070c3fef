//! CPU time of a process from `/proc/<pid>/stat` (`utime` + `stime`), so every report can show
//! how busy the generator itself was: a generator at its limit must never pass for a server
//! at its limit.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times. Linux reports them in `USER_HZ`, which
/// is 100 on every mainstream architecture (it is part of the kernel's user ABI, independent of
/// the kernel's internal `HZ`).
pub const USER_HZ: u64 = 100;

/// `utime + stime` in ticks, from the text of a `/proc/<pid>/stat` file.
///
/// The command name (field 2) is in parentheses and may contain spaces and parentheses, so the
/// fields are counted from the *last* `)`: after it come `state` (field 3) … `utime` (14) and
/// `stime` (15).
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // Fields 3..=13 precede utime.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time used so far by process `pid` (`None` when it cannot be read, e.g. it exited).
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    ticks_to_duration(parse_stat_ticks(&stat)?)
}

/// CPU time used so far by this process.
pub fn self_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    ticks_to_duration(parse_stat_ticks(&stat)?)
}

fn ticks_to_duration(ticks: u64) -> Option<Duration> {
    Some(Duration::from_millis(ticks.checked_mul(1_000)? / USER_HZ))
}

/// Logical CPUs available to this process (at least 1).
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// `cpu` as a percentage of `cores` cores over `wall` (0 when `wall` is zero).
pub fn share_percent(cpu: Duration, wall: Duration, cores: usize) -> f64 {
    let capacity = wall.as_secs_f64() * cores.max(1) as f64;
    if capacity <= 0.0 {
        0.0
    } else {
        100.0 * cpu.as_secs_f64() / capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_and_stime_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1234 0 5 0 \
                    250 70 0 0 20 0 8 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(320));
    }

    #[test]
    fn a_truncated_stat_line_gives_nothing() {
        assert_eq!(parse_stat_ticks("1 (x) S 1 2 3"), None);
        assert_eq!(parse_stat_ticks("no parenthesis"), None);
    }

    #[test]
    fn this_process_can_read_its_own_cpu_time() {
        // Burn a little CPU so the counter is likely above zero; only readability is asserted.
        let mut x = 0_u64;
        for i in 0..2_000_000_u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(self_cpu().is_some());
    }

    #[test]
    fn cpu_share_is_relative_to_all_cores() {
        let share = share_percent(Duration::from_secs(1), Duration::from_secs(2), 2);
        assert!((share - 25.0).abs() < 1e-9);
        assert_eq!(
            share_percent(Duration::from_secs(1), Duration::ZERO, 2),
            0.0
        );
    }
}

//! What the harness reads and does to a process by its id: signals, and resident memory from
//! `/proc` (the figure that shows a stalled dependency did not turn into unbounded buffering).

use nix::sys::signal::Signal;

use crate::error::FaultError;

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: Signal) -> Result<(), FaultError> {
    let raw = i32::try_from(pid).map_err(|_| FaultError::Signal {
        pid,
        signal: signal.as_str(),
        detail: "pid out of range".into(),
    })?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal).map_err(|e| {
        FaultError::Signal {
            pid,
            signal: signal.as_str(),
            detail: e.to_string(),
        }
    })
}

/// Resident set size of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`), if it is alive.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

/// `pid` and every process below it (a PostgreSQL postmaster and its backends): pausing only
/// the parent would leave open connections working.
pub fn with_descendants(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        out.extend(children(out[i]));
        i += 1;
    }
    out
}

/// The direct children of `pid`, from every thread's `children` list.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Sends `signal` to `pid` and every process below it.
pub fn signal_tree(pid: u32, sig: Signal) -> Result<(), FaultError> {
    for p in with_descendants(pid) {
        signal(p, sig)?;
    }
    Ok(())
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_in_kib_from_the_status_file() {
        let status = "Name:\tingress\nVmPeak:\t  99 kB\nVmRSS:\t   18432 kB\nThreads:\t5\n";
        assert_eq!(parse_vm_rss(status), Some(18_432));
        assert_eq!(parse_vm_rss("Name:\tzombie\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn a_child_process_is_found_below_its_parent() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let tree = with_descendants(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(tree.contains(&child.id()), "{tree:?}");
    }
}

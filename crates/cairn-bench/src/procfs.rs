//! Memory accounting for the server under test, read straight from `/proc`.
//!
//! A stock `mlflow server` is a tree of Python processes (the CLI, uvicorn or
//! gunicorn workers, a job runner and its huey consumers), so every figure is
//! summed over the whole tree, not just the process we spawned.

use std::collections::{HashMap, HashSet};
use std::fs;

use serde::Serialize;

/// One look at the server's process tree.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MemSnapshot {
    /// Sum of VmRSS over the tree. Double-counts pages shared between forked
    /// workers, which is why PSS is reported too.
    pub rss_kib: u64,
    /// Sum of Pss (proportional set size): shared pages split between sharers,
    /// so this is the honest "memory this server costs" figure.
    pub pss_kib: u64,
    /// Sum of VmHWM (each process's own peak RSS). An upper bound on the tree's
    /// peak, since the per-process peaks need not have happened at once.
    pub hwm_sum_kib: u64,
    pub processes: usize,
}

impl MemSnapshot {
    /// Field-wise maximum of two snapshots.
    pub fn max(&self, other: &MemSnapshot) -> MemSnapshot {
        MemSnapshot {
            rss_kib: self.rss_kib.max(other.rss_kib),
            pss_kib: self.pss_kib.max(other.pss_kib),
            hwm_sum_kib: self.hwm_sum_kib.max(other.hwm_sum_kib),
            processes: self.processes.max(other.processes),
        }
    }
}

/// `(ppid, pgrp, state)` of every live process, parsed from `/proc/<pid>/stat`.
fn process_table() -> HashMap<u32, (u32, i32, char)> {
    let mut table = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return table;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes vanish between readdir and read; skipping them is correct.
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `comm` may contain spaces and parentheses, so parse after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let pgrp = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        table.insert(pid, (ppid, pgrp, state));
    }
    table
}

/// The spawned process, everything in its process group, and all descendants
/// of either (a child that called setsid() leaves the group but not the tree).
pub fn tree_pids(root: u32, pgid: i32) -> Vec<u32> {
    let table = process_table();
    let mut members: HashSet<u32> = table
        .iter()
        .filter(|(pid, (_, pgrp, state))| (**pid == root || *pgrp == pgid) && *state != 'Z')
        .map(|(pid, _)| *pid)
        .collect();
    // Fixed-point walk down the ppid links; trees here are tiny.
    loop {
        let before = members.len();
        for (pid, (ppid, _, state)) in &table {
            if *state != 'Z' && members.contains(ppid) {
                members.insert(*pid);
            }
        }
        if members.len() == before {
            break;
        }
    }
    let mut pids: Vec<u32> = members.into_iter().collect();
    pids.sort_unstable();
    pids
}

/// Whether any non-zombie process is still in the group.
pub fn group_alive(pgid: i32) -> bool {
    process_table()
        .values()
        .any(|(_, pgrp, state)| *pgrp == pgid && *state != 'Z')
}

/// Reads a `Name:   1234 kB` line from a /proc status-like file.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l[name.len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub fn snapshot(root: u32, pgid: i32) -> MemSnapshot {
    let mut snap = MemSnapshot::default();
    for pid in tree_pids(root, pgid) {
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        snap.processes += 1;
        snap.rss_kib += kib_field(&status, "VmRSS:").unwrap_or(0);
        snap.hwm_sum_kib += kib_field(&status, "VmHWM:").unwrap_or(0);
        // smaps_rollup exists since Linux 4.14; without it PSS stays 0.
        if let Ok(rollup) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            snap.pss_kib += kib_field(&rollup, "Pss:").unwrap_or(0);
        }
    }
    snap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_measured() {
        let me = std::process::id();
        let snap = snapshot(me, -1);
        assert!(snap.processes >= 1);
        assert!(snap.rss_kib > 0);
    }

    #[test]
    fn parses_kib_fields() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(kib_field(text, "VmRSS:"), Some(1024));
        assert_eq!(kib_field(text, "VmHWM:"), Some(2048));
        assert_eq!(kib_field(text, "Pss:"), None);
    }
}

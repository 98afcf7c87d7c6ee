//! Spawning, health-polling, memory-sampling and stopping the server under test.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process_group, Pid, Signal};

use crate::procfs::{self, MemSnapshot};

/// How long the server gets to exit after SIGTERM before the group is SIGKILLed.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// A server process (group) we started. Dropping it without `stop()` SIGKILLs
/// the group, so an early `?` return or a panic never leaks a server.
pub struct Server {
    child: Child,
    pgid: i32,
    pub base_url: String,
    pub log_path: PathBuf,
    pub data_dir: PathBuf,
    /// Keeps the temp dir alive until the server is gone; `None` with --keep-data.
    _data_guard: Option<tempfile::TempDir>,
    stopped: bool,
}

/// Asks the kernel for a free loopback port. There is a small window in which
/// another process could take it before the server binds; that only makes
/// start-up fail loudly, never measure the wrong thing.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a probe socket")?;
    Ok(listener.local_addr()?.port())
}

impl Server {
    /// Spawns `cmd_template` (with `{port}` and `{data}` substituted) through
    /// `sh -c exec ...` in a new process group with cwd = a fresh temp dir.
    /// Returns once the process is spawned; call `wait_healthy` next.
    pub fn spawn(cmd_template: &str, keep_data: bool) -> Result<(Self, Instant)> {
        let port = free_port()?;
        let tmp = tempfile::Builder::new()
            .prefix("cairn-bench-")
            .tempdir()
            .context("creating the server's temp data dir")?;
        let data_dir = tmp.path().to_path_buf();
        let data_str = data_dir
            .to_str()
            .context("temp dir path is not UTF-8")?
            .to_string();
        let cmd = cmd_template
            .replace("{port}", &port.to_string())
            .replace("{data}", &data_str);
        let log_path = data_dir.join("server.log");
        let log = File::create(&log_path).context("creating server.log")?;
        let log_err = log.try_clone()?;

        let start = Instant::now();
        // `exec` makes the shell become the server, so the pid we hold is the
        // server's own; the shell still gives us quoting and env assignments.
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {cmd}"))
            .current_dir(&data_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawning server: {cmd}"))?;
        let pgid = i32::try_from(child.id()).context("pid out of range")?;
        let (guard, data_dir) = if keep_data {
            (None, tmp.keep())
        } else {
            (Some(tmp), data_dir)
        };
        eprintln!("[bench] spawned pid {pgid}: {cmd}");
        Ok((
            Server {
                child,
                pgid,
                base_url: format!("http://127.0.0.1:{port}"),
                log_path,
                data_dir,
                _data_guard: guard,
                stopped: false,
            },
            start,
        ))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// Polls `GET /health` every millisecond until it returns 200; returns the
    /// time since `start` (taken just before spawn).
    pub async fn wait_healthy(&mut self, start: Instant, timeout: Duration) -> Result<Duration> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5))
            .build()?;
        let url = format!("{}/health", self.base_url);
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.stopped = true;
                bail!(
                    "server exited with {status} before becoming healthy; log tail:\n{}",
                    log_tail(&self.log_path)
                );
            }
            if start.elapsed() > timeout {
                bail!(
                    "server not healthy after {timeout:?}; log tail:\n{}",
                    log_tail(&self.log_path)
                );
            }
            if let Ok(resp) = client.get(&url).send().await {
                if resp.status() == reqwest::StatusCode::OK {
                    return Ok(start.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn memory(&self) -> MemSnapshot {
        procfs::snapshot(self.pid(), self.pgid)
    }

    /// SIGTERM to the whole group, SIGKILL after `TERM_GRACE` if anything in
    /// it is still alive. Returns how long the shutdown took.
    pub fn stop(&mut self) -> Result<Duration> {
        let t = Instant::now();
        signal_group(self.pgid, Signal::TERM);
        let deadline = t + TERM_GRACE;
        loop {
            let leader_done = self.child.try_wait()?.is_some();
            if leader_done && !procfs::group_alive(self.pgid) {
                self.stopped = true;
                return Ok(t.elapsed());
            }
            if Instant::now() > deadline {
                eprintln!("[bench] server ignored SIGTERM for {TERM_GRACE:?}; sending SIGKILL");
                signal_group(self.pgid, Signal::KILL);
                self.child.wait()?;
                self.stopped = true;
                return Ok(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped {
            signal_group(self.pgid, Signal::KILL);
            let _ = self.child.wait();
        }
    }
}

fn signal_group(pgid: i32, sig: Signal) {
    // pgid <= 1 would mean "our own group" or "every process we may signal";
    // a spawned child can never have it, but refuse outright to be safe.
    if pgid <= 1 {
        return;
    }
    if let Some(pid) = Pid::from_raw(pgid) {
        // ESRCH (group already gone) is the expected outcome, not an error.
        let _ = kill_process_group(pid, sig);
    }
}

pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Background thread that keeps the largest tree memory seen, sampled every
/// 250 ms while the workloads run (a /proc walk costs a few ms at most). Each
/// field is its own maximum: peak PSS and peak RSS need not be one sample.
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<Mutex<MemSnapshot>>,
    handle: Option<JoinHandle<()>>,
}

impl PeakSampler {
    pub fn start(root: u32, pgid: i32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(Mutex::new(MemSnapshot::default()));
        let (stop2, peak2) = (stop.clone(), peak.clone());
        let handle = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let snap = procfs::snapshot(root, pgid);
                if let Ok(mut p) = peak2.lock() {
                    *p = p.max(&snap);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        PeakSampler {
            stop,
            peak,
            handle: Some(handle),
        }
    }

    pub fn finish(mut self) -> MemSnapshot {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak.lock().map(|p| *p).unwrap_or_default()
    }
}

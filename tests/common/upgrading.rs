//! A server process that can be upgraded with SIGHUP, and its successors: the binary in a
//! process group of its own, its stdout and stderr read line by line (every generation writes
//! to the same pipes).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use super::{Client, Response, wait_with_timeout};

/// How long any line the test waits for may take to come.
const LINE_WITHIN: Duration = Duration::from_secs(15);

/// A server process (and, after an upgrade, its successor) in a process group of its own.
pub struct Upgrading {
    /// The first process.
    pub old: Child,
    /// The process serving now (the last one handed over to).
    pub current: u32,
    pub addr: SocketAddr,
    pub stdout: Receiver<String>,
    pub stderr: Receiver<String>,
    mode: String,
}

impl Upgrading {
    pub fn start(binary: &Path, mode: &str, root: &Path, extra: &[&str]) -> Upgrading {
        Upgrading::start_with_env(binary, mode, root, extra, &[])
    }

    /// As [`Upgrading::start`], with these variables set in the server's environment.
    pub fn start_with_env(
        binary: &Path,
        mode: &str,
        root: &Path,
        extra: &[&str],
        env: &[(&str, &OsStr)],
    ) -> Upgrading {
        let mut command = Command::new(binary);
        // A service manager the tests run under is not the server's (see `notify.rs`).
        command
            .env_remove("NOTIFY_SOCKET")
            .envs(env.iter().copied());
        Upgrading::spawn(command, mode, root, extra)
    }

    /// As [`Upgrading::start`], as the first process of a PID namespace of its own (as in a
    /// container with no init), by `unshare`, which needs root (CAP_SYS_ADMIN). `old` is
    /// `unshare`, which exits with the status of that first process, and `current` the first
    /// process (its pid here, outside the namespace).
    pub fn start_as_first_process(binary: &Path, mode: &str, root: &Path) -> Upgrading {
        let mut command = Command::new("unshare");
        // --kill-child: the namespace ends with `unshare`, whatever the test does.
        command
            .env_remove("NOTIFY_SOCKET")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(binary);
        let mut server = Upgrading::spawn(command, mode, root, &[]);
        let unshare = server.old.id();
        let children = format!("/proc/{unshare}/task/{unshare}/children");
        let first =
            std::fs::read_to_string(&children).unwrap_or_else(|err| panic!("{children}: {err}"));
        server.current = first
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("unshare's children: {first:?}"));
        server
    }

    /// Runs `command`, the server's binary or a command that runs it, with the tests' usual
    /// arguments.
    fn spawn(mut command: Command, mode: &str, root: &Path, extra: &[&str]) -> Upgrading {
        let mut old = command
            .args(["--bind", "127.0.0.1:0", "--mode", mode, "--quiet", "--demo"])
            .args(["--cores", "2", "--no-pin", "--threads", "16"])
            .args(extra)
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: cleanup reaches the new process too, whoever its parent is.
            .process_group(0)
            .spawn()
            .expect("run reactor-httpd");
        let stdout = lines(old.stdout.take().unwrap());
        let stderr = lines(old.stderr.take().unwrap());
        let Ok(first) = stdout.recv_timeout(LINE_WITHIN) else {
            let said: Vec<String> = stderr.try_iter().collect();
            panic!("no listening line; stderr: {said:?}");
        };
        let addr = first
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("listening line {first:?}"));
        Upgrading {
            current: old.id(),
            old,
            addr,
            stdout,
            stderr,
            mode: mode.into(),
        }
    }

    pub fn sighup(&self) {
        // SAFETY: kill(2) on the server we started, or the one it handed over to (in our group).
        unsafe { libc::kill(self.current as i32, libc::SIGHUP) };
    }

    /// The next stderr line, which must contain `text`.
    pub fn stderr_line(&self, text: &str) -> String {
        let line = self
            .stderr
            .recv_timeout(LINE_WITHIN)
            .unwrap_or_else(|err| panic!("{}: no stderr line saying {text:?}: {err}", self.mode));
        assert!(line.contains(text), "stderr: {line:?}, expected {text:?}");
        line
    }

    /// SIGHUP, and wait until the old process has handed over; returns the new one's pid.
    pub fn upgrade(&mut self) -> u32 {
        self.sighup();
        self.handed_over()
    }

    pub fn handed_over(&mut self) -> u32 {
        let line = self.stderr_line("handed over to pid ");
        self.took_over(&line)
    }

    /// Every stderr line up to and including the first that contains `text`.
    pub fn stderr_until(&self, text: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.stderr.recv_timeout(LINE_WITHIN).unwrap_or_else(|err| {
                panic!(
                    "{}: no stderr line saying {text:?} after {lines:?}: {err}",
                    self.mode
                )
            });
            let found = line.contains(text);
            lines.push(line);
            if found {
                return lines;
            }
        }
    }

    /// The old process said `line` (`handed over to pid N ...`): the new one's listening line
    /// must follow on stdout. Returns its pid.
    pub fn took_over(&mut self, line: &str) -> u32 {
        let listening = self
            .stdout
            .recv_timeout(LINE_WITHIN)
            .expect("the new process's listening line");
        assert!(
            listening.contains(&self.addr.to_string()),
            "new process: {listening:?}"
        );
        self.current = line
            .split("pid ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("{line:?}"));
        self.current
    }

    /// The old process must exit 0, within the bound.
    pub fn old_exits_cleanly(&mut self) {
        let status = wait_with_timeout(&mut self.old, Duration::from_secs(20));
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "the old process's exit"
        );
    }

    pub fn get(&self, path: &str) -> Response {
        Client::connect(self.addr).get(path)
    }
}

impl Drop for Upgrading {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the group we made; SIGTERM first, so each process drains.
        unsafe { libc::kill(-(self.old.id() as i32), libc::SIGTERM) };
        if wait_with_timeout(&mut self.old, Duration::from_secs(10)).is_none() {
            // SAFETY: as above.
            unsafe { libc::kill(-(self.old.id() as i32), libc::SIGKILL) };
        }
    }
}

fn lines(from: impl Read + Send + 'static) -> Receiver<String> {
    let (send, receive) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { return };
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_reactor-httpd"))
}

/// Stops the new process (by pid: it is not our child once the old one is gone).
pub fn stop(pid: u32) {
    // SAFETY: kill(2) on the process the old one handed over to, in our process group.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
}

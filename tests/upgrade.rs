//! SIGHUP upgrades, black-box: the binary in its own process group, signalled like an operator
//! would, in every mode. The old process says on stderr when it has handed over (after the new
//! one said it serves), and that line is what each test waits for: never a sleep.
//!
//! What must hold: a request in flight at the upgrade (a slow download, pipelined requests, a
//! request head half sent) is answered whole by the old process; new connections are served by
//! the new one; the old exits 0; a new binary that fails leaves the old one serving; a second
//! SIGHUP during an upgrade is ignored with one line.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::upgrading::{Upgrading, binary, stop};
use common::{Client, TempDir, bounded, tempdir};

const MODES: [&str; 5] = ["reactor", "uring", "threaded", "blocking", "fork"];

fn root_with_file(name: &str, bytes: usize) -> (TempDir, Vec<u8>) {
    let root = tempdir(name);
    let body: Vec<u8> = (0..bytes).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(root.join("big.bin"), &body).unwrap();
    (root, body)
}

/// Each mode: served before, handed over, served after by the new process; the old exits 0.
#[test]
fn an_upgrade_serves_on_in_every_mode() {
    bounded(120, || {
        let root = tempdir("upgrade-basic");
        for mode in MODES.into_iter().filter(|mode| common::runnable_name(mode)) {
            let mut server = Upgrading::start(&binary(), mode, &root, &[]);
            assert_eq!(server.get("/hello").text(), "Hello, World!", "{mode}");
            let new = server.upgrade();
            assert_ne!(new, server.old.id());
            server.old_exits_cleanly();
            for _ in 0..3 {
                assert_eq!(server.get("/hello").text(), "Hello, World!", "{mode}");
            }
            stop(new);
        }
    });
}

/// `--bind` twice: the new process takes over the sockets of both addresses (it says the second
/// as the old one did) and serves on each.
#[test]
fn an_upgrade_keeps_every_address() {
    bounded(120, || {
        let root = tempdir("upgrade-addresses");
        for mode in MODES.into_iter().filter(|mode| common::runnable_name(mode)) {
            let mut server = Upgrading::start(&binary(), mode, &root, &["--bind", "127.0.0.2:0"]);
            let said = server.stderr_line("also listening on http://127.0.0.2:");
            server.sighup();
            let lines = server.stderr_until("handed over to pid ");
            assert_eq!(lines[..], [said.clone(), lines[1].clone()], "{mode}");
            let new = server.took_over(&lines[1]);
            server.old_exits_cleanly();
            let other = said.rsplit("http://").next().unwrap().parse().unwrap();
            for addr in [server.addr, other] {
                let text = Client::connect(addr).get("/hello").text();
                assert_eq!(text, "Hello, World!", "{mode} {addr}");
            }
            stop(new);
        }
    });
}

/// A download under way when the server upgrades completes byte for byte, from the old process,
/// which then closes the connection and exits.
#[test]
fn a_slow_download_in_flight_completes() {
    bounded(120, || {
        let (root, body) = root_with_file("upgrade-download", 4 << 20);
        for mode in MODES.into_iter().filter(|mode| common::runnable_name(mode)) {
            let mut server = Upgrading::start(&binary(), mode, &root, &[]);
            let mut slow = Client::connect_with_small_window(server.addr, 16 * 1024);
            slow.send(b"GET /big.bin HTTP/1.1\r\nHost: test\r\n\r\n");
            // The response has begun: the old process is sending it, blocked on our window.
            let mut first = [0; 1024];
            let n = slow.stream.read(&mut first).unwrap();
            assert!(n > 0);
            let new = server.upgrade();
            // New connections go to the new process meanwhile.
            assert_eq!(server.get("/hello").text(), "Hello, World!", "{mode}");
            let mut received = first[..n].to_vec();
            slow.stream.read_to_end(&mut received).unwrap();
            let head_end = common::find(&received, b"\r\n\r\n").expect("a head") + 4;
            assert!(received.starts_with(b"HTTP/1.1 200"), "{mode}");
            assert_eq!(received[head_end..].len(), body.len(), "{mode}");
            assert!(received[head_end..] == body[..], "{mode}: bytes differ");
            server.old_exits_cleanly();
            stop(new);
        }
    });
}

/// Pipelined requests already sent when the upgrade comes are all answered, in order, by the
/// old process; the last answer says `Connection: close`, and the connection ends.
#[test]
fn pipelined_requests_in_flight_are_all_answered() {
    bounded(120, || {
        let root = tempdir("upgrade-pipelined");
        for mode in MODES.into_iter().filter(|mode| common::runnable_name(mode)) {
            let mut server = Upgrading::start(&binary(), mode, &root, &[]);
            let mut client = Client::connect(server.addr);
            // The first keeps its handler busy across the upgrade.
            client.send(
                b"GET /sleep?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n\
                  GET /hello HTTP/1.1\r\nHost: t\r\n\r\n\
                  GET /hello?again HTTP/1.1\r\nHost: t\r\n\r\n",
            );
            let new = server.upgrade();
            assert_eq!(client.response().text(), "slept 300 ms", "{mode}");
            assert_eq!(client.response().text(), "Hello, World!", "{mode}");
            let last = client.response();
            assert_eq!(last.text(), "Hello, World!", "{mode}");
            // The loops hear of the handover while the first request is on its pool. A
            // blocking driver hears of it between calls into the connection, and the second and
            // third were answered in the same call as the first: the connection then ends as an
            // idle one does, after its grace.
            if mode == "reactor" || mode == "uring" {
                assert_eq!(last.header("Connection"), Some("close"), "{mode}");
            }
            client.expect_close();
            server.old_exits_cleanly();
            stop(new);
        }
    });
}

/// A client part way through a request head on a kept-alive connection finishes it after the
/// upgrade: the old process answers it, and then ends the connection.
#[test]
fn a_request_head_half_sent_is_answered_by_the_old_process() {
    bounded(120, || {
        let root = tempdir("upgrade-half-head");
        for mode in MODES.into_iter().filter(|mode| common::runnable_name(mode)) {
            let mut server = Upgrading::start(&binary(), mode, &root, &[]);
            let mut client = Client::connect(server.addr);
            // Answered: the connection is the old process's.
            assert_eq!(client.get("/hello").status, 200);
            client.send(b"GET /hello HTTP/1.1\r\nHo");
            let new = server.upgrade();
            client.send(b"st: t\r\n\r\n");
            let response = client.response();
            assert_eq!(response.text(), "Hello, World!", "{mode}");
            // With `Connection: close`, unless the rest came before this connection's loop
            // heard of the handover (the line the test waits for is the first loop's): then the
            // connection ends as an idle one, after its grace.
            client.expect_close();
            server.old_exits_cleanly();
            stop(new);
        }
    });
}

/// Writes `text` as an executable file at `path`, replacing what is there the way package
/// managers do (a new file renamed over the old: the running binary is not touched).
fn replace_executable(path: &Path, text: &[u8]) {
    replace_file(path, text, 0o755);
}

fn replace_file(path: &Path, text: &[u8], mode: u32) {
    let staged = path.with_extension("new");
    write_elsewhere(&staged, text);
    fs::set_permissions(&staged, fs::Permissions::from_mode(mode)).unwrap();
    fs::rename(&staged, path).unwrap();
}

/// Writes a file that is about to be executed from another process (`cat`), not this one: a
/// child forked by a test running in parallel inherits this process's descriptors until it
/// execs, and while it holds one open for writing, executing that file fails with "Text file
/// busy" (ETXTBSY). Seen once in CI; `cat` forks nothing, so its descriptor goes nowhere.
fn write_elsewhere(path: &Path, text: &[u8]) {
    let mut cat = Command::new("sh")
        .args(["-c", "cat > \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run sh");
    cat.stdin.take().unwrap().write_all(text).unwrap();
    assert!(cat.wait().unwrap().success(), "writing {path:?}");
}

/// `fs::copy`, for the same reason as [`write_elsewhere`]: the copy is written by `cp`.
fn copy_elsewhere(from: &Path, to: &Path) {
    let copied = Command::new("cp")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(copied.success(), "copying {from:?} to {to:?}");
}

/// The binary replaced on disk by one that fails: the old process says so in one line and
/// serves on. Replaced again by a working one (a script that runs the real binary): that is
/// what the next SIGHUP runs, so the path is resolved at start, not the old file's inode.
#[test]
fn a_broken_new_binary_leaves_the_old_one_serving() {
    bounded(120, || {
        let root = tempdir("upgrade-broken");
        let dir = tempdir("upgrade-broken-bin");
        let installed = dir.join("reactor-httpd");
        for mode in MODES.into_iter().filter(|mode| common::runnable_name(mode)) {
            copy_elsewhere(&binary(), &installed);
            let mut server = Upgrading::start(&installed, mode, &root, &[]);
            let mut kept = Client::connect(server.addr);
            assert_eq!(kept.get("/hello").status, 200);

            replace_executable(&installed, b"#!/bin/sh\necho 'broken build' >&2\nexit 3\n");
            server.sighup();
            assert_eq!(server.stderr_line("broken build"), "broken build");
            // How it ended, not a guess ("closed its readiness socket without a word" it said
            // when its status was not yet there to be read).
            let failed = server.stderr_line("upgrade failed: ");
            assert!(
                failed.contains("the new process ended (exit status: 3) before it was ready"),
                "{mode}: {failed:?}"
            );
            assert!(failed.ends_with("still serving"), "{failed:?}");
            // Not executable at all: exec itself fails.
            replace_file(&installed, b"not a program", 0o644);
            server.sighup();
            let failed = server.stderr_line("upgrade failed: cannot start");
            assert!(failed.ends_with("still serving"), "{failed:?}");
            assert_eq!(
                kept.get("/hello").status,
                200,
                "{mode}: the kept connection"
            );
            assert_eq!(server.get("/hello").status, 200, "{mode}: a new connection");

            let marker = dir.join("ran");
            let _ = fs::remove_file(&marker);
            let script = format!(
                "#!/bin/sh\ntouch {}\nexec {} \"$@\"\n",
                marker.display(),
                binary().display()
            );
            replace_executable(&installed, script.as_bytes());
            let new = server.upgrade();
            assert!(marker.exists(), "{mode}: the replaced file ran");
            assert_eq!(server.get("/hello").status, 200, "{mode}");
            drop(kept);
            server.old_exits_cleanly();
            stop(new);
        }
    });
}

/// A second SIGHUP while the new process is still starting is ignored, with one line. Exactly
/// one new process serves.
#[test]
fn a_second_sighup_is_ignored() {
    bounded(120, || {
        let root = tempdir("upgrade-double");
        let dir = tempdir("upgrade-double-bin");
        let installed = dir.join("reactor-httpd");
        let go = dir.join("go");
        for mode in MODES.into_iter().filter(|mode| common::runnable_name(mode)) {
            copy_elsewhere(&binary(), &installed);
            let mut server = Upgrading::start(&installed, mode, &root, &[]);
            // The next binary waits for our word before it starts: the upgrade stays under way.
            let _ = fs::remove_file(&go);
            let script = format!(
                "#!/bin/sh\nwhile [ ! -e {go} ]; do sleep 0.02; done\nexec {} \"$@\"\n",
                binary().display(),
                go = go.display()
            );
            replace_executable(&installed, script.as_bytes());
            // A connection the old process keeps until we end it.
            let mut kept = Client::connect(server.addr);
            assert_eq!(kept.get("/hello").status, 200);
            kept.send(b"GET /hello HTTP/1.1\r\n");
            server.sighup();
            server.sighup_until_ignored("an upgrade is already under way");
            fs::write(&go, b"").unwrap();
            let new = server.handed_over();
            kept.send(b"Host: t\r\n\r\n");
            assert_eq!(kept.response().status, 200);
            kept.expect_close();
            server.old_exits_cleanly();
            assert_eq!(server.get("/hello").status, 200);
            stop(new);
            // Both processes gone, stdout ends: two listening lines in all, no third process.
            let more: Vec<String> = server.stdout.iter().collect();
            assert!(more.is_empty(), "{mode}: more processes: {more:?}");
        }
    });
}

trait UntilIgnored {
    fn sighup_until_ignored(&self, why: &str);
}

impl UntilIgnored for Upgrading {
    /// Signals are not queued: a SIGHUP sent while the first is still pending merges with it.
    /// Sends more until one is reported ignored (each is, once the first has started).
    fn sighup_until_ignored(&self, why: &str) {
        for _ in 0..200 {
            self.sighup();
            if let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(50)) {
                assert!(line.contains(&format!("SIGHUP ignored: {why}")), "{line:?}");
                // Any further ones said the same; their lines are not waited for.
                while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
                    assert!(line.contains(&format!("SIGHUP ignored: {why}")), "{line:?}");
                }
                return;
            }
        }
        panic!("no SIGHUP was reported ignored");
    }
}

/// Releases switched by a link (`current -> v1`, then `current -> v2`): the upgrade runs the
/// binary the path names now, through the link, not the file the old process was loaded from.
#[test]
fn an_upgrade_follows_a_switched_release_link() {
    bounded(60, || {
        let root = tempdir("upgrade-link");
        let dir = tempdir("upgrade-link-releases");
        let (v1, v2) = (dir.join("v1"), dir.join("v2"));
        fs::create_dir_all(&v1).unwrap();
        fs::create_dir_all(&v2).unwrap();
        copy_elsewhere(&binary(), &v1.join("reactor-httpd"));
        let marker = dir.join("v2-ran");
        let script = format!(
            "#!/bin/sh\ntouch {}\nexec {} \"$@\"\n",
            marker.display(),
            binary().display()
        );
        replace_executable(&v2.join("reactor-httpd"), script.as_bytes());
        let current = dir.join("current");
        std::os::unix::fs::symlink(&v1, &current).unwrap();
        let mut server = Upgrading::start(&current.join("reactor-httpd"), "reactor", &root, &[]);
        // Switch the release as deploy tools do: a new link renamed over the old one.
        let next = dir.join("current.next");
        std::os::unix::fs::symlink(&v2, &next).unwrap();
        fs::rename(&next, &current).unwrap();
        let new = server.upgrade();
        assert!(marker.exists(), "the upgrade ran v1 again");
        assert_eq!(server.get("/hello").status, 200);
        server.old_exits_cleanly();
        stop(new);
    });
}

/// Under systemd (`Type=notify`, which passes `NOTIFY_SOCKET`), each process tells the service
/// manager what it must know for the service to outlive its first process: the first says it
/// serves; each upgrade says it began (`RELOADING=1`), then names the new main process before
/// the old one drains and exits (`MAINPID=`), or says it failed and the old one serves on; and
/// the new process is not the old one's child (the service manager adopts it). The service
/// manager here is a datagram socket the test reads, in every mode; `docs/deploy/under-systemd.sh`
/// does the same under a real systemd.
#[test]
fn the_service_manager_is_told_each_new_main_pid() {
    bounded(120, || {
        let root = tempdir("upgrade-notify");
        let dir = tempdir("upgrade-notify-bin");
        let installed = dir.join("reactor-httpd");
        let socket_path = dir.join("notify");
        for mode in MODES.into_iter().filter(|mode| common::runnable_name(mode)) {
            let _ = fs::remove_file(&socket_path);
            let manager = UnixDatagram::bind(&socket_path).unwrap();
            manager
                .set_read_timeout(Some(Duration::from_secs(15)))
                .unwrap();
            let told = || {
                let mut buf = [0; 512];
                let len = manager
                    .recv(&mut buf)
                    .unwrap_or_else(|err| panic!("{mode}: no notification: {err}"));
                String::from_utf8(buf[..len].to_vec()).unwrap()
            };
            copy_elsewhere(&binary(), &installed);
            let env = [("NOTIFY_SOCKET", socket_path.as_os_str())];
            let mut server = Upgrading::start_with_env(&installed, mode, &root, &[], &env);
            assert_eq!(told(), "READY=1", "{mode}");

            let new = server.upgrade();
            let reloading = told();
            let usec = reloading
                .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
                .and_then(|usec| usec.parse::<u64>().ok());
            assert!(usec.is_some_and(|usec| usec > 0), "{mode}: {reloading:?}");
            assert_eq!(told(), format!("MAINPID={new}\nREADY=1\nSTATUS="), "{mode}");
            // Not the old process's child, so that the service manager is its parent once
            // the go-between ended (a main process it did not fork is one it cannot watch).
            let parent = parent_of(new);
            assert_ne!(parent, server.old.id(), "{mode}: the new process's parent");
            server.old_exits_cleanly();
            assert_eq!(server.get("/hello").status, 200, "{mode}");

            // The new process is the main one now: it says its own upgrade's failure.
            replace_executable(&installed, b"#!/bin/sh\nexit 3\n");
            server.sighup();
            server.stderr_line("upgrade failed: ");
            assert!(told().starts_with("RELOADING=1\n"), "{mode}");
            assert_eq!(
                told(),
                "READY=1\nSTATUS=upgrade failed: the new process ended before it was ready \
                 (how, its parent the service manager knows); still serving",
                "{mode}"
            );
            assert_eq!(server.get("/hello").status, 200, "{mode}");
            stop(new);
            // Nothing else was said: not by the old process as it drained, nor by the new one
            // at its start (its predecessor spoke for it), nor at the stop.
            manager.set_nonblocking(true).unwrap();
            let more: Vec<String> = server.stdout.iter().collect();
            assert!(more.is_empty(), "{mode}: more processes: {more:?}");
            let mut buf = [0; 512];
            let after = manager.recv(&mut buf).map(|len| buf[..len].to_vec());
            assert!(
                after.is_err(),
                "{mode}: {:?}",
                after.map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            );
        }
    });
}

/// The parent pid of process `pid`, from /proc.
fn parent_of(pid: u32) -> u32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command's name in parentheses: the state, then the parent's pid.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(1).unwrap().parse().unwrap()
}

/// A `NOTIFY_SOCKET` nobody listens on: said once on stderr (systemd would time the start out,
/// and the operator should know why), and the server serves and upgrades all the same.
#[test]
fn a_service_manager_that_cannot_be_told_is_said_once() {
    bounded(60, || {
        let root = tempdir("upgrade-notify-nobody");
        let nobody = root.join("nobody");
        let env = [("NOTIFY_SOCKET", nobody.as_os_str())];
        let mut server = Upgrading::start_with_env(&binary(), "reactor", &root, &[], &env);
        let said = server.stderr_line("cannot notify the service manager at NOTIFY_SOCKET=");
        assert!(said.contains(nobody.to_str().unwrap()), "{said:?}");
        assert_eq!(server.get("/hello").status, 200);
        // The old process's next messages (reloading, the new main pid) fail too, unsaid.
        let new = server.upgrade();
        server.old_exits_cleanly();
        assert_eq!(server.get("/hello").status, 200);
        stop(new);
        let more: Vec<String> = server.stderr.iter().collect();
        assert!(more.is_empty(), "{more:?}");
    });
}

/// As the first process of its PID namespace (a container's, with no init before it; here by
/// `unshare --pid`), whose exit ends every other process in the namespace: after its upgrade
/// the old process stays, as the keeper of the new one, passes signals on to the process
/// serving (from the handover on, while it drains too), and ends with it. Through three
/// upgrades, each signalled to the first process (the second while it drains, the third once it
/// keeps), requests sent before them are answered, a client that keeps connecting meets no
/// failure, and a stop signalled to the first process ends the namespace with status 0 (SIGTERM,
/// as `docker stop` sends it, or in every other mode SIGQUIT, as it sends it for an image that
/// says `STOPSIGNAL SIGQUIT`, as nginx's does). Before any upgrade, as init must, it reaps an
/// orphan it inherits. Needs root.
#[test]
fn as_the_first_process_of_a_namespace_an_upgrade_keeps_it() {
    bounded(240, || {
        let root = tempdir("upgrade-first-process");
        let modes = MODES.into_iter().filter(|mode| common::runnable_name(mode));
        for (index, mode) in modes.enumerate() {
            let mut server = Upgrading::start_as_first_process(&binary(), mode, &root);
            let first = server.current;
            an_orphan_is_reaped_by(first, mode);
            let addr = server.addr;
            let done = Arc::new(AtomicBool::new(false));
            let steady = {
                let done = done.clone();
                std::thread::spawn(move || {
                    let (mut answered, mut failed) = (0, 0);
                    while !done.load(Ordering::Relaxed) {
                        match hello_answered(addr) {
                            true => answered += 1,
                            false => failed += 1,
                        }
                    }
                    (answered, failed)
                })
            };
            // Signals go to the first process, as a container's runtime sends them; so does
            // `sighup`, with `current` set back to it after each handover.
            // Returns what was said up to the handover.
            let upgrade = |server: &mut Upgrading| {
                server.sighup();
                let said = server.stderr_until("handed over to pid ");
                server.took_over(said.last().unwrap());
                server.current = first;
                said
            };
            // The first upgrade, with a request that keeps the first process draining.
            let mut slow = Client::connect(addr);
            slow.send(b"GET /sleep?ms=2000 HTTP/1.1\r\nHost: t\r\n\r\n");
            upgrade(&mut server);
            // Another SIGHUP while it drains reaches the process serving, which upgrades.
            let said = upgrade(&mut server);
            // Once drained, the first process stays, under a new image: said after that second
            // handover, or before it when the drain ended first (the request's 2 s can pass
            // while two processes start, on a machine busy enough).
            let stays = "PID 1 stays, as the keeper of pid ";
            if !said.iter().any(|line| line.contains(stays)) {
                server.stderr_until(stays);
            }
            assert_eq!(slow.response().text(), "slept 2000 ms", "{mode}");
            // And a SIGHUP to the keeper upgrades the process serving.
            let mut client = Client::connect(addr);
            client.send(b"GET /sleep?ms=500 HTTP/1.1\r\nHost: t\r\n\r\n");
            upgrade(&mut server);
            assert_eq!(client.response().text(), "slept 500 ms", "{mode}");
            done.store(true, Ordering::Relaxed);
            let (answered, failed) = steady.join().unwrap();
            assert!(
                answered > 0 && failed == 0,
                "{mode}: {answered} answered, {failed} failed"
            );
            assert_eq!(server.get("/hello").status, 200, "{mode}");
            let stop = [libc::SIGTERM, libc::SIGQUIT][index % 2];
            // SAFETY: kill(2) on the first process of the namespace we made.
            unsafe { libc::kill(first as i32, stop) };
            let status = common::wait_with_timeout(&mut server.old, Duration::from_secs(20));
            assert_eq!(
                status.and_then(|s| s.code()),
                Some(0),
                "{mode}: the namespace's end"
            );
        }
    });
}

/// One `GET /hello` on a connection of its own: whether it was answered whole.
fn hello_answered(addr: std::net::SocketAddr) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let mut got = Vec::new();
    stream.write_all(request).is_ok()
        && stream.read_to_end(&mut got).is_ok()
        && got.starts_with(b"HTTP/1.1 200")
        && got.ends_with(b"Hello, World!")
}

/// A process of `first`'s namespace whose parent exits first (as a `docker exec`'s background
/// job does) is inherited by `first`, which must reap it when it ends, or it stays a zombie.
fn an_orphan_is_reaped_by(first: u32, mode: &str) {
    // `head` waits on our pipe (made its input explicitly: a shell gives a background job
    // /dev/null otherwise), and outlives the shell that started it, so `first` inherits it.
    let mut nsenter = Command::new("nsenter")
        .args(["-t", &first.to_string(), "-p", "-m", "sh", "-c"])
        .arg("exec 3<&0; head -c 1 <&3 >/dev/null 3<&- & exit 0")
        .stdin(Stdio::piped())
        .spawn()
        .expect("nsenter (util-linux)");
    let pipe = nsenter.stdin.take().unwrap();
    let status = common::wait_with_timeout(&mut nsenter, Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{mode}: nsenter");
    let orphans: Vec<u32> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| {
            // Read once each: any process may end meanwhile.
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let parent = stat
                .rfind(") ")
                .and_then(|end| stat[end + 2..].split(' ').nth(1)?.parse::<u32>().ok());
            stat.contains("(head)") && parent == Some(first)
        })
        .collect();
    assert_eq!(orphans.len(), 1, "{mode}: the orphan, a child of {first}");
    drop(pipe); // it reads the end of input and exits
    let gone = common::eventually(Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{}", orphans[0])).exists()
    });
    assert!(gone, "{mode}: the orphan was not reaped (a zombie)");
}

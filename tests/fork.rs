//! What only the fork mode has: children, and a parent that must reap them.

mod common;

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proc::open_fds;
use common::{
    Client, TestServer, bounded, budget_comes_back, budget_config, buffered, config, echo_upload,
    eventually,
};
use reactor_httpd::config::Mode;
use reactor_httpd::server::Server;

/// The pids of a process's children, with their state letter (`Z` for a zombie).
fn children(pid: u32) -> Vec<(u32, char)> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .filter_map(|child: u32| Some((child, state(child)?)))
        .collect()
}

#[test]
fn two_thousand_connections_leave_no_zombies_and_no_descriptors() {
    bounded(120, || {
        let server = TestServer::start(config(Mode::Fork));
        let pid = server.pid().unwrap();
        let mut first = server.connect();
        assert_eq!(first.get("/hello").status, 200);
        drop(first);
        assert!(eventually(Duration::from_secs(5), || children(pid).is_empty()));
        let fds = open_fds(pid);
        for i in 0..2000 {
            let mut client = server.connect();
            let response =
                client.request(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            assert_eq!(response.status, 200, "connection {i}");
            client.expect_close();
        }
        // Every child exits once its client has gone; the parent reaps each at SIGCHLD.
        assert!(
            eventually(Duration::from_secs(10), || children(pid).is_empty()),
            "children left: {:?}",
            children(pid)
        );
        assert_eq!(open_fds(pid), fds, "the parent leaked descriptors");
    });
}

#[test]
fn zombies_never_pile_up_under_load() {
    bounded(60, || {
        let server = TestServer::start(config(Mode::Fork));
        let pid = server.pid().unwrap();
        let mut most_zombies = 0;
        for _ in 0..20 {
            let clients: Vec<_> = (0..20).map(|_| server.connect()).collect();
            for mut client in clients {
                assert_eq!(client.get("/hello").status, 200);
            }
            let zombies = children(pid)
                .iter()
                .filter(|(_, state)| *state == 'Z')
                .count();
            most_zombies = most_zombies.max(zombies);
        }
        // A child exits between SIGCHLD and the reap: a few at a time, never a pile.
        assert!(most_zombies < 20, "{most_zombies} zombies at once");
        assert!(eventually(Duration::from_secs(10), || children(pid).is_empty()));
    });
}

/// Children that exit while the parent is busy forking others must be reaped even when no
/// later exit or connection wakes the parent: their SIGCHLD arrives outside the parent's wait,
/// so it interrupts nothing, and only a wake-up that stays until the wait sees it (the self-pipe)
/// gets them reaped.
#[test]
fn children_that_exit_while_the_parent_forks_are_reaped() {
    bounded(60, || {
        let server = TestServer::start(config(Mode::Fork));
        let pid = server.pid().unwrap();
        // A stopped parent accepts nothing: the connections queue in its backlog, and when it
        // continues it takes them all in one stretch of forks.
        let stopped = Stopped::new(pid);
        let closing: Vec<_> = (0..40)
            .map(|_| {
                let mut client = server.connect();
                client.send(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                client
            })
            .collect();
        // Forked last, these children wait for a request that does not come (until the 10 s
        // header timeout): while the parent forks them the others answer and exit, and none
        // exits afterwards to wake it.
        let holders: Vec<_> = (0..20).map(|_| server.connect()).collect();
        drop(stopped);
        for mut client in closing {
            assert_eq!(client.response().status, 200);
            client.expect_close();
        }
        let settled = || {
            let children = children(pid);
            children.len() == holders.len() && children.iter().all(|(_, state)| *state != 'Z')
        };
        assert!(
            eventually(Duration::from_secs(3), settled),
            "expected {} live children and no zombies: {:?}",
            holders.len(),
            children(pid)
        );
        drop(holders);
        assert!(eventually(Duration::from_secs(5), || children(pid).is_empty()));
    });
}

/// A process held stopped (SIGSTOP) until this is dropped (SIGCONT), even by a failing test.
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        send_signal(pid, libc::SIGSTOP);
        let stopped = Stopped(pid);
        assert!(eventually(Duration::from_secs(5), || state(pid) == Some('T')));
        stopped
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        send_signal(self.0, libc::SIGCONT);
    }
}

fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill has no memory effects; the pid is the server this test started.
    unsafe { libc::kill(pid as i32, signal) };
}

/// A process's state letter (`T` when stopped).
fn state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// SIGTERM to the parent alone: it stops accepting at once and passes the stop on to its
/// children, as in every other mode a stop reaches every connection. A child with a response in
/// flight finishes it; a child holding an idle keep-alive connection closes it at once, not when
/// its keep-alive timeout (30 s here) runs out; and the parent exits 0 within 5 s. (Before stop
/// 33 the parent signalled no child: the idle one held it for the whole drain time, and then
/// outlived it.)
#[test]
fn shutdown_waits_for_children() {
    bounded(30, || {
        let mut cfg = config(Mode::Fork);
        cfg.limits.keep_alive_timeout = Duration::from_secs(30);
        let mut server = TestServer::start(cfg);
        let mut idle = server.connect();
        assert_eq!(idle.get("/hello").status, 200);
        let mut busy = server.connect();
        busy.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        );
        assert_eq!(busy.response().status, 100);
        let start = Instant::now();
        server.trigger_shutdown();
        assert!(
            eventually(Duration::from_secs(3), || std::net::TcpStream::connect(
                server.addr
            )
            .is_err()),
            "still accepting"
        );
        let idle_closed = idle.expect_close();
        assert!(
            idle_closed < Duration::from_secs(2),
            "idle for {idle_closed:?}"
        );
        busy.send(b"done");
        assert_eq!(busy.response().text(), "done");
        drop(busy);
        server.stop();
        assert!(start.elapsed() < Duration::from_secs(5));
    });
}

/// A child still serving when the drain time is up (a 32 MiB file to a client that reads
/// nothing) is ended by the parent, as every other mode ends its connections then: the parent
/// exits 0 within 5 s of SIGTERM, no child of it is left, and the client's connection is closed
/// before the whole file came. (Before stop 46 the parent left, and the child went on serving.)
#[test]
fn children_still_serving_when_the_drain_time_is_up_are_ended() {
    bounded(30, || {
        let root = common::tempdir("fork-drain-end");
        let file = vec![7u8; 32 << 20];
        fs::write(root.join("big.bin"), &file).unwrap();
        let mut cfg = config(Mode::Fork);
        cfg.root = root.to_path_buf();
        let mut server = TestServer::start(cfg);
        let pid = server.pid().unwrap();
        let mut stalled = Client::connect_with_small_window(server.addr, 4096);
        stalled.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(eventually(Duration::from_secs(5), || children(pid).len() == 1));
        let (child, _) = children(pid)[0];
        let took = server.stop();
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(state(child), None, "child {child} outlived the parent");
        let received = stalled.read_to_end();
        assert!(received.len() < file.len(), "the whole file came");
    });
}

/// A child killed while it holds a body (out of memory, or by an operator) takes none of
/// `--max-buffer-bytes` with it. The budget's counts are in memory the parent and every child
/// share (until stop 71 each child had a budget of its own; `tests/hostile.rs` checks the
/// sharing in fork mode too), so what a child held would stay counted, and the budget shrink for
/// good: each child also counts its part in a slot of its own, which the parent takes back as it
/// reaps it. Here one child holds most of a 2 MB body under a 2.5 MB budget, and is killed; the
/// gauge returns to 0, and the next 2 MB body is echoed.
#[test]
fn a_child_killed_holding_a_body_gives_its_part_of_the_budget_back() {
    bounded(60, || {
        const BODY: usize = 2_000_000;
        let server = TestServer::start(budget_config(Mode::Fork, BODY, 2_500_000));
        let pid = server.pid().unwrap();
        let (head, body) = echo_upload(BODY);
        let mut holder = server.connect();
        holder.send(head.as_bytes());
        holder.send(&body[..BODY - 1000]);
        assert!(
            eventually(Duration::from_secs(10), || buffered(&server) > 1_900_000),
            "the body is not held: {}",
            buffered(&server)
        );
        // Once the scrapes' children are gone, the holder's is left.
        assert!(eventually(Duration::from_secs(10), || children(pid).len() == 1));
        let (child, _) = children(pid)[0];
        send_signal(child, libc::SIGKILL);
        holder.expect_close();
        budget_comes_back(&server, &head, &body, "the holder was killed");
    });
}

/// The parent must be single-threaded to fork safely; a test process is not.
#[test]
fn refuses_to_fork_from_a_threaded_process() {
    let cfg = config(Mode::Fork);
    let handler = reactor_httpd::app::build(&cfg).unwrap();
    let server = Server::bind(&cfg, Arc::clone(&handler)).unwrap();
    assert!(
        server
            .listening_line()
            .ends_with("(fork, 1 process per connection)")
    );
    let err = server.run().unwrap_err();
    assert!(err.to_string().contains("single-threaded"), "{err}");
}

/// How many processes (threads included) run as `uid`: what RLIMIT_NPROC counts.
fn tasks_of(uid: u32) -> usize {
    let owner = format!("Uid:\t{uid}\t");
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter(|status| status.lines().any(|line| line.starts_with(&owner)))
        .map(|status| {
            let threads = status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"));
            threads.and_then(|n| n.trim().parse().ok()).unwrap_or(1)
        })
        .sum()
}

/// Out of processes: a connection the parent cannot fork a child for gets 503, as one past
/// `--max-connections` does, instead of being closed unanswered; and once a child has exited
/// the server serves again. The server runs as `nobody` with RLIMIT_NPROC leaving room for two
/// children (root is exempt from the limit, so the test needs root to switch user).
#[test]
fn a_connection_no_child_can_be_made_for_gets_503() {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    bounded(60, || {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root, to run the server as nobody under a process limit");
            return;
        }
        const NOBODY: u32 = 65534;
        // The server and two children, beside whatever else runs as nobody.
        let limit = (tasks_of(NOBODY) + 3) as libc::rlim_t;
        let mut server = TestServer::subprocess(&config(Mode::Fork), |command| {
            command.stderr(Stdio::piped());
            // SAFETY: between fork and exec only plain system calls run, on values owned here.
            unsafe {
                command.pre_exec(move || {
                    let nproc = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NPROC, &nproc) != 0
                        || libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(NOBODY) != 0
                        || libc::setuid(NOBODY) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        });
        let mut first = server.connect();
        let mut second = server.connect();
        assert_eq!(first.get("/hello").status, 200);
        assert_eq!(second.get("/hello").status, 200);
        // Both children serve on; a third cannot be made.
        let mut third = server.connect();
        assert_eq!(third.get("/hello").status, 503);
        third.expect_close();
        // A child exits with its client; then connections are served again (the parent waits
        // a moment before accepting after a failed fork).
        drop(first);
        let served = eventually(Duration::from_secs(5), || {
            server.connect().get("/hello").status == 200
        });
        assert!(served, "no connection was served after a child exited");
        assert_eq!(second.get("/hello").status, 200);
        drop(second);
        let mut stderr = server.child().unwrap().stderr.take().unwrap();
        server.stop();
        let mut log = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut log).unwrap();
        assert!(log.contains("fork: "), "stderr: {log:?}");
    });
}

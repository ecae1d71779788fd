//! `docs/deploy/haproxy.cfg`, run for real: HAProxy (Debian's `haproxy` package; `.ci/run`
//! installs it, and without it this test fails, saying so) in front of two reactor-httpd
//! instances, under a steady load through HAProxy, while one instance is upgraded with SIGHUP
//! three times. Not one request may fail.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::upgrading::{Upgrading, binary};
use common::{Client, bounded, tempdir, wait_with_timeout};

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// HAProxy with the example configuration, once its frontend answers through a backend.
fn haproxy(frontend: SocketAddr, a: SocketAddr, b: SocketAddr) -> Haproxy {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy/haproxy.cfg");
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&config)
        .env("FRONTEND", frontend.to_string())
        .env("BACKEND_A", a.to_string())
        .env("BACKEND_B", b.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("haproxy is needed (apt-get install haproxy; .ci/run does): {err}")
        });
    let haproxy = Haproxy(child);
    // Starting takes a moment: try until the frontend answers (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect(frontend).is_ok()
            && Client::connect(frontend).get("/hello").status == 200
        {
            return haproxy;
        }
        assert!(Instant::now() < deadline, "haproxy did not start");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_instance_upgraded_behind_haproxy_loses_nothing() {
    bounded(90, || {
        let root = tempdir("haproxy");
        let mut a = Upgrading::start(&binary(), "reactor", &root, &[]);
        let b = Upgrading::start(&binary(), "reactor", &root, &[]);
        let frontend = free_addr();
        let _haproxy = haproxy(frontend, a.addr, b.addr);
        let seconds = 4;
        let load = thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_reactor-bench"))
                .arg(format!("http://{frontend}/hello"))
                .args(["--connections", "20", "--fresh", "5", "--rate", "2000"])
                .args([
                    "--duration",
                    &seconds.to_string(),
                    "--timeout",
                    "2",
                    "--json",
                ])
                .output()
                .expect("run reactor-bench")
        });
        // Three upgrades spread over the run (the gaps space them out; each waits for its own
        // handover line).
        for _ in 0..3 {
            thread::sleep(Duration::from_millis(800));
            a.upgrade();
        }
        let output = load.join().unwrap();
        let json = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "reactor-bench: {json}");
        let field = |name: &str| -> u64 {
            let at = json.find(&format!("\"{name}\":")).expect(name) + name.len() + 3;
            json[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        for kind in ["connect", "read", "status", "timeout"] {
            assert_eq!(field(kind), 0, "{kind} errors: {json}");
        }
        // 2,000 a second for 4 s; a handful may fall outside the window's edges.
        assert!(field("requests") >= 7_900, "{json}");
        // The first process has handed over and gone, cleanly.
        let status = wait_with_timeout(&mut a.old, Duration::from_secs(20));
        assert_eq!(status.and_then(|s| s.code()), Some(0));
    });
}

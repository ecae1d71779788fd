//! `benches/response-rules.py` in every mode: the origin-server rules of RFC 9110-9112 that the
//! study "Who's Breaking the Rules?" (CISPA, ASIACCS 2024) tests, probed over raw sockets (what
//! must be refused, and what every response must carry, over files, directories, a redirect,
//! a 404 and the demo routes, with ranges, conditionals and `Accept-Encoding`). Needs python3.

mod common;

use std::process::Command;

use common::{bounded, modes};

#[test]
fn the_response_rules_hold_in_every_mode() {
    bounded(120, || {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/response-rules.py");
        std::thread::scope(|scope| {
            let runs: Vec<_> = modes()
                .map(|mode| {
                    scope.spawn(move || {
                        let output = Command::new("python3")
                            .arg(script)
                            .arg(mode.name())
                            .env("BIN", env!("CARGO_BIN_EXE_reactor-httpd"))
                            .output()
                            .unwrap_or_else(|err| panic!("python3 is needed: {err}"));
                        (mode, output)
                    })
                })
                .collect();
            for run in runs {
                let (mode, output) = run.join().unwrap();
                let stdout = String::from_utf8_lossy(&output.stdout);
                assert!(
                    output.status.success(),
                    "{}: {stdout}{}",
                    mode.name(),
                    String::from_utf8_lossy(&output.stderr)
                );
                assert!(stdout.contains("0 rules broken"), "{stdout}");
            }
        });
    });
}

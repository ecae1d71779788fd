//! `benches/http11probe.py` in every mode: the cases of Http11Probe, a third-party list of
//! probes of HTTP/1.1 servers (github.com/MDA2AV/Http11Probe: RFC 9110-9112 compliance,
//! request smuggling, malformed input, header-name normalization), each judged as its checks
//! judge it, from the first response and whether the server closed the connection within the
//! probe's window (150 ms). Every scored probe must pass (or warn, where the RFCs leave a
//! choice), but the one choice docs/conformance.md states. Needs python3.

mod common;

use std::process::Command;

use common::{bounded, modes};

#[test]
fn http11probe_passes_in_every_mode() {
    bounded(120, || {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/http11probe.py");
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
                assert!(
                    stdout.contains("0 scored probes failed besides the stated choice"),
                    "{stdout}"
                );
            }
        });
    });
}

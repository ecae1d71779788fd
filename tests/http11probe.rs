//! `benches/http11probe.py` in every mode: the cases of Http11Probe, a third-party list of
//! probes of HTTP/1.1 servers (github.com/MDA2AV/Http11Probe: RFC 9110-9112 compliance,
//! request smuggling, malformed input, header-name normalization), each judged as its checks
//! judge it, from the first response and whether the server closed the connection within the
//! probe's window (150 ms), over plain TCP and over TLS. Every scored probe must pass (or warn,
//! where the RFCs leave a choice), but the one choice docs/conformance.md states. Needs python3.

mod common;

const VERDICT: &str = "0 scored probes failed besides the stated choice";

#[test]
fn http11probe_passes_in_every_mode() {
    common::script_passes_in_every_mode("http11probe.py", &[], VERDICT);
}

/// The same probes over TLS (`--tls-self-signed`): rustls under the same HTTP core must change
/// no answer, and close as promptly.
#[test]
fn http11probe_passes_over_tls_in_every_mode() {
    common::script_passes_in_every_mode("http11probe.py", &[("TLS", "1")], VERDICT);
}

//! sslyze, the TLS scanner (PyPI `sslyze`; `.ci/run` installs it in an environment of its own,
//! and without it this test fails, saying so), against the server in every mode. Its verdict is
//! Mozilla's "intermediate" configuration (<https://ssl-config.mozilla.org/>): TLS 1.2 and 1.3
//! only, forward-secret AEAD suites, the usual curves, a certificate a client can verify. On the
//! way it sends what a scanner sends: SSL 2.0 and 3.0 hellos, a Heartbleed probe, an early
//! ChangeCipherSpec, client renegotiations, a ROBOT probe, a fallback hello, TLS 1.3 early data,
//! nearly six hundred handshakes in all, each refused or finished. After it the server must still
//! answer, and stop as it is asked to.
//!
//! The certificate is a leaf signed by a CA made here, both by rcgen: sslyze is told to trust the
//! CA (`--certinfo_ca_file`), so the chain is judged as a browser would judge it.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use serde_json::Value;

use common::{
    TestServer, bounded, client_trusting, config, in_every_mode_at_once, tempdir, tls_over_as,
};
use reactor_httpd::config::Mode;
use reactor_httpd::tls::TlsSource;

/// What every scan is asked for, besides the certificate and Mozilla's verdict.
const SCANS: [&str; 16] = [
    "--sslv2",
    "--sslv3",
    "--tlsv1",
    "--tlsv1_1",
    "--tlsv1_2",
    "--tlsv1_3",
    "--elliptic_curves",
    "--heartbleed",
    "--openssl_ccs",
    "--robot",
    "--compression",
    "--fallback",
    "--reneg",
    "--ems",
    "--early_data",
    "--http_headers",
];

#[test]
fn sslyze_finds_the_tls_configuration_intermediate_in_every_mode() {
    bounded(240, || {
        let dir = tempdir("tls-scan");
        let pki = Pki::make(&dir);
        // All modes at once: a scan is about a second.
        in_every_mode_at_once(|mode| scan(mode, &dir, &pki));
    });
}

/// A CA, and a leaf for localhost and 127.0.0.1 it signed, as PEM files.
struct Pki {
    ca: PathBuf,
    ca_der: CertificateDer<'static>,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn make(dir: &Path) -> Pki {
        // Mozilla's profile refuses a certificate valid for longer than 366 days.
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let dated = |params: &mut CertificateParams| {
            params.not_before = (now - day).into();
            params.not_after = (now + 30 * day).into();
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "reactor-httpd test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        dated(&mut ca);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.use_authority_key_identifier_extension = true;
        dated(&mut leaf);
        let leaf_cert = leaf.signed_by(&key, &issuer).unwrap();

        let pki = Pki {
            ca: dir.join("ca.pem"),
            ca_der: ca_cert.der().clone(),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
        std::fs::write(&pki.cert, leaf_cert.pem()).unwrap();
        std::fs::write(&pki.key, key.serialize_pem()).unwrap();
        pki
    }
}

fn scan(mode: Mode, dir: &Path, pki: &Pki) {
    let mut config = config(mode);
    config.tls = Some(TlsSource::Files {
        cert: pki.cert.clone(),
        key: pki.key.clone(),
    });
    let mut server = TestServer::start(config);
    let json = dir.join(format!("{}.json", mode.name()));
    let output = Command::new("sslyze")
        .arg("--certinfo")
        .arg("--certinfo_ca_file")
        .arg(&pki.ca)
        .arg("--mozilla_config=intermediate")
        .args(SCANS)
        .arg(format!("--json_out={}", json.display()))
        .arg(server.addr.to_string())
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "sslyze is needed ({err}): .ci/run installs it \
                 (python3 -m venv /opt/sslyze && /opt/sslyze/bin/pip install 'sslyze>=6,<7')"
            )
        });
    let said = String::from_utf8_lossy(&output.stdout);
    // Exit status 0: compliant with the profile (1 lists what is not).
    assert!(
        output.status.success(),
        "{mode:?}: sslyze: {said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("OK - Compliant"), "{mode:?}: {said}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    check_report(mode, &report);

    // Nearly six hundred handshakes later, a client is served as before.
    let trusting = Arc::new(client_trusting(
        pki.ca_der.clone(),
        rustls::DEFAULT_VERSIONS,
    ));
    let tcp = TcpStream::connect(server.addr).unwrap();
    let mut client = tls_over_as(tcp, &trusting, "localhost");
    assert_eq!(client.get("/hello").text(), "Hello, World!", "{mode:?}");
    drop(client);
    server.stop();
}

/// What the profile does not say, or says only as a whole: each scan ran, each probe found
/// nothing, and the protocol versions and suites are exactly the expected ones.
fn check_report(mode: Mode, report: &Value) {
    let server = &report["server_scan_results"][0];
    assert_eq!(server["scan_status"], "COMPLETED", "{mode:?}");
    let results = server["scan_result"].as_object().unwrap();
    // Each scan asked for (and the certificate's) completed; the others were not scheduled.
    let mut completed = 0;
    for (scan, outcome) in results {
        match outcome["status"].as_str() {
            Some("COMPLETED") => completed += 1,
            Some("NOT_SCHEDULED") => {}
            _ => panic!("{mode:?}: {scan}: {outcome}"),
        }
    }
    assert_eq!(completed, SCANS.len() + 1, "{mode:?}");
    let result = |scan: &str| &results[scan]["result"];
    for old in [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ] {
        assert_eq!(
            result(old)["is_tls_version_supported"],
            false,
            "{mode:?}: {old}"
        );
    }
    let accepted = |scan: &str| -> Vec<String> {
        let suites = result(scan)["accepted_cipher_suites"].as_array().unwrap();
        (suites.iter())
            .map(|suite| suite["cipher_suite"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    // ECDHE and an AEAD, and all three of rustls's (the key is ECDSA P-256).
    let mut tls12 = accepted("tls_1_2_cipher_suites");
    tls12.sort();
    assert_eq!(
        tls12,
        [
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ],
        "{mode:?}"
    );
    assert_eq!(accepted("tls_1_3_cipher_suites").len(), 3, "{mode:?}");
    let probes = [
        ("tls_compression", "supports_compression", false),
        ("tls_1_3_early_data", "supports_early_data", false),
        ("heartbleed", "is_vulnerable_to_heartbleed", false),
        (
            "openssl_ccs_injection",
            "is_vulnerable_to_ccs_injection",
            false,
        ),
        ("tls_fallback_scsv", "supports_fallback_scsv", true),
        (
            "session_renegotiation",
            "is_vulnerable_to_client_renegotiation_dos",
            false,
        ),
        (
            "session_renegotiation",
            "supports_secure_renegotiation",
            true,
        ),
        ("tls_extended_master_secret", "supports_ems_extension", true),
    ];
    for (scan, field, expected) in probes {
        assert_eq!(result(scan)[field], expected, "{mode:?}: {scan}.{field}");
    }
    let robot = result("robot")["robot_result"].as_str().unwrap();
    assert!(robot.starts_with("NOT_VULNERABLE"), "{mode:?}: {robot}");
    let curves: Vec<&str> = (result("elliptic_curves")["supported_curves"].as_array())
        .unwrap()
        .iter()
        .map(|curve| curve["name"].as_str().unwrap())
        .collect();
    assert_eq!(curves, ["X25519", "secp256r1", "secp384r1"], "{mode:?}");
    // Its GET / over TLS was answered (the demo's index): no error, no redirect elsewhere.
    let http = result("http_headers");
    assert_eq!(http["http_error_trace"], Value::Null, "{mode:?}: {http}");
    assert_eq!(http["http_path_redirected_to"], "/", "{mode:?}: {http}");
}

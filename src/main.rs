//! The command line: flags -> `Config`, the listening line, signals, exit codes.
//!
//! Exit codes: 0 after a clean shutdown, 2 for a usage error (bad flag, bad ROOT, bad
//! `--cores`), 1 for a runtime failure (address in use, a loop that failed).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clap::error::{ContextKind, ContextValue};

use reactor_httpd::app;
use reactor_httpd::config::{AccessLogTarget, Config, Cores, Limits, Mode};
use reactor_httpd::http::BufferBudget;
use reactor_httpd::server::resources;
use reactor_httpd::server::{
    Server, StartError, keep_if_handed_over, raise_descriptor_limit, run_if_keeper,
};
use reactor_httpd::tls::TlsSource;

/// An HTTP/1.1 server on a hand-rolled reactor: one event loop per core.
#[derive(Parser)]
#[command(name = "reactor-httpd", version)]
struct Cli {
    /// Directory to serve.
    #[arg(default_value = ".")]
    root: PathBuf,
    /// Listen address: IPv4:port, [IPv6]:port (IPv6 only; give both for both), or a host
    /// name:port, listened on at every address it resolves to (localhost:8080). Repeatable: listen
    /// on each. Port 0 picks a free port. With sockets passed by systemd (LISTEN_FDS), only
    /// checked against them. Default: 127.0.0.1:8080.
    #[arg(long, value_parser = parse_bind)]
    bind: Vec<Bind>,
    /// Share the port with other servers of this user already listening on it (SO_REUSEPORT,
    /// nginx's `reuseport`), instead of refusing an address in use. Not needed to restart: see
    /// SIGHUP.
    #[arg(long)]
    reuse_port: bool,
    /// How connections are driven.
    #[arg(long, value_enum, default_value = "reactor")]
    mode: ModeArg,
    /// Event loops (rings) in reactor and uring mode (auto: one per core this process may use;
    /// under a cgroup CPU limit of fewer cores, as a container's --cpus sets, one per whole CPU
    /// of the limit, unpinned).
    #[arg(long, default_value = "auto", value_parser = parse_cores)]
    cores: Cores,
    /// Do not pin event loops to cores.
    #[arg(long)]
    no_pin: bool,
    /// Worker threads in threaded mode (at most 10000: Linux runs out of memory maps for
    /// threads, by default, past about 16000).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    threads: u32,
    /// Reactor and uring mode: threads that run handlers which may block (/sleep, /compute); 0 = every
    /// handler on its loop. Default: 8 per loop.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=4096))]
    handler_threads: Option<u32>,
    /// Seconds a handler on the pool may take; then its client gets 504.
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    handler_timeout: Duration,
    /// Mount the demo routes (/hello, /echo, /headers, /sleep, /compute) ahead of the static files.
    #[arg(long)]
    demo: bool,
    /// Open connections; beyond it the client gets 503 and is closed. Default: 10,000, or fewer
    /// in reactor, uring and fork mode where half the memory the process may use (its cgroup's
    /// limit, or else the machine's) would not hold that many at 20 KiB each (48 KiB with TLS;
    /// 256 KiB in fork mode).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
    /// Request line + headers, in bytes; beyond it 431 (as for more than 100 header fields).
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(64..))]
    max_header_bytes: u32,
    /// Request body, in bytes; beyond it 413.
    #[arg(long, default_value_t = 10_485_760, value_parser = clap::value_parser!(u64).range(0..=1 << 32))]
    max_body_bytes: u64,
    /// Bytes all connections' buffers may hold together beyond 8 KiB each of input and output
    /// (request bodies arriving, responses waiting to be sent); a request that needs more than
    /// is left gets 503 and its connection is closed, one that could not fit even alone 413.
    /// Default: 1 GiB, or a quarter of the memory the process may use where that is less than
    /// 4 GiB (its cgroup's limit, as a container's --memory sets, or else the machine's).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=1 << 48))]
    max_buffer_bytes: Option<u64>,
    /// Seconds for a request head to arrive; then 408.
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    header_timeout: Duration,
    /// Seconds for a request body to arrive, once its head has; then 408. A body that keeps
    /// coming at --body-min-rate gains time as it comes: only a body that stops (or crawls) for
    /// this long runs out.
    #[arg(long, default_value = "60", value_parser = parse_secs)]
    body_timeout: Duration,
    /// Bytes a second of a request body that keep --body-timeout from running down: each byte
    /// that arrives gives it 1/RATE s more, up to --body-timeout from now. 0: the whole body
    /// must arrive within --body-timeout of its head.
    #[arg(long, default_value_t = 1024, value_name = "RATE")]
    body_min_rate: u32,
    /// Seconds an idle keep-alive connection stays open; 0: no keep-alive, every connection
    /// closes after its first response (nginx's `keepalive_timeout 0`).
    #[arg(long, default_value = "5", value_parser = parse_keep_alive_secs)]
    keep_alive_timeout: Duration,
    /// Seconds a response may make no progress (the client stopped reading) before it is dropped.
    #[arg(long, default_value = "60", value_parser = parse_secs)]
    send_timeout: Duration,
    /// Common Log Format access log: a file, - for stdout, or off [default: -].
    #[arg(long, value_name = "PATH|-|off")]
    access_log: Option<String>,
    /// Same as --access-log off (and so not given with a log to write: a log asked for and
    /// silenced at once would be lost without a word).
    #[arg(long)]
    quiet: bool,
    /// Answer GET PATH with Prometheus text-format metrics, per loop (e.g. /metrics).
    #[arg(long, value_name = "PATH")]
    metrics_path: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM), with --tls-key.
    #[arg(
        long,
        value_name = "PATH",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a certificate made at start for localhost, 127.0.0.1 and ::1 (to try it
    /// out: clients must be told to trust it, e.g. curl -k).
    #[arg(long)]
    tls_self_signed: bool,
    /// Add this field to every response, e.g. 'Cache-Control: max-age=60' (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Do not serve x.br, x.zst or x.gz in place of x to clients that accept them.
    #[arg(long)]
    no_precompressed: bool,
    /// Compress text files of 1 KiB or more as they are sent (gzip 1, brotli 1, zstd 1), when
    /// the client accepts it and no precompressed sibling does.
    #[arg(long)]
    compress: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Reactor,
    Threaded,
    Blocking,
    Fork,
    Uring,
}

/// The most loops `--cores N` asks for.
const MOST_LOOPS: usize = 1024;

fn parse_cores(text: &str) -> Result<Cores, String> {
    match text {
        "auto" => Ok(Cores::Auto),
        _ => match text.parse() {
            // Each loop holds descriptors and buffers of its own: thousands run out of both.
            Ok(n) if (1..=MOST_LOOPS).contains(&n) => Ok(Cores::Count(n)),
            _ => Err(format!(
                "expected auto or a number of loops from 1 to {MOST_LOOPS}"
            )),
        },
    }
}

/// What one `--bind` names: an address, or each address a host name resolves to.
#[derive(Clone, Debug)]
struct Bind(Vec<SocketAddr>);

/// `--bind`: an IP address and port as written, else `host:port` resolved as nginx's `listen
/// localhost:8080` is (every address, in the resolver's order). A port alone is refused rather than
/// guessed at: nginx takes it as every interface, where this server's default is the loopback.
fn parse_bind(text: &str) -> Result<Bind, String> {
    if let Ok(addr) = text.parse() {
        return Ok(Bind(vec![addr]));
    }
    if text.parse::<u16>().is_ok() {
        return Err(format!(
            "a port alone is not an address: 127.0.0.1:{text} for this machine, 0.0.0.0:{text} \
             for every interface"
        ));
    }
    let (host, port) = text
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .filter(|(host, _)| !host.is_empty())
        .ok_or("expected IP:PORT, [IPv6]:PORT or HOST:PORT")?;
    if host.contains([':', '[', ']']) {
        return Err("an IPv6 address goes in brackets: [::1]:8080".into());
    }
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|err| format!("cannot resolve {host}: {err}"))?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in resolved {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    match addrs.is_empty() {
        true => Err(format!("{host} resolves to no address")),
        false => Ok(Bind(addrs)),
    }
}

/// `Name: value` for `--header`: a field name (a token), a value of visible characters, spaces
/// and tabs; not a field the server owns for framing, nor one it sets itself that a response may
/// carry only once.
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once(':').ok_or("expected 'Name: value'")?;
    let value = reactor_httpd::http::trim_ows(value);
    if name.is_empty() || !name.bytes().all(reactor_httpd::http::is_tchar) {
        return Err(format!("{name:?} is not a field name"));
    }
    if !value
        .bytes()
        .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        return Err("the value may hold only visible characters, spaces and tabs".into());
    }
    // Fields the server sets itself: those that frame the response, and those whose value is
    // one item, not a list (RFC 9110 5.3: a second field line of such a name makes the message
    // invalid, and a second Content-Encoding would tell the client to decode what is not
    // encoded). And Allow, a list, but the resource's own: a second line would add to it, so a
    // 405 would name methods the resource refuses.
    const OWNED: [(&[&str], &str); 3] = [
        (
            &[
                "content-length",
                "transfer-encoding",
                "connection",
                "keep-alive",
                "upgrade",
                "te",
                "trailer",
            ],
            "it frames the response",
        ),
        (
            &[
                "date",
                "server",
                "content-type",
                "content-encoding",
                "content-range",
                "etag",
                "last-modified",
                "location",
                "accept-ranges",
            ],
            "a response carries it once",
        ),
        (&["allow"], "it says what the resource allows"),
    ];
    for (names, why) in OWNED {
        if names.iter().any(|owned| name.eq_ignore_ascii_case(owned)) {
            return Err(format!("{name} is the server's to set: {why}"));
        }
    }
    Ok((name.to_string(), value.to_string()))
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>().map(Duration::try_from_secs_f64) {
        Ok(Ok(time)) if !time.is_zero() && time <= Duration::from_secs(86_400) => Ok(time),
        _ => Err("expected a number of seconds, more than 0 and at most 86400".into()),
    }
}

/// As [`parse_secs`], and 0: keep-alive off.
fn parse_keep_alive_secs(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(0.0) => Ok(Duration::ZERO),
        _ => parse_secs(text).map_err(|_| {
            "expected 0 (no keep-alive) or a number of seconds, more than 0 and at most 86400"
                .into()
        }),
    }
}

impl Cli {
    fn into_config(self) -> Result<Config, String> {
        let root = self.root;
        if let Err(err) = std::fs::read_dir(&root) {
            return Err(format!("cannot serve {}: {err}", root.display()));
        }
        if let Some(path) = &self.metrics_path
            && (!path.starts_with('/') || path.contains(['?', '#']))
        {
            return Err(format!("--metrics-path {path:?}: a path, starting with /"));
        }
        let access_log = match (self.quiet, self.access_log.as_deref()) {
            (true, None) | (_, Some("off")) => AccessLogTarget::Off,
            (true, Some(log)) => {
                return Err(format!(
                    "--quiet cannot be used with --access-log {log}: a log asked for would be \
                     switched off"
                ));
            }
            (false, None | Some("-")) => AccessLogTarget::Stdout,
            (false, Some(path)) => AccessLogTarget::File(PathBuf::from(path)),
        };
        let addrs: Vec<SocketAddr> = self.bind.into_iter().flat_map(|bind| bind.0).collect();
        for (index, addr) in addrs.iter().enumerate() {
            if addrs[..index].contains(addr) {
                return Err(format!("--bind {addr} is given twice"));
            }
        }
        let mut binds = addrs.into_iter();
        let bind = binds.next();
        let mode = match self.mode {
            ModeArg::Reactor => Mode::Reactor,
            ModeArg::Threaded => Mode::Threaded,
            ModeArg::Blocking => Mode::Blocking,
            ModeArg::Fork => Mode::Fork,
            ModeArg::Uring => Mode::Uring,
        };
        let tls = match (self.tls_cert, self.tls_key, self.tls_self_signed) {
            (Some(cert), Some(key), _) => Some(TlsSource::Files { cert, key }),
            (_, _, true) => Some(TlsSource::SelfSigned),
            _ => None,
        };
        Ok(Config {
            bind: bind.unwrap_or(Config::default().bind),
            also_bind: binds.collect(),
            bind_given: bind.is_some(),
            reuse_port: self.reuse_port,
            mode,
            cores: self.cores,
            pin: !self.no_pin,
            threads: self.threads as usize,
            handler_threads: self.handler_threads.map(|n| n as usize),
            demo: self.demo,
            root,
            max_connections: match self.max_connections {
                Some(n) => n as usize,
                None => resources::default_max_connections(mode, tls.is_some()),
            },
            limits: Limits {
                max_header_bytes: self.max_header_bytes as usize,
                max_body_bytes: self.max_body_bytes,
                header_timeout: self.header_timeout,
                body_timeout: self.body_timeout,
                body_min_rate: self.body_min_rate,
                keep_alive_timeout: self.keep_alive_timeout,
                send_timeout: self.send_timeout,
                handler_timeout: self.handler_timeout,
                buffers: BufferBudget::new(match self.max_buffer_bytes {
                    Some(bytes) => usize::try_from(bytes).unwrap_or(usize::MAX),
                    None => resources::default_max_buffer_bytes(),
                }),
            },
            access_log,
            metrics_path: self.metrics_path,
            headers: self.headers,
            precompressed: !self.no_precompressed,
            compress: self.compress,
            tls,
        })
    }
}

fn main() -> ExitCode {
    // PID 1 of a container, executed again after an upgrade to keep it (`server::keeper`).
    if let Some(code) = run_if_keeper() {
        return code;
    }
    fixed_mmap_threshold();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print in full, to stdout.
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            // clap's message spans several paragraphs; the contract wants one line: the first
            // paragraph, its lines joined. A value quoted in it that holds a line break (a
            // `--header` with a CR LF in it) is shown escaped, not broken over lines.
            let mut text = err.to_string();
            if let Some(ContextValue::String(value)) = err.get(ContextKind::InvalidValue)
                && value.chars().any(char::is_control)
            {
                let mut escaped = String::with_capacity(value.len());
                for c in value.chars() {
                    match c.is_control() {
                        true => escaped.extend(c.escape_default()),
                        false => escaped.push(c),
                    }
                }
                text = text.replacen(value.as_str(), &escaped, 1);
            }
            let first = text.split("\n\n").next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let message = first.lines().map(str::trim).collect::<Vec<_>>().join(" ");
            return fail(2, &format!("{message} (see --help)"));
        }
    };
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(message) => return fail(2, &message),
    };
    raise_descriptor_limit();
    let handler = match app::build(&config) {
        Ok(handler) => handler,
        Err(err) => return fail(2, &format!("cannot serve {}: {err}", config.root.display())),
    };
    let mut server = match Server::bind(&config, handler) {
        Ok(server) => server,
        Err(err @ StartError::Usage(_)) => return fail(2, &err.to_string()),
        Err(err @ StartError::Io(_)) => return fail(1, &err.to_string()),
    };
    if let Err(err) = server.stop_on_signals() {
        return fail(1, &format!("cannot handle signals: {err}"));
    }
    if let Some(fingerprint) = server.tls_fingerprint() {
        eprintln!(
            "reactor-httpd: self-signed certificate for localhost, 127.0.0.1 and ::1, SHA-256 {fingerprint}"
        );
    }
    // Scripts wait for this line: printed whole and flushed once every loop is set up, just
    // before serving (a loop, ring or thread that cannot be made fails the start before it).
    let (line, others) = (server.listening_line(), server.other_urls());
    server.when_ready(move || {
        for url in others {
            eprintln!("reactor-httpd: also listening on {url}");
        }
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    });
    match server.run() {
        Ok(()) => {
            // As PID 1, after a handover: stay, as the keeper of the new process.
            keep_if_handed_over();
            ExitCode::SUCCESS
        }
        Err(err) => fail(1, &format!("server failed: {err}")),
    }
}

/// Allocations of 128 KiB and more get pages of their own from the kernel, given back when
/// freed, always. glibc starts so, but raises the bar to the size of any such block freed, up to
/// 32 MiB: after the first compressor (`--compress`; a gzip state is about 300 KiB) is freed,
/// the next ones come from the thread's heap, and each thread's heap keeps the high-water mark
/// of what was ever live in it, fragmented. With a worker thread per connection that came to
/// 3 MiB per thread (50 MiB for 16 workers, 8 clients, 960 gzip responses); with the bar fixed,
/// 2 MiB in all. No allocation on the request path is this large: the fixed bar costs only the
/// large, rare ones a map and an unmap each.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("reactor-httpd: {message}");
    ExitCode::from(code)
}

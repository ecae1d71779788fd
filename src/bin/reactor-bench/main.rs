//! reactor-bench: a load generator built on mio, and the side-by-side comparison of
//! reactor-httpd's concurrency models.
//!
//! - `reactor-bench URL [--connections N] [--duration SECS] [--pipeline DEPTH] [--threads N]
//!   [--rate R] [--fresh N] [--json]`: keep-alive load on one URL (`load.rs`), reported as text or JSON
//!   (`report.rs`).
//! - `reactor-bench compare [--modes ...] [--connections ...] [--paths ...] [--duration SECS]
//!   [--runs N] [--out DIR]`: every mode under the same load, one table and plots (`compare.rs`).

mod compare;
mod load;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Keep-alive HTTP/1.1 load on one URL.
#[derive(Parser)]
#[command(
    name = "reactor-bench",
    version,
    after_help = "Also: reactor-bench compare --help"
)]
struct Run {
    /// http://host:port/path or https://... (the certificate is not checked, as wrk does not)
    url: String,
    /// Open connections, all kept alive.
    #[arg(long, short = 'c', default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// Seconds of load.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Requests per write on each connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pipeline: u32,
    /// Event loops (threads) sharing the connections.
    #[arg(long, short = 't', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// Requests per second in all, on a fixed schedule; latency counts from when each request
    /// was due (no coordinated omission). Without it, each connection sends as fast as answered.
    #[arg(long)]
    rate: Option<f64>,
    /// Connections besides --connections that each make one request with `Connection: close`
    /// and connect again: a stream of new connections, sharing --rate.
    #[arg(long, default_value_t = 0)]
    fresh: u32,
    /// Seconds a request may wait for its answer before it counts as a timeout (in a shorter
    /// run, a request unanswered for the whole run counts as one too).
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Every mode of reactor-httpd under the same load: one table, plots.
#[derive(Parser)]
#[command(name = "reactor-bench compare")]
struct CompareArgs {
    /// Modes to compare, comma-separated (`reactor-no-pool`: the reactor with every handler on
    /// its loop).
    #[arg(
        long,
        default_value = "reactor,uring,threaded,blocking,fork",
        value_delimiter = ','
    )]
    modes: Vec<String>,
    /// Connection counts, comma-separated.
    #[arg(long, default_value = "1,10,100,1000", value_delimiter = ',')]
    connections: Vec<usize>,
    /// Seconds per cell.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Where results.md and the SVG plots go.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// The reactor-httpd binary (default: the one next to this program).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Worker threads for the threaded mode.
    #[arg(long, default_value_t = 64)]
    threads: usize,
    /// The reactor's handler threads (`--handler-threads`); default: as many as --threads.
    #[arg(long)]
    handler_threads: Option<usize>,
    /// Paths to drive, comma-separated: /hello, /4k.bin (the file), /sleep?ms=N, /compute?kib=N.
    #[arg(long, default_value = "/hello,/4k.bin", value_delimiter = ',')]
    paths: Vec<String>,
    /// Total requests/s of each cell's fixed-rate run.
    #[arg(long, default_value_t = 20000.0)]
    rate: f64,
    /// Runs of each kind per cell, each on a fresh server; the median run is reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Every server over HTTPS (`--tls-self-signed`), driven with TLS.
    #[arg(long)]
    tls: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = if args.get(1).map(String::as_str) == Some("compare") {
        let parsed = CompareArgs::try_parse_from(
            std::iter::once("reactor-bench compare".to_string()).chain(args.into_iter().skip(2)),
        );
        match parsed {
            Ok(parsed) => compare(parsed),
            Err(err) => err.exit(),
        }
    } else {
        match Run::try_parse() {
            Ok(run) => load(run),
            Err(err) => err.exit(),
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("reactor-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(value: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{what} must be a positive number of seconds"))
}

/// Makes sure `connections` sockets can be open at once, raising the soft descriptor limit to
/// the hard one if need be. Past the limit, every connect beyond it failed with EMFILE and was
/// tried again every 10 ms: 30,000 connections under `ulimit -n 20000` gave a 1 s run that took
/// 7 s, 110,000 connect errors and a report of nothing but them.
fn descriptors_for(connections: usize) -> Result<(), String> {
    // The standard streams, epoll, a thread's wake-up and the compared server's pipes.
    const OWN: usize = 16;
    let limit = reactor_httpd::server::raise_descriptor_limit();
    match connections + OWN <= limit {
        true => Ok(()),
        false => Err(format!(
            "{connections} connections need {} descriptors, and this process may open {limit} \
             (`ulimit -n`, at most its hard limit, `ulimit -Hn`)",
            connections + OWN
        )),
    }
}

fn load(run: Run) -> Result<(), String> {
    let target = load::parse_url(&run.url)?;
    if run.rate.is_some() && run.pipeline > 1 {
        return Err("--rate sends one request at a time: drop --pipeline".into());
    }
    if run
        .rate
        .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
    {
        return Err("--rate must be a positive number of requests per second".into());
    }
    descriptors_for(run.connections as usize + run.fresh as usize)?;
    let load = load::Load {
        target,
        connections: run.connections as usize,
        duration: seconds(run.duration, "--duration")?,
        pipeline: run.pipeline as usize,
        // As many as run: no thread without a connection (the header says how many ran).
        threads: (run.threads as usize).min(run.connections as usize),
        rate: run.rate,
        fresh: run.fresh as usize,
        timeout: seconds(run.timeout, "--timeout")?,
        pin: None,
        on_window: None,
    };
    let report = load::run(&load).map_err(|err| err.to_string())?;
    if run.json {
        println!("{}", report.json(&run.url, load.connections, load.pipeline));
    } else {
        let mode = match run.rate {
            Some(rate) => format!("{rate} requests/s scheduled"),
            None => "closed loop".into(),
        };
        print!(
            "{}",
            report.text(&format!(
                "{}: {} connections{}, {} thread(s), pipeline {}, {mode}",
                run.url,
                load.connections,
                match load.fresh {
                    0 => String::new(),
                    n => format!(" + {n} making one request each"),
                },
                load.threads,
                load.pipeline
            ))
        );
    }
    // A run that measured nothing is a failure, as wrk's and ab's are when they cannot connect:
    // a script must not read its zeros as a result. The report above says which errors.
    match report.responses {
        0 => Err(format!(
            "no response in {:.2} s ({} errors)",
            report.elapsed.as_secs_f64(),
            report.errors.total()
        )),
        _ => Ok(()),
    }
}

fn compare(args: CompareArgs) -> Result<(), String> {
    let server = match args.server {
        Some(server) => server,
        None => std::env::current_exe()
            .map_err(|err| err.to_string())?
            .with_file_name("reactor-httpd"),
    };
    if args.connections.is_empty() || args.connections.contains(&0) {
        return Err("--connections needs positive counts".into());
    }
    if let Some(path) = args.paths.iter().find(|path| !path.starts_with('/')) {
        return Err(format!("--paths: {path:?} does not start with /"));
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err("--rate must be a positive number of requests per second".into());
    }
    descriptors_for(args.connections.iter().copied().max().unwrap_or(0))?;
    let settings = compare::Compare {
        modes: args.modes,
        connections: args.connections,
        duration: seconds(args.duration, "--duration")?,
        out: args.out,
        server,
        threads: args.threads,
        rate: args.rate,
        runs: args.runs as usize,
        handler_threads: args.handler_threads.unwrap_or(args.threads),
        paths: args.paths,
        tls: args.tls,
    };
    compare::run(&settings).map_err(|err| err.to_string())
}

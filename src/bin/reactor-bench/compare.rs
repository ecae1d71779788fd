//! `reactor-bench compare`: every mode of reactor-httpd, side by side, on this machine.
//!
//! For each mode and each number of connections it starts a fresh `reactor-httpd --demo --quiet`
//! on a free port (pinned to core 0 when there are two cores or more), drives each path (by
//! default `/hello` and a 4 KiB static file; `--paths` adds the demo's blocking `/sleep?ms=N`
//! and CPU-bound `/compute?kib=N`) from this process (pinned to core 1), and samples the
//! server's CPU time and RSS from /proc. The mode `reactor-no-pool` is the reactor with
//! `--handler-threads 0`, every handler on the loop. The result is one table (stdout, and
//! `results.md`) and SVG plots.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use plotters::prelude::*;

use crate::load::{self, Load, Target, WindowHook};
use crate::report::{Report, human_us};

pub struct Compare {
    pub modes: Vec<String>,
    pub connections: Vec<usize>,
    pub duration: Duration,
    pub out: PathBuf,
    /// The reactor-httpd binary to run.
    pub server: PathBuf,
    /// `--threads` for the threaded mode.
    pub threads: usize,
    /// Total requests/s of the fixed-rate run in each cell.
    pub rate: f64,
    /// Runs of each kind per cell; the median is reported.
    pub runs: usize,
    /// What each cell drives, one path at a time.
    pub paths: Vec<String>,
    /// `--handler-threads` for the reactor (the pool's threads).
    pub handler_threads: usize,
    /// Every server with `--tls-self-signed`, driven over HTTPS.
    pub tls: bool,
}

/// The 4 KiB file every server's ROOT holds.
const FILE: &str = "/4k.bin";

/// How a path is named in the table and the plots' titles.
fn label(path: &str) -> String {
    match path {
        "/hello" => "hello".into(),
        FILE => "4 KiB file".into(),
        other => other.trim_start_matches('/').into(),
    }
}

/// How a path is named in the plots' file names: `hello`, `file`, `sleep-ms-10`.
fn slug(path: &str) -> String {
    match path {
        FILE => "file".into(),
        other => other
            .trim_start_matches('/')
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect(),
    }
}

struct Cell {
    mode: String,
    connections: usize,
    path: String,
    /// Closed loop: as fast as the server answers.
    report: Report,
    /// The same connections sharing a fixed total rate: latency without queueing.
    at_rate: Report,
    /// Server CPU over the closed-loop window, as a percentage of one core.
    cpu_percent: f64,
    /// Server memory at the end of the closed-loop window, in KiB: proportional set size, so
    /// pages the fork mode's processes share are counted once.
    memory_kib: u64,
}

pub fn run(compare: &Compare) -> io::Result<()> {
    fs::create_dir_all(&compare.out)?;
    // The servers' ROOT: a temporary directory holding the 4 KiB file.
    let root = std::env::temp_dir().join(format!("reactor-bench-www-{}", std::process::id()));
    fs::create_dir_all(&root)?;
    fs::write(
        root.join("4k.bin"),
        (0..4096u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    )?;

    // Server on the first core, load on the second: they must not fight for one core.
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (server_core, load_core) = match cores.as_slice() {
        [first, second, ..] => (Some(first.id), Some(*second)),
        _ => (None, None),
    };
    if let Some(core) = load_core {
        core_affinity::set_for_current(core);
    }

    let total = compare.modes.len() * compare.connections.len() * compare.paths.len();
    let started = Instant::now();
    let mut cells = Vec::new();
    for mode in &compare.modes {
        for &connections in &compare.connections {
            for path in &compare.paths {
                let label = label(path);
                let done = cells.len();
                let left = if done == 0 {
                    (compare.duration.as_secs_f64() * 2.0 + 3.0) * (compare.runs * total) as f64
                } else {
                    started.elapsed().as_secs_f64() / done as f64 * (total - done) as f64
                };
                eprintln!(
                    "[{}/{total}] {mode}, {connections} connections, {label}: {} s (about {:.0} s left)",
                    done + 1,
                    compare.duration.as_secs_f64(),
                    left
                );
                cells.push(measure(
                    compare,
                    &root,
                    mode,
                    connections,
                    path,
                    server_core,
                    load_core,
                )?);
            }
        }
    }

    let table = markdown(&cells, compare);
    print!("{table}");
    fs::write(compare.out.join("results.md"), &table)?;
    for path in &compare.paths {
        let (label, slug) = (label(path), slug(path));
        plot(
            &cells,
            compare,
            path,
            &compare.out.join(format!("{slug}-requests.svg")),
            &format!("{label}: requests/s"),
            Scale::Linear,
            |cell| cell.report.requests_per_sec(),
        )?;
        plot(
            &cells,
            compare,
            path,
            &compare.out.join(format!("{slug}-p99.svg")),
            &format!("{label}: p99 latency (ms), as fast as it answers"),
            Scale::Log,
            |cell| cell.report.percentile_us(99.0) as f64 / 1000.0,
        )?;
        plot(
            &cells,
            compare,
            path,
            &compare.out.join(format!("{slug}-p99-at-rate.svg")),
            &format!(
                "{label}: p99 latency (ms) at {:.0} requests/s",
                compare.rate
            ),
            Scale::Log,
            |cell| cell.at_rate.percentile_us(99.0) as f64 / 1000.0,
        )?;
    }
    let _ = fs::remove_dir_all(&root);
    eprintln!("wrote {}", compare.out.display());
    Ok(())
}

fn measure(
    compare: &Compare,
    root: &Path,
    mode: &str,
    connections: usize,
    path: &str,
    server_core: Option<usize>,
    load_core: Option<core_affinity::CoreId>,
) -> io::Result<Cell> {
    // A fresh server for each run, so one run's leftovers (connections still closing, a
    // thread pool's backlog) do not weigh on the next.
    let run = |rate: Option<f64>, sample: bool| -> io::Result<(Report, Vec<Sample>)> {
        let (mut server, port) = start_server(compare, root, mode, connections, server_core)?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        // The server is sampled at the two edges of the measurement window, from the load
        // thread itself, outside the window: nothing runs beside the load while it measures.
        let on_window = sample.then(|| {
            let (pid, samples, fork) = (server.id(), samples.clone(), mode == "fork");
            WindowHook(Arc::new(move |end: bool| {
                let sample = Sample::take(pid, fork, end);
                samples
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(sample);
            }))
        });
        let load = Load {
            target: Target {
                addr: ([127, 0, 0, 1], port).into(),
                host: format!("127.0.0.1:{port}"),
                path: path.to_string(),
                tls: compare.tls,
            },
            connections,
            duration: compare.duration,
            pipeline: 1,
            threads: 1,
            rate,
            fresh: 0,
            timeout: Duration::from_secs(2),
            pin: load_core,
            on_window,
        };
        let report = load::run(&load);
        stop(&mut server);
        let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(PoisonError::into_inner));
        Ok((report?, samples))
    };
    // Each kind of run `runs` times; the median run is kept (one run can be 20% off): for the
    // closed loop, the median by requests/s, with its latency, CPU and memory; for the fixed
    // rate, the median by p99.
    let mut closed = Vec::with_capacity(compare.runs);
    let mut rated = Vec::with_capacity(compare.runs);
    for _ in 0..compare.runs {
        let (report, samples) = run(None, true)?;
        closed.push((report, usage(&samples)));
        rated.push(run(Some(compare.rate), false)?.0);
    }
    closed.sort_by(|a, b| a.0.requests_per_sec().total_cmp(&b.0.requests_per_sec()));
    rated.sort_by_key(|report| report.percentile_us(99.0));
    let (report, (cpu_percent, memory_kib)) = closed.swap_remove(closed.len() / 2);
    let at_rate = rated.swap_remove(rated.len() / 2);
    Ok(Cell {
        mode: mode.to_string(),
        connections,
        path: path.to_string(),
        report,
        at_rate,
        cpu_percent,
        memory_kib,
    })
}

/// Starts the server on a free port and returns it with the port from its listening line.
fn start_server(
    compare: &Compare,
    root: &Path,
    mode: &str,
    connections: usize,
    core: Option<usize>,
) -> io::Result<(Child, u16)> {
    let mut command = Command::new(&compare.server);
    let (mode, handler_threads) = match mode {
        "reactor-no-pool" => ("reactor", 0),
        mode => (mode, compare.handler_threads),
    };
    command
        .args(["--demo", "--quiet", "--bind", "127.0.0.1:0", "--mode", mode])
        .args(["--handler-threads", &handler_threads.to_string()])
        .args(["--max-connections", &(connections * 2 + 100).to_string()])
        .args(["--threads", &compare.threads.to_string()])
        .arg(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if mode == "reactor" || mode == "uring" {
        command.args(["--cores", "1"]);
    }
    if compare.tls {
        command.arg("--tls-self-signed");
    }
    if let Some(core) = core {
        // SAFETY: between fork and exec only sched_setaffinity runs, a plain system call on
        // memory owned by this closure.
        unsafe {
            command.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(core, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot run {}: {err}", compare.server.display()),
        )
    })?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let port = line
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected listening line {line:?}")))?;
    Ok((child, port))
}

/// A server's CPU time and memory at one edge of the measurement window.
struct Sample {
    at: Instant,
    cpu_seconds: f64,
    /// Taken at the end of the window only, while every connection is still open.
    pss_kib: Option<u64>,
}

impl Sample {
    /// Reads the server (and in fork mode its children) from /proc.
    fn take(pid: u32, fork: bool, end: bool) -> Sample {
        let tree = if fork { tree(pid) } else { vec![pid] };
        let cpu_seconds = cpu_seconds(&tree);
        // Stamped when the CPU reading is taken; the slower memory reading follows.
        let at = Instant::now();
        Sample {
            at,
            cpu_seconds,
            pss_kib: end.then(|| pss_kib(&tree)),
        }
    }
}

/// CPU (percent of one core) between the two samples, and memory at the end.
fn usage(samples: &[Sample]) -> (f64, u64) {
    let [first, last] = samples else {
        return (0.0, 0);
    };
    let seconds = last.at.duration_since(first.at).as_secs_f64();
    let cpu = if seconds > 0.0 {
        100.0 * (last.cpu_seconds - first.cpu_seconds).max(0.0) / seconds
    } else {
        0.0
    };
    (cpu, last.pss_kib.unwrap_or(0))
}

/// SIGTERM, then the contract's 5 s, then SIGKILL.
fn stop(server: &mut Child) {
    // SAFETY: kill only signals our own child.
    unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = server.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// A process and its descendants, living or exited but not yet reaped: the server's process
/// tree. Found by reading every process's parent from /proc, because the kernel's own list of
/// children (`/proc/PID/task/TID/children`) misses processes while they come and go, as the fork
/// mode's do by the thousand.
fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(parent) = stat_fields(id).and_then(|f| f.get(1).and_then(|p| p.parse().ok())) {
            parents.push((id, parent));
        }
    }
    let mut tree = vec![pid];
    let mut at = 0;
    while at < tree.len() {
        let parent = tree[at];
        tree.extend(
            parents
                .iter()
                .filter(|&&(_, p)| p == parent)
                .map(|&(id, _)| id),
        );
        at += 1;
    }
    tree
}

/// The fields of /proc/PID/stat after the command name (which is in parentheses and may contain
/// spaces): state is index 0, ppid 1, utime 11, stime 12, cutime 13, cstime 14.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// CPU time of the tree, in seconds. The server process's own `utime + stime` from its stat
/// (all its threads), plus what it has reaped (`cutime + cstime`: exact, adjusted at exit); for
/// each live child, its scheduler run time (`schedstat`, nanoseconds). A child's stat is
/// useless here: its times are sampled at timer ticks, and a thousand forked children each
/// running in slices shorter than a tick are charged almost nothing (seen: 0 ticks for 5 s of
/// CPU).
fn cpu_seconds(tree: &[u32]) -> f64 {
    let Some((&server, children)) = tree.split_first() else {
        return 0.0;
    };
    let ticks = stat_fields(server).map_or(0, |fields| {
        (11..=14)
            .filter_map(|n| fields.get(n).and_then(|v| v.parse::<u64>().ok()))
            .sum::<u64>()
    });
    let children_ns: u64 = children
        .iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ticks as f64 / ticks_per_sec() + children_ns as f64 / 1e9
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

/// Proportional set size of the tree, in KiB: a page shared by n processes counts 1/n in
/// each, so the sum is what they use together.
fn pss_kib(tree: &[u32]) -> u64 {
    tree.iter()
        .map(|pid| {
            fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
                .unwrap_or_default()
                .lines()
                .find_map(|line| line.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        })
        .sum()
}

fn markdown(cells: &[Cell], compare: &Compare) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Each cell: {} s of keep-alive load from one mio thread as fast as the server answers (closed \
         loop), then {} s of the same connections sharing {:.0} requests/s on a fixed schedule (latency \
         from when each request was due), each on a fresh server, {} time(s): the median run is shown \
         (closed loop: by requests/s; fixed rate: by p99). Server pinned to core 0, load to core 1. \
         `threaded` runs {} workers; `reactor` (and `uring`, its io_uring twin) one loop and {} \
         handler threads, `reactor-no-pool` one loop and every handler on it. Errors are mostly timeouts: requests unanswered for 2 s, or for the whole of a shorter run.\n",
        compare.duration.as_secs_f64(),
        compare.duration.as_secs_f64(),
        compare.rate,
        compare.runs,
        compare.threads,
        compare.handler_threads
    );
    for path in &compare.paths {
        let _ = writeln!(out, "### {} (`GET {path}`)\n", label(path));
        let _ = writeln!(
            out,
            "| mode | connections | requests/s | p99 | errors | p99 at {rate:.0}/s | errors at {rate:.0}/s | server CPU | server memory |",
            rate = compare.rate
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for cell in cells.iter().filter(|cell| &cell.path == path) {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {:.0}% | {:.1} MiB |",
                cell.mode,
                cell.connections,
                cell.report.requests_per_sec(),
                human_us(cell.report.percentile_us(99.0)),
                errors(&cell.report),
                human_us(cell.at_rate.percentile_us(99.0)),
                errors(&cell.at_rate),
                cell.cpu_percent,
                cell.memory_kib as f64 / 1024.0
            );
        }
        out.push('\n');
    }
    out
}

fn errors(report: &Report) -> String {
    let e = &report.errors;
    if e.total() == 0 {
        "0".to_string()
    } else {
        format!(
            "{} (timeout {}, read {}, connect {}, status {})",
            e.total(),
            e.timeout,
            e.read,
            e.connect,
            e.status
        )
    }
}

/// How a plot's y axis is scaled.
#[derive(Clone, Copy, PartialEq)]
enum Scale {
    Linear,
    /// For latencies, which span microseconds to seconds: a linear axis would flatten every
    /// line but the worst to zero.
    Log,
}

/// One line per mode: `value` against connections (log scale).
fn plot(
    cells: &[Cell],
    compare: &Compare,
    path: &str,
    file: &Path,
    title: &str,
    scale: Scale,
    value: impl Fn(&Cell) -> f64,
) -> io::Result<()> {
    // A log axis is drawn as log10 of the values on a linear axis, labelled with the values.
    let y = |cell: &Cell| match scale {
        Scale::Linear => value(cell),
        Scale::Log => value(cell).max(1e-3).log10(),
    };
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let points = |mode: &str| -> Vec<(f64, f64)> {
            cells
                .iter()
                .filter(|cell| cell.path == path && cell.mode == mode)
                .map(|cell| (cell.connections as f64, y(cell)))
                .collect()
        };
        let ys = || cells.iter().filter(|c| c.path == path).map(&y);
        let (min_y, max_y) = match scale {
            Scale::Linear => (0.0, ys().fold(0.0, f64::max) * 1.15 + 1e-9),
            Scale::Log => (
                ys().fold(f64::MAX, f64::min).floor(),
                ys().fold(f64::MIN, f64::max)
                    .ceil()
                    .max(ys().fold(f64::MAX, f64::min) + 1.0),
            ),
        };
        let min_x = compare
            .connections
            .iter()
            .copied()
            .min()
            .unwrap_or(1)
            .max(1) as f64;
        let max_x = compare
            .connections
            .iter()
            .copied()
            .max()
            .unwrap_or(1)
            .max(2) as f64;
        let backend = SVGBackend::new(file, (720, 420)).into_drawing_area();
        backend.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&backend)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((min_x * 0.8..max_x * 1.25).log_scale(), min_y..max_y)?;
        let label = |v: &f64| match scale {
            Scale::Linear => format!("{v}"),
            Scale::Log => format!("{}", 10f64.powf(*v)),
        };
        chart
            .configure_mesh()
            .x_desc("connections")
            .y_label_formatter(&label)
            .draw()?;
        const COLORS: [RGBColor; 5] = [RED, BLUE, GREEN, MAGENTA, CYAN];
        for (mode, &color) in compare.modes.iter().zip(COLORS.iter().cycle()) {
            let series = points(mode);
            chart
                .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))?
                .label(mode.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(
                series
                    .iter()
                    .map(|&point| Circle::new(point, 3, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        backend.present()?;
        Ok(())
    };
    draw().map_err(|err| io::Error::other(format!("plotting {}: {err}", file.display())))
}

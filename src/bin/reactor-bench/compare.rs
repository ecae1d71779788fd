//! `reactor-bench compare`: every mode of reactor-httpd, side by side, on this machine.
//!
//! For each mode and each number of connections it starts a fresh `reactor-httpd --demo --quiet`
//! on a free port (pinned to core 0 when there are two cores or more), drives `/hello` and a
//! 4 KiB static file from this process (pinned to core 1), and samples the server's CPU time and
//! RSS from /proc. The result is one table (stdout, and `results.md`) and SVG plots.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use plotters::prelude::*;

use crate::load::{self, Load, Target};
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
}

/// The two things each cell drives.
const PATHS: [(&str, &str); 2] = [("/hello", "hello"), ("/4k.bin", "4 KiB file")];

struct Cell {
    mode: String,
    connections: usize,
    path: &'static str,
    /// Closed loop: as fast as the server answers.
    report: Report,
    /// The same connections sharing a fixed total rate: latency without queueing.
    at_rate: Report,
    /// Server CPU over the closed-loop window, as a percentage of one core.
    cpu_percent: f64,
    /// Peak server memory during the closed-loop window, in KiB: proportional set size, so
    /// pages the fork mode's processes share are counted once.
    memory_kib: u64,
}

pub fn run(compare: &Compare) -> io::Result<()> {
    fs::create_dir_all(&compare.out)?;
    let root = compare.out.join("www");
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

    let total = compare.modes.len() * compare.connections.len() * PATHS.len();
    let started = Instant::now();
    let mut cells = Vec::new();
    for mode in &compare.modes {
        for &connections in &compare.connections {
            for (path, label) in PATHS {
                let done = cells.len();
                let left = if done == 0 {
                    (compare.duration.as_secs_f64() * 2.0 + 3.0) * total as f64
                } else {
                    started.elapsed().as_secs_f64() / done as f64 * (total - done) as f64
                };
                eprintln!(
                    "[{}/{total}] {mode}, {connections} connections, {label}: {} s (about {:.0} s left)",
                    done + 1,
                    compare.duration.as_secs(),
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
    for (path, label) in PATHS {
        let slug = if path == "/hello" { "hello" } else { "file" };
        plot(
            &cells,
            compare,
            path,
            &compare.out.join(format!("{slug}-requests.svg")),
            &format!("{label}: requests/s"),
            |cell| cell.report.requests_per_sec(),
        )?;
        plot(
            &cells,
            compare,
            path,
            &compare.out.join(format!("{slug}-p99.svg")),
            &format!("{label}: p99 latency (ms), as fast as it answers"),
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
            |cell| cell.at_rate.percentile_us(99.0) as f64 / 1000.0,
        )?;
    }
    eprintln!("wrote {}", compare.out.display());
    Ok(())
}

fn measure(
    compare: &Compare,
    root: &Path,
    mode: &str,
    connections: usize,
    path: &'static str,
    server_core: Option<usize>,
    load_core: Option<core_affinity::CoreId>,
) -> io::Result<Cell> {
    // A fresh server for each run, so one run's leftovers (connections still closing, a
    // thread pool's backlog) do not weigh on the next.
    let run = |rate: Option<f64>| -> io::Result<(Report, Vec<Sample>)> {
        let (mut server, port) = start_server(compare, root, mode, connections, server_core)?;
        let sampler = Sampler::start(server.id());
        let load = Load {
            target: Target {
                addr: ([127, 0, 0, 1], port).into(),
                host: format!("127.0.0.1:{port}"),
                path: path.to_string(),
            },
            connections,
            duration: compare.duration,
            pipeline: 1,
            threads: 1,
            rate,
            timeout: Duration::from_secs(2),
            pin: load_core,
        };
        let report = load::run(&load);
        let samples = sampler.stop();
        stop(&mut server);
        Ok((report?, samples))
    };
    let (report, samples) = run(None)?;
    let (at_rate, _) = run(Some(compare.rate))?;
    let (cpu_percent, memory_kib) = usage(&samples, report.window);
    Ok(Cell {
        mode: mode.to_string(),
        connections,
        path,
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
    command
        .args(["--demo", "--quiet", "--bind", "127.0.0.1:0", "--mode", mode])
        .args(["--max-connections", &(connections * 2 + 100).to_string()])
        .args(["--threads", &compare.threads.to_string()])
        .arg(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if mode == "reactor" {
        command.args(["--cores", "1"]);
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
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected listening line {line:?}")))?;
    Ok((child, port))
}

/// A server's CPU time and memory at one moment.
struct Sample {
    at: Instant,
    cpu_ticks: u64,
    /// Taken every few samples only: reading the smaps of a thousand forked children is not
    /// free, and it runs on the load's core.
    pss_kib: Option<u64>,
}

/// Samples a server from a thread of its own while the load runs, so that its figures cover
/// the measurement window only (not the warm-up, not the teardown).
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Vec<Sample>>,
}

impl Sampler {
    const EVERY: Duration = Duration::from_millis(250);
    const PSS_EVERY: usize = 4;

    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let tree = tree(pid);
                let cpu_ticks = cpu_ticks(&tree);
                // Stamped when the CPU reading is taken; the slower memory reading follows.
                let at = Instant::now();
                let pss_kib = (samples.len() % Self::PSS_EVERY == 0).then(|| pss_kib(&tree));
                samples.push(Sample {
                    at,
                    cpu_ticks,
                    pss_kib,
                });
                thread::sleep(Self::EVERY);
            }
            samples
        });
        Sampler { stop, thread }
    }

    fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// CPU (percent of one core) and peak memory (KiB) over the samples inside `window`.
fn usage(samples: &[Sample], window: Option<(Instant, Instant)>) -> (f64, u64) {
    let Some((start, end)) = window else {
        return (0.0, 0);
    };
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= start && s.at <= end)
        .collect();
    let (Some(first), Some(last)) = (inside.first(), inside.last()) else {
        return (0.0, 0);
    };
    let seconds = last.at.duration_since(first.at).as_secs_f64();
    let cpu = if seconds > 0.0 {
        100.0 * last.cpu_ticks.saturating_sub(first.cpu_ticks) as f64 / ticks_per_sec() / seconds
    } else {
        0.0
    };
    let memory = inside.iter().filter_map(|s| s.pss_kib).max().unwrap_or(0);
    (cpu, memory)
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
/// spaces): state is [0], ppid [1], utime [11], stime [12], cutime [13], cstime [14].
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// CPU time of the tree, in clock ticks: each process's own time plus what it has reaped.
fn cpu_ticks(tree: &[u32]) -> u64 {
    tree.iter()
        .filter_map(|&pid| stat_fields(pid))
        .map(|fields| {
            let field = |n: usize| {
                fields
                    .get(n)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            field(11) + field(12) + field(13) + field(14)
        })
        .sum()
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
         from when each request was due). Server pinned to core 0, load to core 1. `threaded` runs {} \
         workers; `reactor` one loop. Errors are mostly timeouts: requests unanswered for 2 s.\n",
        compare.duration.as_secs_f64(),
        compare.duration.as_secs_f64(),
        compare.rate,
        compare.threads
    );
    for (path, label) in PATHS {
        let _ = writeln!(out, "### {label} (`GET {path}`)\n");
        let _ = writeln!(
            out,
            "| mode | connections | requests/s | p99 | errors | p99 at {rate:.0}/s | errors at {rate:.0}/s | server CPU | server memory |",
            rate = compare.rate
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for cell in cells.iter().filter(|cell| cell.path == path) {
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

/// One line per mode: `value` against connections (log scale).
fn plot(
    cells: &[Cell],
    compare: &Compare,
    path: &str,
    file: &Path,
    title: &str,
    value: impl Fn(&Cell) -> f64,
) -> io::Result<()> {
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let points = |mode: &str| -> Vec<(f64, f64)> {
            cells
                .iter()
                .filter(|cell| cell.path == path && cell.mode == mode)
                .map(|cell| (cell.connections as f64, value(cell)))
                .collect()
        };
        let max_y = cells
            .iter()
            .filter(|c| c.path == path)
            .map(&value)
            .fold(0.0, f64::max)
            * 1.15
            + 1e-9;
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
            .build_cartesian_2d((min_x * 0.8..max_x * 1.25).log_scale(), 0.0..max_y)?;
        chart.configure_mesh().x_desc("connections").draw()?;
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

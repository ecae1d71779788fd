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
}

/// The two things each cell drives.
const PATHS: [(&str, &str); 2] = [("/hello", "hello"), ("/4k.bin", "4 KiB file")];

struct Cell {
    mode: String,
    connections: usize,
    path: &'static str,
    report: Report,
    /// Server CPU over the run, as a percentage of one core.
    cpu_percent: f64,
    /// Server resident memory at the end of the run, in KiB (all its processes).
    rss_kib: u64,
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
                    compare.duration.as_secs_f64() * 1.2 * total as f64
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
            &format!("{label}: p99 latency (ms)"),
            |cell| cell.report.percentile_us(99.0) as f64 / 1000.0,
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
    let (mut server, port) = start_server(compare, root, mode, connections, server_core)?;
    let pid = server.id();
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
        rate: None,
        timeout: Duration::from_secs(2),
        pin: load_core,
    };
    let cpu_before = cpu_ticks(pid);
    let started = Instant::now();
    let report = load::run(&load)?;
    let cpu = (cpu_ticks(pid) - cpu_before) as f64 / ticks_per_sec();
    let rss_kib = rss_kib(pid);
    stop(&mut server);
    Ok(Cell {
        mode: mode.to_string(),
        connections,
        path,
        report,
        cpu_percent: 100.0 * cpu / started.elapsed().as_secs_f64(),
        rss_kib,
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

/// utime + stime of a process and its reaped children, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime, stime, cutime, cstime are fields 14-17 of stat(5); here 11-14 after the name.
    field(11) + field(12) + field(13) + field(14)
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

/// Resident memory of a process and its children (the fork mode's), in KiB.
fn rss_kib(pid: u32) -> u64 {
    let own = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let children =
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    own + children
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .map(rss_kib)
        .sum::<u64>()
}

fn markdown(cells: &[Cell], compare: &Compare) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Each cell: {} s of keep-alive load from one mio thread; server pinned to core 0, load to core 1.\n\
         `threaded` runs {} workers; `reactor` one loop.\n",
        compare.duration.as_secs(),
        compare.threads
    );
    for (path, label) in PATHS {
        let _ = writeln!(out, "### {label} (`GET {path}`)\n");
        let _ = writeln!(
            out,
            "| mode | connections | requests/s | p99 | errors | server CPU | server RSS |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for cell in cells.iter().filter(|cell| cell.path == path) {
            let errors = &cell.report.errors;
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {:.0}% | {:.1} MiB |",
                cell.mode,
                cell.connections,
                cell.report.requests_per_sec(),
                human_us(cell.report.percentile_us(99.0)),
                if errors.total() == 0 {
                    "0".to_string()
                } else {
                    format!(
                        "{} (timeout {}, read {}, connect {})",
                        errors.total(),
                        errors.timeout,
                        errors.read,
                        errors.connect
                    )
                },
                cell.cpu_percent,
                cell.rss_kib as f64 / 1024.0
            );
        }
        out.push('\n');
    }
    out
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

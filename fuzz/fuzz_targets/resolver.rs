//! The static-file path resolver: whatever the URL path, what it opens is inside ROOT, checked
//! on the opened descriptor itself (via /proc/self/fd), so no symlink or `..` trick can pass; and
//! `Root::may_exist` says "maybe" of everything that opens.
#![no_main]

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use reactor_httpd::app::static_files::resolve::{Opened, Root, decode_path, trap_tree};

/// Where this process lays its trap tree, under the temporary directory.
fn base() -> PathBuf {
    std::env::temp_dir().join(format!("resolver-fuzz-{}", std::process::id()))
}

/// Removes the trap tree when the fuzzer exits normally (at `-max_total_time` or `-runs`). A
/// crash leaves it, for the reproduction.
extern "C" fn remove_tree() {
    let _ = std::fs::remove_dir_all(base());
}

/// A ROOT laid with traps (see `trap_tree`), built once per fuzzing process.
fn root() -> &'static (PathBuf, Root) {
    static ROOT: OnceLock<(PathBuf, Root)> = OnceLock::new();
    ROOT.get_or_init(|| {
        let opened = Root::new(&trap_tree(&base()).unwrap()).unwrap();
        // SAFETY: registers a plain function, which only removes files.
        unsafe { libc::atexit(remove_tree) };
        (opened.path().to_path_buf(), opened)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let (canonical, root) = root();
    let url = format!("/{path}");
    if let Ok(decoded) = decode_path(&url)
        && let Ok(Opened::File(file, _) | Opened::Dir(file, _)) = root.open(decoded.relative())
    {
        let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
        assert!(
            real.starts_with(canonical),
            "{url:?} opened {}",
            real.display()
        );
        // The stat asked before a sibling's open never says "not there" of what opens.
        assert!(root.may_exist(decoded.relative()), "{url:?}");
    }
});

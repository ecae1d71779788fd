//! The static-file path resolver: whatever the URL path, what it opens is inside ROOT, checked
//! on the opened descriptor itself (via /proc/self/fd), so no symlink or `..` trick can pass.
#![no_main]

use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use reactor_httpd::app::static_files::resolve::{Opened, Root, decode_path};

/// A ROOT with the traps the integration tests use: a secret beside it, links out of it (to the
/// secret, to `..`, to /etc), a link inside it, and a link loop.
fn root() -> &'static (PathBuf, Root) {
    static ROOT: OnceLock<(PathBuf, Root)> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("resolver-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("dir/sub")).unwrap();
        std::fs::write(base.join("secret.txt"), "outside").unwrap();
        std::fs::write(root.join("file.txt"), "inside").unwrap();
        std::fs::write(root.join(".hidden"), "hidden").unwrap();
        std::fs::write(root.join("dir/sub/deep.txt"), "deep").unwrap();
        symlink(base.join("secret.txt"), root.join("out-link")).unwrap();
        symlink("../..", root.join("dir/up-link")).unwrap();
        symlink("/etc", root.join("etc-link")).unwrap();
        symlink("dir/sub/deep.txt", root.join("in-link")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let opened = Root::new(&root).unwrap();
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
        && let Ok(Opened::File(file, _) | Opened::Dir(file, _)) = root.open(&decoded.relative())
    {
        let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
        assert!(real.starts_with(canonical), "{url:?} opened {}", real.display());
    }
});

//! Shared by the end-to-end tests: where the real binaries are.

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/` of this test binary, where cargo put the binaries.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    if !path.exists() {
        // `cargo test -p vitrine-e2e` alone: build what we run.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile = if dir.ends_with("release") {
            vec!["--release"]
        } else {
            vec![]
        };
        let ok = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "vitrine-train",
                "-p",
                "vitrine-quantize",
                "-p",
                "vitrine-server",
                "-p",
                "vitrine-loadtest",
            ])
            .args(profile)
            .status()
            .unwrap();
        assert!(ok.success(), "building the binaries failed");
    }
    path
}

//! Build script: records the git commit the binary is built from as `BUILD_GIT_COMMIT`
//! for `telemetryd --version`. The `BUILD_GIT_COMMIT` environment variable wins (Docker
//! and other builds without `.git`); otherwise `git rev-parse --short HEAD`; otherwise `unknown`.
//! Reruns only when that variable, `.git/HEAD` or the branch ref it points at change.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BUILD_GIT_COMMIT");
    let commit = match std::env::var("BUILD_GIT_COMMIT") {
        Ok(given) if !given.trim().is_empty() => given.trim().to_string(),
        _ => {
            watch_git_head();
            git_commit().unwrap_or_else(|| "unknown".to_string())
        }
    };
    println!("cargo:rustc-env=BUILD_GIT_COMMIT={commit}");
}

fn git_commit() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_string();
    if commit.is_empty() || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(commit)
}

/// Asks cargo to rerun when HEAD moves: `.git/HEAD` changes on checkout, the ref file (or
/// `packed-refs`) on commit.
fn watch_git_head() {
    let git_dir = Path::new(".git");
    let head = git_dir.join("HEAD");
    if !head.is_file() {
        return;
    }
    println!("cargo:rerun-if-changed={}", head.display());
    if let Ok(text) = std::fs::read_to_string(&head) {
        if let Some(reference) = text.trim().strip_prefix("ref: ") {
            let ref_file = git_dir.join(reference);
            if ref_file.is_file() {
                println!("cargo:rerun-if-changed={}", ref_file.display());
            }
        }
    }
    let packed = git_dir.join("packed-refs");
    if packed.is_file() {
        println!("cargo:rerun-if-changed={}", packed.display());
    }
}

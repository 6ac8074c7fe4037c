//! Running the official SDKs' senders against a test server: Python scripts with the venv's
//! python (`tests/otel/.venv`), JS scripts with node and `tests/otel/node_modules`, both
//! installed by `scripts/test.sh`. A sender prints a JSON summary of what it sent and of the
//! answers it got, and exits non-zero when its SDK reported a failure; without the SDKs the
//! tests fail with the commands that install them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::repo_path;

/// How long one sender may take (a second or two; SDKs retry failed requests).
pub const SENDER_TIMEOUT: Duration = Duration::from_secs(120);

pub const INSTALL_HINT: &str = "install the SDKs the way scripts/test.sh does: \
    `python3 -m venv tests/otel/.venv && tests/otel/.venv/bin/pip install -r tests/otel/requirements.txt` \
    and `(cd tests/otel && npm ci)`";

/// Where the senders and the SDKs they import live.
pub fn sdk_dir() -> std::path::PathBuf {
    repo_path("tests/otel")
}

/// The venv's python running `script`, once `import {modules}` works there.
pub fn python(modules: &str, script: &str) -> Result<Command, String> {
    let python = sdk_dir().join(".venv/bin/python");
    if !python.exists() {
        return Err(format!(
            "{} does not exist: the Python SDKs are not installed; {INSTALL_HINT}",
            python.display()
        ));
    }
    let check = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .map_err(|e| format!("cannot run {}: {e}; {INSTALL_HINT}", python.display()))?;
    if !check.status.success() {
        return Err(format!(
            "`import {modules}` fails in {}: {}; {INSTALL_HINT}",
            python.display(),
            String::from_utf8_lossy(&check.stderr).trim()
        ));
    }
    let mut command = Command::new(python);
    command.env("PYTHONDONTWRITEBYTECODE", "1");
    command.arg(sdk_dir().join(script));
    Ok(command)
}

/// node running `script`, once every dependency of `tests/otel/package.json` is installed.
pub fn node(script: &str) -> Result<Command, String> {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| {
            format!(
                "node is not installed ({e}): install Node.js 20 or later and npm; {INSTALL_HINT}"
            )
        })?;
    if !version.status.success() {
        return Err(format!("`node --version` failed; {INSTALL_HINT}"));
    }
    let dir = sdk_dir();
    let package = std::fs::read_to_string(dir.join("package.json"))
        .map_err(|e| format!("tests/otel/package.json: {e}"))?;
    let package: Value = serde_json::from_str(&package).expect("package.json is JSON");
    let missing: Vec<&str> = package["dependencies"]
        .as_object()
        .expect("package.json has dependencies")
        .keys()
        .map(String::as_str)
        .filter(|name| {
            !dir.join("node_modules")
                .join(name)
                .join("package.json")
                .exists()
        })
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the JS SDKs are not installed in tests/otel/node_modules (missing {missing:?}); {INSTALL_HINT}"
        ));
    }
    let mut command = Command::new("node");
    command.arg(dir.join(script));
    Ok(command)
}

/// What a sender printed, and how it ended.
pub struct Sent {
    pub summary: Value,
    pub success: bool,
    /// Exit status, stdout and stderr, for failure messages.
    pub output: String,
}

/// Runs a sender with `args` in the SDK folder within [`SENDER_TIMEOUT`], and reads its summary.
pub fn run(mut command: Command, args: &[&str], name: &str) -> Sent {
    let out = tempfile::tempdir().expect("temp dir");
    let stdout = out.path().join("stdout");
    let stderr = out.path().join("stderr");
    let mut child = command
        .args(args)
        .current_dir(sdk_dir())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the {name} sender: {e}"));
    let deadline = Instant::now() + SENDER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("sender status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the {name} sender did not finish within {SENDER_TIMEOUT:?}: {}",
                read(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let printed = read(&stdout);
    let output = format!(
        "exit: {status}\nstdout:\n{printed}\nstderr:\n{}",
        read(&stderr)
    );
    let summary = serde_json::from_str(&printed)
        .unwrap_or_else(|e| panic!("the {name} sender printed no JSON summary ({e}):\n{output}"));
    Sent {
        summary,
        success: status.success(),
        output,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

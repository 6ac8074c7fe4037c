//! Operator commands beside `serve`: `healthcheck` (probe `/readyz`, exit 0/1), `sink status`
//! (each export sink's position, lag, deliveries and last error, from `/readyz`), `backup` and
//! `restore` of the store, shell `completions` and the `man` page generated from the CLI
//! definition.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::store::backup::{self, BackupError, BackupManifest};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error(
        "no admin token: pass --token-file FILE (a file holding an admin token) or keep the bootstrap token in {0}"
    )]
    NoToken(PathBuf),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(&'static str),
}

#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// Config file: probe http://LISTEN/readyz (an unspecified listen address means loopback).
    #[arg(long, short, required_unless_present = "url")]
    pub config: Option<PathBuf>,
    /// URL to probe instead, e.g. http://127.0.0.1:8080/readyz (`/readyz` is added to a bare
    /// http://HOST:PORT).
    #[arg(long, conflicts_with = "config")]
    pub url: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// Config file of the server whose store is copied.
    #[arg(long, short)]
    pub config: PathBuf,
    /// New or empty directory for the backup. With a running server it is written by the server
    /// process, so it must lie below the server's backup directory (`server.backup_dir`, default
    /// DATA_DIR/backups) and be writable by the server's user.
    #[arg(long)]
    pub out: PathBuf,
    /// File holding an admin token (default: the bootstrap token DATA_DIR/admin-token).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Base URL of the running server (default: http://LISTEN from the config).
    #[arg(long)]
    pub url: Option<String>,
    /// Seconds to wait for a running server to finish the copy.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// Config file of the (stopped) server whose data dir receives the backup.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Backup directory written by `telemetryd backup`.
    #[arg(long)]
    pub from: PathBuf,
    /// Replace the store and search index of a non-empty data dir.
    #[arg(long)]
    pub force: bool,
}

/// Probes readiness once; `Ok` only on `200`.
pub fn healthcheck(args: &HealthcheckArgs) -> Result<(), OpsError> {
    let (url, _) = readyz(args)?;
    println!("ready: {url}");
    Ok(())
}

/// The `/readyz` answer of the server `args` names: its URL and body, or the error.
fn readyz(args: &HealthcheckArgs) -> Result<(String, Vec<u8>), OpsError> {
    let url = match (&args.url, &args.config) {
        (Some(url), _) => with_default_path(url, "/readyz"),
        (None, Some(config)) => format!("{}/readyz", server_url(&Config::load(config)?)?),
        (None, None) => return Err(OpsError::Usage("give --config FILE or --url URL")),
    };
    let timeout = Duration::from_secs_f64(args.timeout.clamp(0.1, 300.0));
    let (status, body) = http(HttpRequest {
        method: awc::http::Method::GET,
        url: &url,
        token: None,
        json: None,
        timeout,
    })?;
    if status == 200 {
        Ok((url, body))
    } else {
        Err(OpsError::Status {
            url,
            status,
            body: String::from_utf8_lossy(&body).trim().to_string(),
        })
    }
}

/// `telemetryd sink status`: prints each export sink of the running server (from `/readyz`)
/// with its position, lag, deliveries, skipped positions, pending erasures, metric points lag
/// and last error.
pub fn sink_status(args: &HealthcheckArgs) -> Result<(), OpsError> {
    let (url, body) = readyz(args)?;
    let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| OpsError::Http {
        url: url.clone(),
        message: format!("unexpected answer: {e}"),
    })?;
    let sinks = answer["sinks"].as_array().cloned().unwrap_or_default();
    if sinks.is_empty() {
        println!("no sinks configured ([[sinks]] in the config)");
        return Ok(());
    }
    println!(
        "{:<16} {:<10} {:>10} {:>10} {:>8} {:>10} {:>8} {:>8} {:>8} {:>10}  last error",
        "sink",
        "kind",
        "position",
        "lag",
        "lag s",
        "delivered",
        "per s",
        "skipped",
        "erasures",
        "points lag"
    );
    for sink in &sinks {
        let n = |key: &str| sink[key].as_u64().unwrap_or(0);
        let f = |key: &str| sink[key].as_f64().unwrap_or(0.0);
        println!(
            "{:<16} {:<10} {:>10} {:>10} {:>8.1} {:>10} {:>8.1} {:>8} {:>8} {:>10}  {}",
            sink["name"].as_str().unwrap_or("?"),
            sink["kind"].as_str().unwrap_or("?"),
            n("position"),
            n("lag_events"),
            f("lag_seconds"),
            n("delivered_total"),
            f("delivered_per_second"),
            n("skipped_total"),
            n("pending_erasures"),
            if sink["points_copying"] == true {
                "copying".to_string()
            } else {
                n("points_lag").to_string()
            },
            sink["last_error"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}

/// Backs up the store of the server configured in `args.config`: through the running server's
/// admin endpoint when the store is open, or directly from the file when no server runs.
pub fn backup(args: &BackupArgs) -> Result<(), OpsError> {
    let config = Config::load(&args.config)?;
    let out = std::path::absolute(&args.out).map_err(|source| OpsError::Io {
        context: format!("cannot resolve {}", args.out.display()),
        source,
    })?;
    let data_dir = &config.server.data_dir;
    let (manifest, how) = if backup::store_in_use(data_dir)? {
        let base = match &args.url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => server_url(&config)?,
        };
        let token = read_token(args.token_file.as_deref(), data_dir)?;
        let url = format!("{base}/api/v1/admin/backup");
        let (status, body) = http(HttpRequest {
            method: awc::http::Method::POST,
            url: &url,
            token: Some(&token),
            json: Some(serde_json::json!({ "dir": out })),
            timeout: Duration::from_secs(args.timeout.max(1)),
        })?;
        if status != 200 {
            return Err(OpsError::Status {
                url,
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        let answer: BackupAnswer = serde_json::from_slice(&body).map_err(|e| OpsError::Http {
            url: url.clone(),
            message: format!("unexpected answer: {e}"),
        })?;
        (answer.manifest, format!("by the running server at {base}"))
    } else {
        (
            backup::backup_offline(data_dir, &out)?,
            "from the store file (no server has it open)".to_string(),
        )
    };
    println!(
        "backup written to {}: {} events, next_seq {}, {} bytes, {how}",
        out.display(),
        manifest.events,
        manifest.next_seq,
        manifest.store_bytes
    );
    Ok(())
}

#[derive(serde::Deserialize)]
struct BackupAnswer {
    manifest: BackupManifest,
}

/// Puts a backup into the data dir of a stopped server.
pub fn restore(args: &RestoreArgs) -> Result<(), OpsError> {
    let config = Config::load(&args.config)?;
    let data_dir = &config.server.data_dir;
    let manifest = backup::restore_into(&args.from, data_dir, args.force)?;
    println!(
        "restored {} into {}: {} events, next_seq {} (backup of {}, telemetryd {}); the search index is rebuilt from the store when telemetryd starts",
        args.from.display(),
        data_dir.display(),
        manifest.events,
        manifest.next_seq,
        manifest.created_at,
        manifest.telemetryd_version
    );
    Ok(())
}

/// Prints the completion script for `shell`.
pub fn completions(
    mut command: clap::Command,
    shell: clap_complete::Shell,
) -> Result<(), OpsError> {
    let name = command.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut out);
    write_stdout(&out)
}

/// Prints the man page (roff) for the command line.
pub fn man(command: clap::Command) -> Result<(), OpsError> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut out)
        .map_err(|source| OpsError::Io {
            context: "cannot render the man page".into(),
            source,
        })?;
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> Result<(), OpsError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|_| stdout.flush())
        .map_err(|source| OpsError::Io {
            context: "cannot write to stdout".into(),
            source,
        })
}

/// `http://HOST:PORT` of the configured listener; an unspecified address (`0.0.0.0`, `::`)
/// becomes the loopback address of its family.
pub fn server_url(config: &Config) -> Result<String, OpsError> {
    let mut addr = config.listen_addr()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(format!("http://{addr}"))
}

/// Adds `path` to a URL that has none (`http://host:port` → `http://host:port/readyz`).
fn with_default_path(url: &str, path: &str) -> String {
    let after_scheme = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    if after_scheme.contains('/') {
        url.to_string()
    } else {
        format!("{url}{path}")
    }
}

fn read_token(file: Option<&Path>, data_dir: &Path) -> Result<String, OpsError> {
    let bootstrap = data_dir.join(crate::http::auth::BOOTSTRAP_TOKEN_FILE);
    let path = file.unwrap_or(&bootstrap);
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
        Ok(_) => Err(OpsError::NoToken(path.to_path_buf())),
        Err(e) if file.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
            Err(OpsError::NoToken(bootstrap))
        }
        Err(source) => Err(OpsError::Io {
            context: format!("cannot read the token file {}", path.display()),
            source,
        }),
    }
}

struct HttpRequest<'a> {
    method: awc::http::Method,
    url: &'a str,
    token: Option<&'a str>,
    json: Option<serde_json::Value>,
    timeout: Duration,
}

/// One HTTP request with awc on a throwaway runtime: status and body.
fn http(request: HttpRequest<'_>) -> Result<(u16, Vec<u8>), OpsError> {
    let url = request.url.to_string();
    let failed = |message: String| OpsError::Http {
        url: url.clone(),
        message,
    };
    actix_web::rt::System::new().block_on(async {
        let client = awc::Client::builder().timeout(request.timeout).finish();
        let mut builder = client.request(request.method, request.url);
        if let Some(token) = request.token {
            builder = builder.bearer_auth(token);
        }
        let sent = match &request.json {
            Some(json) => builder.send_json(json).await,
            None => builder.send().await,
        };
        let mut response = sent.map_err(|e| failed(e.to_string()))?;
        let body = response
            .body()
            .limit(1 << 20)
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok((response.status().as_u16(), body.to_vec()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_the_commit() {
        use crate::{GIT_COMMIT, VERSION};
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(VERSION.contains(&format!("(commit {GIT_COMMIT})")));
        assert!(!GIT_COMMIT.is_empty());
    }

    #[test]
    fn default_path_is_added_to_a_bare_url() {
        assert_eq!(
            with_default_path("http://127.0.0.1:8080", "/readyz"),
            "http://127.0.0.1:8080/readyz"
        );
        assert_eq!(
            with_default_path("http://127.0.0.1:8080/healthz", "/readyz"),
            "http://127.0.0.1:8080/healthz"
        );
    }

    #[test]
    fn unspecified_listen_address_is_probed_on_loopback() {
        let mut config = Config::from_toml("[[products]]\nid = \"app\"\n").unwrap();
        config.server.listen = "0.0.0.0:9000".into();
        assert_eq!(server_url(&config).unwrap(), "http://127.0.0.1:9000");
        config.server.listen = "[::]:9000".into();
        assert_eq!(server_url(&config).unwrap(), "http://[::1]:9000");
    }
}

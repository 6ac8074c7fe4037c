//! The `telemetryd` command line: run the appliance (the default), validate a config, hash an
//! admin token, generate load, and the operator commands of `telemetryd::ops` (health check,
//! backup, restore, completions, man page).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use telemetryd::config::Config;

/// mimalloc: the ingest path allocates many small, short-lived values on several threads, where
/// it spends about half the CPU glibc's allocator does. Built without transparent huge pages
/// (`no_thp`): with them the kernel spent ~6 % of the ingest CPU zeroing and compacting 2 MiB
/// pages for memory mimalloc had just released and touched again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "telemetryd",
    version = telemetryd::VERSION,
    about = "Self-hosted client-telemetry appliance: ingest, store, search, clusters, policies, admin UI.",
    after_help = "Run the appliance with `telemetryd --config telemetry.toml`."
)]
struct Cli {
    /// Config file (runs the appliance when no subcommand is given).
    #[arg(long, short, global = false)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance (the default).
    Serve {
        /// Config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and print what it configures; exits 1 naming the key on error.
    CheckConfig {
        /// Config file.
        file: PathBuf,
    },
    /// Read an admin token from stdin and print the `sha256:` hash to put in [[admin.tokens]].
    HashToken {
        /// Generate a new random token, print it on stderr and its hash on stdout.
        #[arg(long)]
        generate: bool,
    },
    /// Send realistic load to a running server and report events/s and ack latency.
    Bench(Box<telemetryd::bench::BenchArgs>),
    /// Rebuild the search index from the store, from scratch (the server must be stopped).
    Reindex {
        /// Config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Fill a data dir with a realistic week of demo traffic (the server must be stopped).
    Demo(telemetryd::demo::DemoArgs),
    /// Probe /readyz of a running server: exit 0 when it answers 200, 1 otherwise.
    Healthcheck(telemetryd::ops::HealthcheckArgs),
    /// Export sinks of a running server.
    Sink {
        #[command(subcommand)]
        command: SinkCommand,
    },
    /// Copy the store consistently into a new directory, while the server runs (or not).
    Backup(telemetryd::ops::BackupArgs),
    /// Put a backup into the data dir of a stopped server (the search index is rebuilt on start).
    Restore(telemetryd::ops::RestoreArgs),
    /// Print a shell completion script.
    Completions {
        /// Shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

#[derive(Subcommand)]
enum SinkCommand {
    /// Each sink's position, lag (events and seconds), deliveries, skipped positions, pending
    /// erasures and last error, read from the server's /readyz.
    Status(telemetryd::ops::HealthcheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match (cli.command, cli.config) {
        (Some(Command::Serve { config }), _) | (None, Some(config)) => serve(&config),
        (Some(Command::CheckConfig { file }), _) => check_config(&file),
        (Some(Command::HashToken { generate }), _) => hash_token(generate),
        (Some(Command::Demo(args)), _) => telemetryd::demo::run(&args),
        (Some(Command::Reindex { config }), _) => reindex(&config),
        (Some(Command::Bench(args)), _) => telemetryd::bench::run(*args)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        (Some(Command::Healthcheck(args)), _) => {
            telemetryd::ops::healthcheck(&args).map_err(|e| e.to_string())
        }
        (
            Some(Command::Sink {
                command: SinkCommand::Status(args),
            }),
            _,
        ) => telemetryd::ops::sink_status(&args).map_err(|e| e.to_string()),
        (Some(Command::Backup(args)), _) => {
            telemetryd::ops::backup(&args).map_err(|e| e.to_string())
        }
        (Some(Command::Restore(args)), _) => {
            telemetryd::ops::restore(&args).map_err(|e| e.to_string())
        }
        (Some(Command::Completions { shell }), _) => {
            telemetryd::ops::completions(Cli::command(), shell).map_err(|e| e.to_string())
        }
        (Some(Command::Man), _) => telemetryd::ops::man(Cli::command()).map_err(|e| e.to_string()),
        (None, None) => {
            Err("no config given: run `telemetryd --config telemetry.toml` (see --help)".into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn serve(path: &Path) -> Result<(), String> {
    init_logging();
    let config = Config::load(path).map_err(|e| e.to_string())?;
    tracing::info!(config = %path.display(), version = telemetryd::VERSION, "telemetryd starting");
    let listen = config.listen_addr().map_err(|e| e.to_string())?;
    actix_web::rt::System::new().block_on(async move {
        let state = telemetryd::AppState::open(config).map_err(|e| e.to_string())?;
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        telemetryd::serve(state, listener, shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn reindex(path: &Path) -> Result<(), String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let data_dir = &config.server.data_dir;
    let store = telemetryd::store::Store::open(data_dir)
        .map_err(|e| format!("{e} (stop the server first: the store is open)"))?;
    let options = telemetryd::search::SearchOptions {
        writer_memory_bytes: config.search.writer_memory_mb * 1024 * 1024,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let mut last_line = std::time::Instant::now();
    let mut progress = |done: u64, total: u64| {
        if last_line.elapsed().as_secs() >= 1 || done == total {
            eprintln!(
                "reindex: {done} / {total} events ({:.0}%)",
                done as f64 * 100.0 / total.max(1) as f64
            );
            last_line = std::time::Instant::now();
        }
    };
    let indexed = telemetryd::search::rebuild(
        &data_dir.join(telemetryd::INDEX_DIR),
        &store,
        &options,
        &mut progress,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "reindex: {indexed} events indexed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn check_config(path: &Path) -> Result<(), String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    println!("config {} is valid", path.display());
    println!("  listen:    {}", config.server.listen);
    println!("  data dir:  {}", config.server.data_dir.display());
    match &config.geo.database {
        Some(db) => println!("  geo:       {}", db.display()),
        None => println!("  geo:       off (no database configured)"),
    }
    println!(
        "  admin:     {}",
        match config.admin.tokens.len() {
            0 => "no tokens (a bootstrap token is generated into the data dir)".to_string(),
            n => format!("{n} token(s)"),
        }
    );
    for p in &config.products {
        // The other services' SDK keys that select it: `, 2 posthog_tokens`.
        let compat: String = p
            .compat
            .by_format()
            .iter()
            .filter(|(_, keys)| !keys.is_empty())
            .map(|(format, keys)| format!(", {} {}", keys.len(), format.config_key()))
            .collect();
        println!(
            "  product:   {} ({}), schema {:?} with {} events, retention {} days, {}{compat}",
            p.id,
            p.display_name(),
            p.schema.mode,
            p.schema.events.len(),
            p.retention_days,
            if p.ingest_keys.is_empty() {
                "anonymous ingest"
            } else {
                "ingest key required"
            }
        );
    }
    Ok(())
}

fn hash_token(generate: bool) -> Result<(), String> {
    let token = if generate {
        let token = telemetryd::http::auth::generate_token();
        eprintln!("token: {token}");
        token
    } else {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| e.to_string())?;
        let token = input.trim().to_string();
        if token.is_empty() {
            return Err(
                "no token on stdin: `echo -n TOKEN | telemetryd hash-token`, or use --generate"
                    .into(),
            );
        }
        token
    };
    println!("{}", telemetryd::hash::hash_token(&token));
    Ok(())
}

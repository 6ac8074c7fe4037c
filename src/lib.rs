//! telemetryd as a library: `AppState::open` builds the appliance from a `Config` (store,
//! writer thread, ingest rules, geo, tokens), and `serve` runs the HTTP server on a listener the
//! caller owns until the caller's shutdown future resolves. `main.rs` and the tests both use it.

pub mod bench;
pub mod config;
pub mod error;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod net;
pub mod ops;
pub mod store;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};

use crate::config::{Config, ConfigError};
use crate::error::StoreError;
use crate::http::auth::TokenSet;
use crate::ingest::geo::GeoDb;
use crate::ingest::Ingest;
use crate::metrics::{Gauges, Metrics};
use crate::store::writer::Writer;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("geo database {path}: {message}")]
    Geo { path: PathBuf, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// Everything the handlers share.
pub struct AppState {
    pub config: Config,
    pub ingest: Ingest,
    pub store: Store,
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    pub tokens: TokenSet,
}

impl AppState {
    /// Opens the store, starts the writer and compiles the ingest rules. Logs what was loaded.
    pub fn open(config: Config) -> Result<web::Data<AppState>, StartError> {
        let data_dir = config.server.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| StartError::Io {
            context: format!("cannot create data dir {}", data_dir.display()),
            source,
        })?;
        tracing::info!(data_dir = %data_dir.display(), "data dir");
        let geo = open_geo(&config)?;
        let ingest = Ingest::new(&config, geo)?;
        for product in &config.products {
            tracing::info!(
                product = %product.id,
                schema = ?product.schema.mode,
                ingest_key = !product.ingest_keys.is_empty(),
                retention_days = product.retention_days,
                "product"
            );
        }
        let (tokens, bootstrap) = TokenSet::with_bootstrap(&config.admin.tokens, &data_dir)
            .map_err(|source| StartError::Io {
                context: "cannot write the bootstrap admin token".into(),
                source,
            })?;
        match bootstrap {
            Some(path) => tracing::warn!(
                path = %path.display(),
                "no admin tokens in the config: an admin token was generated into this file; add your own under [[admin.tokens]]"
            ),
            None => tracing::info!(tokens = config.admin.tokens.len(), "admin tokens"),
        }
        let store = Store::open(&data_dir)?;
        tracing::info!(path = %store.path().display(), events = store.event_count()?, "store opened");
        let metrics = Arc::new(Metrics::default());
        let writer = Writer::start(
            store.clone(),
            config.server.writer_queue,
            metrics.clone(),
            Box::new(|_| {}),
        )?;
        Ok(web::Data::new(AppState {
            config,
            ingest,
            store,
            writer,
            metrics,
            tokens,
        }))
    }

    pub fn gauges(&self) -> Gauges {
        Gauges {
            writer_queue_depth: self.writer.queue_depth(),
            writer_queue_capacity: self.writer.queue_capacity(),
            store_events: self.store.event_count().unwrap_or(0),
            store_size_bytes: self.store.file_size(),
        }
    }
}

fn open_geo(config: &Config) -> Result<Option<GeoDb>, StartError> {
    let Some(path) = &config.geo.database else {
        tracing::info!("geo: off (no [geo] database configured); events get no country or region");
        return Ok(None);
    };
    let db = GeoDb::open(path).map_err(|e| StartError::Geo {
        path: path.clone(),
        message: e.to_string(),
    })?;
    tracing::info!(path = %path.display(), database_type = %db.database_type, "geo database loaded");
    Ok(Some(db))
}

/// Serves HTTP on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish, and closes the store writer after its last commit.
pub async fn serve(
    state: web::Data<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + 'static,
) -> std::io::Result<()> {
    let workers = match state.config.server.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let address = listener.local_addr()?;
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .configure(http::configure)
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(30)
    .listen(listener)?
    .run();
    tracing::info!(address = %address, workers, "listening");
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        handle.stop(true).await;
    });
    server.await?;
    state.writer.close();
    tracing::info!("store writer closed; bye");
    Ok(())
}

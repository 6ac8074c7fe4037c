//! telemetryd as a library: `AppState::open` builds the appliance from a `Config` (store, search
//! index, writer thread, ingest rules, geo, tokens), and `serve` runs the HTTP server and the
//! scheduled jobs on a listener the caller owns until the caller's shutdown future resolves.
//! `main.rs` and the tests both use it.

pub mod bench;
pub mod clusters;
pub mod config;
pub mod demo;
pub mod error;
pub mod fields;
pub mod hash;
pub mod history;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod net;
pub mod ops;
pub mod policies;
pub mod privacy;
pub mod retention;
pub mod search;
pub mod store;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};

use crate::clusters::service::Clusters;
use crate::clusters::{Dispatcher, DispatcherConfig};
use crate::config::{Config, ConfigError};
use crate::error::StoreError;
use crate::http::auth::TokenSet;
use crate::ingest::geo::GeoDb;
use crate::ingest::Ingest;
use crate::metrics::{Gauges, Metrics};
use crate::policies::PolicyCache;
use crate::privacy::Purge;
use crate::search::{SearchError, SearchIndex, SearchOptions};
use crate::store::writer::Writer;
use crate::store::Store;

/// The search index's directory inside the data dir.
pub const INDEX_DIR: &str = "index";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("search index: {0}")]
    Search(#[from] SearchError),
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
    pub search: Arc<SearchIndex>,
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    pub tokens: TokenSet,
    pub purge: Purge,
    pub policies: PolicyCache,
    pub history: history::History,
    pub clusters: Clusters,
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
        let search = Arc::new(SearchIndex::open(
            &data_dir.join(INDEX_DIR),
            Arc::new(store.clone()),
            SearchOptions {
                commit_interval: std::time::Duration::from_millis(config.search.commit_interval_ms),
                writer_memory_bytes: config.search.writer_memory_mb * 1024 * 1024,
                ..SearchOptions::default()
            },
        )?);
        let index = search.stats();
        tracing::info!(
            docs = index.docs,
            position = index.indexed_position,
            "search index opened"
        );
        let policies = PolicyCache::new(
            config
                .products
                .iter()
                .map(|p| (p.id.clone(), p.collection.clone()))
                .collect(),
        );
        let stored_policies = store.policies()?;
        tracing::info!(
            policies = stored_policies.len(),
            "collection policies loaded"
        );
        policies.replace(stored_policies);
        let mut alerts =
            DispatcherConfig::new(config.alerts.webhooks.clone(), &config.alerts.ui_base_url);
        alerts.throttle = std::time::Duration::from_secs(config.alerts.throttle_minutes * 60);
        let dispatcher = Dispatcher::start(alerts).map_err(|source| StartError::Io {
            context: "cannot start the alert dispatcher".into(),
            source,
        })?;
        let clusters = Clusters::load(&store, config.clusters.escalation.clone(), dispatcher)?;
        tracing::info!(webhooks = config.alerts.webhooks.len(), "clusters loaded");
        let metrics = Arc::new(Metrics::default());
        let indexer = search.clone();
        let writer = Writer::start(
            store.clone(),
            config.server.writer_queue,
            metrics.clone(),
            Box::new(move |events| indexer.notify_committed(events)),
        )?;
        let state = web::Data::new(AppState {
            config,
            ingest,
            store,
            search,
            writer,
            metrics,
            tokens,
            purge: Purge::default(),
            policies,
            history: history::History::default(),
            clusters,
        });
        history::start_sampler(std::sync::Arc::downgrade(&state.clone().into_inner()));
        // Index deletions a crash left half done; on a plain thread, as they wait for the writer.
        let pending =
            std::thread::scope(|s| s.spawn(|| privacy::apply_pending_tombstones(&state)).join());
        match pending {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                tombstones = n,
                "applied index deletions left by an interrupted run"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "could not apply pending index deletions"),
            Err(_) => tracing::error!("applying pending index deletions panicked"),
        }
        Ok(state)
    }

    pub fn gauges(&self) -> Gauges {
        let index = self.search.stats();
        let next_seq = self.store.next_seq().unwrap_or(0);
        Gauges {
            writer_queue_depth: self.writer.queue_depth(),
            writer_queue_capacity: self.writer.queue_capacity(),
            store_events: self.store.event_count().unwrap_or(0),
            store_size_bytes: self.store.file_size(),
            index_docs: index.docs,
            index_size_bytes: index.size_bytes,
            index_lag: next_seq.saturating_sub(index.indexed_position),
            alerts: self
                .clusters
                .dispatcher
                .lock()
                .ok()
                .and_then(|d| d.as_ref().map(|d| d.stats()))
                .unwrap_or_default(),
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
    let mut scheduler = jobs::start(state.clone().into_inner())
        .await
        .map_err(|e| std::io::Error::other(format!("cannot start the job scheduler: {e}")))?;
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        handle.stop(true).await;
    });
    server.await?;
    let _ = scheduler.shutdown().await;
    state.writer.close();
    state.search.close();
    if let Some(mut dispatcher) = state
        .clusters
        .dispatcher
        .lock()
        .ok()
        .and_then(|mut d| d.take())
    {
        dispatcher.close();
    }
    tracing::info!("store writer and index closed; bye");
    Ok(())
}

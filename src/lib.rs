//! telemetryd as a library: `AppState::open` assembles the appliance from a `Config` (store,
//! product registry, services with the handles each needs, commit subscribers, background tasks)
//! and `serve` runs the HTTP server and the scheduled jobs on a listener the caller owns until
//! the caller's shutdown future resolves. `main.rs` and the tests both use it.

pub mod analytics;
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
pub mod otlp;
pub mod policies;
pub mod privacy;
pub mod products;
pub mod queue_budget;
pub mod retention;
pub mod scope;
pub mod search;
pub mod series;
pub mod sinks;
pub mod store;
pub mod tasks;
pub mod timespan;
pub mod traces;
pub mod version;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use actix_service::{IntoServiceFactory, ServiceFactoryExt};
use actix_web::{web, App};

use crate::clusters::service::Clusters;
use crate::clusters::{Dispatcher, DispatcherConfig};
use crate::config::{Config, ConfigError};
use crate::error::StoreError;
use crate::http::auth::TokenSet;
use crate::ingest::geo::GeoDb;
use crate::ingest::limits::RateLimiter;
use crate::ingest::{Ingest, IngestDeps};
use crate::metrics::{Gauges, Metrics};
use crate::net::Cidr;
use crate::policies::PolicyCache;
use crate::privacy::{Deleter, Privacy};
use crate::products::Products;
use crate::retention::Retention;
use crate::search::{SearchError, SearchIndex, SearchOptions};
use crate::series::Series;
use crate::sinks::{SinkError, Sinks};
use crate::store::subscribers::Subscribers;
use crate::store::writer::Writer;
use crate::store::Store;
use crate::tasks::Tasks;

/// `0.1.0 (commit 1a2b3c4d5e6f)`: the crate version and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BUILD_GIT_COMMIT"),
    ")"
);

/// The commit the binary was built from, or `unknown`.
pub const GIT_COMMIT: &str = env!("BUILD_GIT_COMMIT");

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
    #[error("sink: {0}")]
    Sink(#[from] SinkError),
    #[error("geo database {path}: {message}")]
    Geo { path: PathBuf, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// The assembled appliance: the services, the handles the HTTP layer reads, the background tasks.
pub struct AppState {
    pub config: Config,
    pub products: Arc<Products>,
    pub ingest: Arc<Ingest>,
    pub store: Store,
    pub search: Arc<SearchIndex>,
    pub writer: Arc<Writer>,
    pub metrics: Arc<Metrics>,
    pub tokens: TokenSet,
    pub trusted_proxies: Vec<Cidr>,
    pub privacy: Privacy,
    pub retention: Arc<Retention>,
    pub policies: Arc<PolicyCache>,
    pub history: Arc<history::History>,
    pub clusters: Arc<Clusters>,
    /// OTLP metrics as time series.
    pub series: Arc<Series>,
    pub subscribers: Subscribers,
    /// The `[[sinks]]`: destinations every stored event is streamed to.
    pub sinks: Arc<Sinks>,
    pub tasks: Tasks,
    /// The address of the separate `/metrics` listener (`[metrics] listen`), bound at open.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// That listener's socket, until `serve` runs a server on it.
    metrics_socket: std::sync::Mutex<Option<TcpListener>>,
}

impl AppState {
    /// Opens the store and the index, starts the background tasks (writer, indexer, alert
    /// dispatcher, metric history) and compiles the ingest rules. Logs what was loaded.
    pub fn open(config: Config) -> Result<web::Data<AppState>, StartError> {
        let data_dir = config.server.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| StartError::Io {
            context: format!("cannot create data dir {}", data_dir.display()),
            source,
        })?;
        tracing::info!(data_dir = %data_dir.display(), "data dir");
        let geo = open_geo(&config)?;
        let products = Arc::new(Products::compile(&config)?);
        for product in products.all() {
            let settings = &config.products[product.index];
            tracing::info!(
                product = %product.id,
                schema = ?settings.schema.mode,
                ingest_key = product.requires_key(),
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
        let policies = Arc::new(PolicyCache::new(
            config
                .products
                .iter()
                .map(|p| (p.id.clone(), p.collection.clone()))
                .collect(),
        ));
        let stored_policies = store.policies()?;
        tracing::info!(
            policies = stored_policies.len(),
            "collection policies loaded"
        );
        policies.replace(stored_policies);

        // Background tasks, in dependency order; `Tasks::stop` ends them in reverse.
        let metrics = Arc::new(Metrics::default());
        let subscribers = Subscribers::default();
        let writer = Arc::new(Writer::start(
            store.clone(),
            config.server.writer_queue,
            config.server.writer_queue_events,
            config.server.min_free_disk_mb * 1024 * 1024,
            metrics.clone(),
            subscribers.clone(),
        )?);
        let search = Arc::new(SearchIndex::open(
            &data_dir.join(INDEX_DIR),
            Arc::new(store.clone()),
            SearchOptions {
                commit_interval: std::time::Duration::from_millis(config.search.commit_interval_ms),
                writer_memory_bytes: config.search.writer_memory_mb * 1024 * 1024,
                queue_events: config.search.queue_events,
                scan_cache_mb: config.search.scan_cache_mb,
                ..SearchOptions::default()
            },
        )?);
        let index = search.stats();
        tracing::info!(
            docs = index.docs,
            position = index.indexed_position,
            "search index opened"
        );
        subscribers.register(search.clone());
        let mut alerts =
            DispatcherConfig::new(config.alerts.webhooks.clone(), &config.alerts.ui_base_url);
        alerts.throttle = std::time::Duration::from_secs(config.alerts.throttle_minutes * 60);
        let dispatcher = Dispatcher::start(alerts).map_err(|source| StartError::Io {
            context: "cannot start the alert dispatcher".into(),
            source,
        })?;
        let clusters = Arc::new(Clusters::load(
            store.clone(),
            writer.clone(),
            metrics.clone(),
            config.clusters.escalation.clone(),
            dispatcher,
        )?);
        tracing::info!(webhooks = config.alerts.webhooks.len(), "clusters loaded");
        subscribers.register(clusters.clone());
        let sinks = Arc::new(Sinks::open(
            &config.sinks,
            &config
                .products
                .iter()
                .map(|p| (p.id.clone(), p.retention_days))
                .collect::<Vec<_>>(),
            &store,
            &writer,
            &data_dir,
        )?);
        for sink in sinks.all() {
            tracing::info!(sink = sink.name(), "sink");
            subscribers.register(sink.clone());
        }
        sinks.start().map_err(|source| StartError::Io {
            context: "cannot start the sink threads".into(),
            source,
        })?;

        let limiter = Arc::new(RateLimiter::default());
        let ingest = Arc::new(Ingest::new(
            &config,
            IngestDeps {
                products: products.clone(),
                limiter: limiter.clone(),
                geo,
                store: store.clone(),
                writer: writer.clone(),
                policies: policies.clone(),
                metrics: metrics.clone(),
            },
        )?);
        let series = Arc::new(Series::new(
            store.clone(),
            writer.clone(),
            products.clone(),
            metrics.clone(),
            ingest::pii::PiiDetector::new(&config.pii_detectors()?),
            limiter.clone(),
            !config.sinks.is_empty(),
        ));
        let deleter = Deleter {
            store: store.clone(),
            writer: writer.clone(),
            search: search.clone(),
        };
        let privacy = Privacy::new(
            deleter.clone(),
            clusters.clone(),
            products.clone(),
            limiter,
            metrics.clone(),
            sinks.clone(),
            std::time::Duration::from_secs(config.privacy.purge_interval_secs),
        );
        if store.purge_wanted()? {
            tracing::info!(
                "purge: an erasure's purge had not run before the last stop; it runs now"
            );
            privacy.purge.request(false);
        }
        let retention = Arc::new(Retention {
            deleter: deleter.clone(),
            products: products.clone(),
            metrics: metrics.clone(),
            sinks: sinks.clone(),
            compact_free_ratio: config.retention.compact_free_ratio,
        });
        // Index deletions a crash left half done; on a plain thread, as they wait for the writer.
        let pending = std::thread::scope(|s| s.spawn(|| deleter.apply_pending_tombstones()).join());
        match pending {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                tombstones = n,
                "applied index deletions left by an interrupted run"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "could not apply pending index deletions"),
            Err(_) => tracing::error!("applying pending index deletions panicked"),
        }
        let history = Arc::new(history::History::default());
        let figures = Figures {
            store: store.clone(),
            writer: writer.clone(),
            search: search.clone(),
            clusters: clusters.clone(),
            subscribers: subscribers.clone(),
            sinks: sinks.clone(),
        };
        let sampled = metrics.clone();
        let sampler =
            history::Sampler::start(history.clone(), move || sampled.snapshot(figures.gauges()));
        let sampler = match sampler {
            Ok(sampler) => Some(sampler),
            Err(e) => {
                tracing::warn!(error = %e, "metric history is off: cannot start its thread");
                None
            }
        };
        let tasks = Tasks::new(writer.clone(), search.clone(), clusters.clone(), sampler);
        let trusted_proxies = config.trusted_proxies()?;
        let metrics_socket = match config.metrics_listen_addr()? {
            Some(address) => Some(TcpListener::bind(address).map_err(|source| StartError::Io {
                context: format!("cannot listen on {address} (metrics.listen)"),
                source,
            })?),
            None => None,
        };
        let metrics_address = match &metrics_socket {
            Some(socket) => Some(socket.local_addr().map_err(|source| StartError::Io {
                context: "metrics.listen: no local address".into(),
                source,
            })?),
            None => None,
        };
        Ok(web::Data::new(AppState {
            config,
            products,
            ingest,
            store,
            search,
            writer,
            metrics,
            tokens,
            trusted_proxies,
            privacy,
            retention,
            policies,
            history,
            clusters,
            series,
            subscribers,
            sinks,
            tasks,
            metrics_address,
            metrics_socket: std::sync::Mutex::new(metrics_socket),
        }))
    }

    /// The figures read at scrape time.
    pub fn gauges(&self) -> Gauges {
        self.figures().gauges()
    }

    fn figures(&self) -> Figures {
        Figures {
            store: self.store.clone(),
            writer: self.writer.clone(),
            search: self.search.clone(),
            clusters: self.clusters.clone(),
            subscribers: self.subscribers.clone(),
            sinks: self.sinks.clone(),
        }
    }
}

/// The parts whose figures `/metrics`, `/api/v1/stats` and the metric history read.
struct Figures {
    store: Store,
    writer: Arc<Writer>,
    search: Arc<SearchIndex>,
    clusters: Arc<Clusters>,
    subscribers: Subscribers,
    sinks: Arc<Sinks>,
}

impl Figures {
    fn gauges(&self) -> Gauges {
        let index = self.search.stats();
        let next_seq = self.store.next_seq().unwrap_or(0);
        Gauges {
            writer_queue_depth: self.writer.queue_depth(),
            writer_queue_capacity: self.writer.queue_capacity(),
            writer_queue_events: self.writer.queued_events(),
            store_events: self.store.event_count().unwrap_or(0),
            store_size_bytes: self.store.file_size(),
            index_docs: index.docs,
            index_size_bytes: index.size_bytes,
            index_lag: next_seq.saturating_sub(index.indexed_position),
            index_queue_events: index.queued_events,
            scan_cache_bytes: index.scan_cache_bytes,
            alerts: self
                .clusters
                .dispatcher
                .lock()
                .ok()
                .and_then(|d| d.as_ref().map(|d| d.stats()))
                .unwrap_or_default(),
            subscribers: self.subscribers.lags(next_seq),
            sinks: self.sinks.statuses(next_seq),
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
/// requests finish, and stops every background task (the store writer after its last commit).
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
    // Connections close at once when the server stops, rather than at their keep-alive's end.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let connections = state.config.server.max_connections.div_ceil(workers).max(1);
    let server = http_server(
        &state,
        listener,
        (workers, connections),
        http::configure,
        stopping.clone(),
    )?;
    tracing::info!(address = %address, workers, "listening");
    let metrics_socket = state
        .metrics_socket
        .lock()
        .map_err(|_| std::io::Error::other("metrics listener lock poisoned"))?
        .take();
    let metrics_server = match metrics_socket {
        Some(socket) => {
            let metrics_address = socket.local_addr()?;
            let server = http_server(
                &state,
                socket,
                (1, METRICS_LISTENER_CONNECTIONS),
                http::configure_metrics_listener,
                stopping,
            )?;
            tracing::info!(address = %metrics_address, "metrics listening");
            Some(server)
        }
        None => None,
    };
    let metrics_handle = metrics_server.as_ref().map(|s| s.handle());
    if let Some(server) = metrics_server {
        actix_web::rt::spawn(server);
    }
    state
        .tasks
        .start_jobs(jobs::JobSet {
            retention: state.retention.clone(),
            retention_schedule: state.config.retention.schedule.clone(),
            clusters: state.clusters.clone(),
            clustering_schedule: state.config.clusters.schedule.clone(),
        })
        .await
        .map_err(|e| std::io::Error::other(format!("cannot start the job scheduler: {e}")))?;
    state.tasks.log_running(&state.subscribers, &state.store);
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stopping_tx.send(true);
        if let Some(metrics) = metrics_handle {
            metrics.stop(true).await;
        }
        handle.stop(true).await;
    });
    server.await?;
    state.privacy.purge.stop();
    state.tasks.stop().await;
    state.sinks.stop();
    tracing::info!("background tasks stopped (the store writer after its last commit); bye");
    Ok(())
}

/// Open connections the separate metrics listener holds at most.
const METRICS_LISTENER_CONNECTIONS: usize = 64;

/// One HTTP server on `listener` serving the routes `configure` adds, with `workers` worker
/// threads holding at most `connections_per_worker` connections each. It is what actix-web's
/// `HttpServer` builds (its defaults: 5 s keep-alive and request timeout, 1 s disconnect
/// timeout), but with each connection's writes passing through `JsonCodecErrors`, so the answers
/// actix-http's codec makes itself carry the JSON error body; connections close once `stopping`
/// turns true.
fn http_server(
    state: &web::Data<AppState>,
    listener: TcpListener,
    (workers, connections_per_worker): (usize, usize),
    configure: fn(&mut web::ServiceConfig),
    stopping: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<actix_web::dev::Server> {
    let address = listener.local_addr()?;
    let app_state = state.clone();
    Ok(actix_web::dev::Server::build()
        .workers(workers)
        .max_concurrent_connections(connections_per_worker)
        .disable_signals()
        .shutdown_timeout(30)
        .listen("telemetryd", listener, move || {
            let app = App::new()
                .app_data(app_state.clone())
                .configure(configure)
                .into_factory()
                .map_err(|err: actix_web::Error| err.error_response());
            let stopping = stopping.clone();
            let http = actix_http::HttpService::build()
                .local_addr(address)
                .client_disconnect_timeout(std::time::Duration::from_secs(1))
                .graceful_shutdown_signal(move || {
                    let mut stopping = stopping.clone();
                    async move {
                        let _ = stopping.wait_for(|stopping| *stopping).await;
                    }
                })
                // The app's host and local address (for URLs it would build) are the defaults:
                // nothing reads them, and actix-web makes only those public.
                .h1(actix_service::map_config(app, |_| {
                    actix_web::dev::AppConfig::default()
                }));
            actix_web::dev::fn_service(|io: actix_web::rt::net::TcpStream| async move {
                let peer = io.peer_addr().ok();
                Ok::<_, actix_http::error::DispatchError>((
                    http::codec_errors::JsonCodecErrors::new(io),
                    peer,
                ))
            })
            .and_then(http)
        })?
        .run())
}

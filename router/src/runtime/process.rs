//! Process lifecycle: load the table, start one glommio executor per core (each with its own
//! `SO_REUSEPORT` listener), the table watcher and the signal thread; on SIGTERM/SIGINT stop
//! accepting, let in-flight requests finish up to the shutdown deadline, then exit.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_lite::FutureExt as _;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement, PoolPlacement};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::config::Config;
use crate::control::table::{Loaded, Plan, PlanSettings, TableCell};
use crate::control::watcher::{WatchEvent, Watcher};
use crate::runtime::core::{Core, Metrics, Shared};

/// Threads resolving upstream names (`getaddrinfo` blocks, sometimes for seconds).
const DNS_THREADS: usize = 4;
/// Threads answering admin API calls on the main listener.
const ADMIN_THREADS: usize = 2;
/// How often a core closes expired idle upstream connections and forgets old DNS answers.
const REAP_EVERY: Duration = Duration::from_secs(10);

/// How long a core may hold queued audit records: a fifth of the flush interval (so the
/// crash-loss bound stays the flush interval), at most 50 ms.
fn audit_batch_interval(config: &Config) -> Duration {
    (config.audit_flush_interval / 5).clamp(Duration::from_millis(1), Duration::from_millis(50))
}

/// Loads the table, starts everything and blocks until shutdown completes.
pub fn run(config: &Config) -> anyhow::Result<()> {
    let settings = PlanSettings {
        default_timeouts: crate::control::table::Timeouts {
            connect: config.connect_timeout,
            ttft: config.upstream_ttft_timeout,
            idle: config.upstream_idle_timeout,
            total: config.upstream_total_timeout,
        },
    };
    let _locks = lock_directories(config)?;
    let admin_dir = config.data_dir.join("admin");
    let (remote_table, first) = match (&config.table, &config.table_url) {
        (_, Some(url)) => {
            let (remote, first) = crate::control::remote_table::RemoteTable::open(
                url,
                &admin_dir,
                &settings,
                config
                    .state
                    .as_ref()
                    .map_or(Duration::from_secs(5), |s| s.timeout),
            )
            .map_err(anyhow::Error::msg)?;
            (Some(remote), first)
        }
        (Some(path), None) => (None, Loaded::from_file(path, &settings)?),
        (None, None) => (None, Loaded::demo(&settings)?),
    };
    let first = crate::control::changes::Manager::startup_table(&admin_dir, first, &settings).context(
        "cannot load the policy persisted by the admin API (move it away to discard those changes)",
    )?;
    log_table(&first);
    let tables = Arc::new(TableCell::new(first));
    let audit_stats = Arc::new(crate::audit::AuditStats::default());
    let trail = AuditTrail::start(config, &tables, &audit_stats)?;
    let shared = shared_state(config, &tables, audit_stats, &trail, &admin_dir, &settings)?;

    let admin = crate::control::admin::start(config.admin_listen, Arc::clone(&shared.admin))
        .with_context(|| {
            format!(
                "cannot listen on {} (the admin listener, --admin-listen)",
                config.admin_listen
            )
        })?;
    tracing::info!(addr = %admin, "admin listening on http://{admin}");
    let (watch_tx, watch_rx) = mpsc::channel();
    let watcher = match &config.table {
        _ if remote_table.is_some() => {
            let (remote, cell, interval) =
                (remote_table, Arc::clone(&tables), config.reload_interval);
            Some(
                std::thread::Builder::new()
                    .name("table-watcher".into())
                    .spawn(move || {
                        if let Some(r) = remote {
                            r.run(&cell, interval, &watch_rx);
                        }
                    })?,
            )
        }
        Some(path) => {
            let w = Watcher {
                path: path.clone(),
                cell: Arc::clone(&tables),
                settings,
                interval: config.reload_interval,
            };
            Some(
                std::thread::Builder::new()
                    .name("table-watcher".into())
                    .spawn(move || w.run(&watch_rx))?,
            )
        }
        None => None,
    };
    spawn_signal_thread(
        Arc::clone(&shared),
        watch_tx.clone(),
        config.table.is_some() || config.table_url.is_some(),
    )?;
    crate::control::probe::start(Arc::clone(&shared)).context("cannot start the health prober")?;
    let coordinator = start_fleet(&shared, &tables)?;
    let handles = start_cores(config, &shared)?;

    drain(config, &shared, handles);
    if let Some(fleet) = &shared.fleet {
        fleet.stop();
    }
    if let Some(c) = coordinator {
        let _ = c.join();
    }
    let _ = watch_tx.send(WatchEvent::Stop);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    trail.stop(&shared.audit_stats);
    tracing::info!("switchyard stopped");
    Ok(())
}

/// The fleet limits' coordinator thread (with `--redis`).
fn start_fleet(
    shared: &Arc<Shared>,
    tables: &Arc<TableCell>,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    let Some(fleet) = &shared.fleet else {
        return Ok(None);
    };
    let tls = if fleet.config.redis.tls {
        Some(crate::control::table::default_client_tls().map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let cell = Arc::clone(tables);
    let limited: crate::control::fleet::coordinator::Limited = Arc::new(move || {
        let (_, loaded) = cell.load();
        loaded
            .table()
            .tenants()
            .filter_map(|t| {
                let (rpm, tpm) = (u64::from(t.rate_limit_rpm()), t.rate_limit_tpm());
                let budgets = t.daily_token_budget() > 0 || t.daily_budget().0 > 0;
                (rpm > 0 || tpm > 0 || budgets).then(|| (t.id().to_owned(), rpm, tpm, budgets))
            })
            .collect()
    });
    tracing::info!(
        redis = %fleet.config.redis,
        node = fleet.config.node,
        on_store_down = fleet.config.on_down.as_str(),
        "tenant limits are held fleet-wide in Redis"
    );
    let (cell, health) = (Arc::clone(tables), Arc::clone(&shared.health));
    let endpoints: crate::control::fleet::coordinator::Endpoints = Arc::new(move || {
        let (_, loaded) = cell.load();
        loaded
            .table()
            .endpoints()
            .map(|e| (e.id().to_owned(), health.breakers.get(e.id())))
            .collect()
    });
    let handle = crate::control::fleet::coordinator::start(
        fleet,
        tls,
        limited,
        shared.limits.states(),
        endpoints,
    )
    .context("cannot start the fleet limits coordinator")?;
    Ok(Some(handle))
}

/// One process per directory: a second one would delete the first's live write-ahead logs
/// and temporary shards at its start, and overwrite its keys. Held until exit.
fn lock_directories(config: &Config) -> anyhow::Result<Vec<crate::control::state::DirLock>> {
    let mut locks = vec![
        crate::control::state::DirLock::acquire(&config.data_dir, "--data-dir")
            .map_err(|e| anyhow::Error::msg(e.to_string()))?,
    ];
    if let Some(dir) = &config.audit_dir
        && !dir.starts_with(&config.data_dir)
    {
        match crate::control::state::DirLock::acquire(dir, "--audit-dir") {
            Ok(lock) => locks.push(lock),
            Err(e @ crate::control::state::LockError::Busy(_)) => anyhow::bail!("{e}"),
            // An unusable audit directory does not stop the router: the writer reports it
            // and retries with every shard; `strict` refuses requests meanwhile.
            Err(crate::control::state::LockError::Unusable(_)) => {}
        }
    }
    Ok(locks)
}

/// The audit writer and shipper threads (absent with `--no-audit`).
struct AuditTrail {
    sink: Option<crate::audit::AuditSink>,
    writer: Option<std::thread::JoinHandle<()>>,
    shipper: Option<std::thread::JoinHandle<()>>,
    ship_tx: mpsc::Sender<crate::audit::ship::ShipMsg>,
}

impl AuditTrail {
    fn start(
        config: &Config,
        tables: &Arc<TableCell>,
        stats: &Arc<crate::audit::AuditStats>,
    ) -> anyhow::Result<Self> {
        let (ship_tx, ship_rx) = mpsc::channel();
        let Some(dir) = &config.audit_dir else {
            tracing::warn!("auditing is off (--no-audit): requests leave no audit record");
            return Ok(Self {
                sink: None,
                writer: None,
                shipper: None,
                ship_tx,
            });
        };
        let writer = crate::audit::WriterConfig {
            ship: Some(crate::audit::Shipping {
                tx: ship_tx.clone(),
                tables: Arc::clone(tables),
                sink: config.audit_sink.clone(),
            }),
            dir: dir.clone(),
            max_shard_bytes: config.audit_max_shard_bytes,
            max_shard_age: config.audit_max_shard_age,
            row_group_rows: 65_536,
            row_group_bytes: 4 * 1024 * 1024,
            node: node_id(),
            flush_interval: config.audit_flush_interval,
        };
        let (sink, writer) = crate::audit::start(writer, Arc::clone(stats))
            .with_context(|| format!("cannot start the audit writer in `{}`", dir.display()))?;
        tracing::info!(dir = %dir.display(), "audit shards go to {}", dir.display());
        if let Some(sink) = &config.audit_sink {
            tracing::info!(bucket = %sink.bucket, prefix = %sink.prefix, "sealed audit shards ship to s3://{}/{}", sink.bucket, sink.prefix);
        }
        let shipper = crate::audit::ship::start(
            crate::audit::ship::ShipConfig {
                root: dir.clone(),
                sink: config.audit_sink.clone(),
                retention: config.audit_local_retention,
                timeout: config.audit_upload_timeout,
                hold_retry: config.audit_ship_hold_retry,
            },
            Arc::clone(tables),
            Arc::clone(stats),
            ship_rx,
        )
        .context("cannot start the audit shipper")?;
        Ok(Self {
            sink: Some(sink),
            writer: Some(writer),
            shipper: Some(shipper),
            ship_tx,
        })
    }

    /// Seals every shard, gives the shipper its last round, and says what became of the
    /// records (the cores' gates are closed by then).
    fn stop(self, stats: &crate::audit::AuditStats) {
        let (Some(sink), Some(writer)) = (self.sink, self.writer) else {
            return;
        };
        sink.stop();
        let _ = writer.join();
        let _ = self.ship_tx.send(crate::audit::ship::ShipMsg::Stop);
        if let Some(shipper) = self.shipper {
            let _ = shipper.join();
        }
        tracing::info!(
            records = stats.records_written.load(Ordering::Relaxed),
            failed = stats.records_failed.load(Ordering::Relaxed),
            "audit shards sealed"
        );
    }
}

/// What every core reads: keys, admin, limits, workers, the audit gates.
fn shared_state(
    config: &Config,
    tables: &Arc<TableCell>,
    audit_stats: Arc<crate::audit::AuditStats>,
    trail: &AuditTrail,
    admin_dir: &std::path::Path,
    settings: &PlanSettings,
) -> anyhow::Result<Arc<Shared>> {
    let keys = Arc::new(
        crate::control::keys::KeyStore::open(admin_dir)
            .map_err(anyhow::Error::msg)
            .context("cannot load the client keys")?,
    );
    let id_secret = crate::control::keys::admin_id_secret(admin_dir)
        .map_err(anyhow::Error::msg)
        .context("cannot set up admin key ids")?;
    let admin_keys = crate::control::keys::AdminKeys::load(
        std::env::var("SWITCHYARD_ADMIN_KEYS").ok().as_deref(),
        config.admin_keys_file.as_deref(),
        &id_secret,
    )
    .map_err(anyhow::Error::msg)
    .context("cannot load the admin keys")?;
    if admin_keys.is_empty() {
        tracing::warn!(
            "no admin keys (SWITCHYARD_ADMIN_KEYS or --admin-keys-file): the admin API refuses every request"
        );
    }
    if !config.auth {
        tracing::warn!(
            "AUTHENTICATION IS OFF (--no-auth): any client can use any tenant by sending X-Tenant; never run this way in production"
        );
    }
    let state = match &config.state {
        Some(c) => {
            let state = Arc::new(
                crate::control::shared::SharedState::open(
                    c.clone(),
                    admin_dir.to_owned(),
                    Arc::clone(tables),
                    Arc::clone(&keys),
                    settings.clone(),
                )
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("cannot use the shared state at {} (--state)", c.url))?,
            );
            state
                .start()
                .context("cannot start the shared state's poller")?;
            Some(state)
        }
        None => None,
    };
    let health = Arc::new(crate::control::health::Health::default());
    let admin = Arc::new(crate::control::admin::Admin {
        audit_dir: config.audit_dir.clone(),
        keys: Arc::clone(&keys),
        admin_keys,
        tables: Arc::clone(tables),
        manager: crate::control::changes::Manager::new(
            admin_dir.to_owned(),
            Arc::clone(tables),
            settings.clone(),
            config.secrets.clone(),
            state.clone(),
        ),
        health: Arc::clone(&health),
    });
    let audit_gates = match &trail.sink {
        Some(sink) => (0..config.cores)
            .map(|_| crate::audit::gate::Gate::new(sink.clone(), Arc::clone(&audit_stats)))
            .collect(),
        None => Box::new([]) as Box<[_]>,
    };
    // Separate workers for DNS and for the admin API: a slow compile or audit query never
    // delays an upstream lookup.
    let resolver = crate::upstream::resolve::Resolver::start(DNS_THREADS)
        .context("cannot start the DNS workers")?;
    let admin_pool = crate::runtime::offload::Offload::start("admin", ADMIN_THREADS, 64)
        .context("cannot start the admin workers")?;
    let tracer = match &config.otlp_endpoint {
        Some(url) => Some(
            crate::observe::export::Exporter::start(url, &config.otlp_service_name)
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    Ok(Arc::new(Shared {
        config: config.clone(),
        tables: Arc::clone(tables),
        shutdown: AtomicBool::new(false),
        metrics: (0..config.cores).map(|_| Metrics::default()).collect(),
        audit: trail.sink.clone(),
        audit_stats,
        keys,
        limits: crate::control::limits::Limits::default(),
        fleet: config.fleet.clone().map(crate::control::fleet::Fleet::new),
        state,
        health,
        admin,
        body_budget: crate::runtime::core::BodyBudget::new(config.max_pending_body_bytes),
        audit_gates,
        resolver,
        admin_pool,
        tracer,
    }))
}

/// Starts one executor per core, each on its own CPU when pinning is on and there are enough.
fn start_cores(
    config: &Config,
    shared: &Arc<Shared>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let cpus = allowed_cpus();
    let pinned = config.pin && config.cores <= cpus.len();
    let placement = |id: usize| match cpus.get(id) {
        Some(&cpu) if pinned => Placement::Fixed(cpu),
        _ => Placement::Unbound,
    };
    // Core 0 binds first so that port 0 resolves to one port every core then shares.
    let mut handles = Vec::with_capacity(config.cores);
    let (first_handle, addr) = spawn_core(0, shared, config.listen, placement(0))?;
    handles.push(first_handle);
    for id in 1..config.cores {
        let (h, _) = spawn_core(id, shared, addr, placement(id))?;
        handles.push(h);
    }
    tracing::info!(
        addr = %addr,
        cores = config.cores,
        pinned,
        "switchyard listening on {}://{addr}",
        if config.tls.is_some() { "https" } else { "http" }
    );
    crate::runtime::uring::report();
    Ok(handles)
}

/// Waits for the stop signal, then up to the drain deadline for the cores to finish; then
/// closes every core's audit gate (what is queued goes to the writer, requests still in
/// flight are counted as failed records, each once).
fn drain(config: &Config, shared: &Shared, handles: Vec<std::thread::JoinHandle<()>>) {
    while !shared.shutdown.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if handles.iter().all(std::thread::JoinHandle::is_finished) {
            break;
        }
    }
    let deadline = Instant::now() + config.shutdown_timeout;
    while Instant::now() < deadline && !handles.iter().all(std::thread::JoinHandle::is_finished) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let unfinished = handles.iter().filter(|h| !h.is_finished()).count();
    let cut_off: u64 = shared
        .audit_gates
        .iter()
        .map(crate::audit::gate::Gate::close)
        .sum();
    if let Some(tracer) = &shared.tracer {
        // The exporter sends what is queued and stops (best effort: the process may exit
        // before its last batch is through).
        tracer.close();
    }
    if unfinished > 0 {
        tracing::warn!(
            cores = unfinished,
            audit_records_lost = cut_off,
            "shutdown deadline passed with requests still in flight; exiting (their audit records are counted as failed)"
        );
    } else {
        for h in handles {
            let _ = h.join();
        }
    }
}

/// This process's name in shard file names: host, pid and start time, so two nodes or two
/// runs never write the same name.
fn node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{host}-{}-{}", std::process::id(), crate::clock::now_ms())
}

fn log_table(loaded: &Loaded) {
    let t = loaded.table();
    tracing::info!(
        table = %loaded.origin,
        revision = t.revision(),
        rules = t.rule_count(),
        endpoints = t.endpoint_count(),
        "table loaded"
    );
    for (e, plan) in t.endpoints().zip(&loaded.plans) {
        match plan {
            Plan::Broken(why) => tracing::warn!(endpoint = e.id(), "{why}"),
            Plan::Mock | Plan::Forward(_) => {}
        }
    }
}

fn spawn_signal_thread(
    shared: Arc<Shared>,
    watch: mpsc::Sender<WatchEvent>,
    has_file: bool,
) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                match sig {
                    SIGHUP if has_file => {
                        tracing::info!("SIGHUP: reloading the table");
                        let _ = watch.send(WatchEvent::Reload);
                    }
                    SIGHUP => tracing::info!("SIGHUP ignored: serving the embedded demo table"),
                    _ => {
                        if shared.shutdown.swap(true, Ordering::SeqCst) {
                            tracing::warn!("second stop signal: exiting now");
                            std::process::exit(130);
                        }
                        tracing::info!(
                            deadline_ms = u64::try_from(shared.config.shutdown_timeout.as_millis())
                                .unwrap_or(u64::MAX),
                            "shutting down: no new connections, draining in-flight requests"
                        );
                    }
                }
            }
        })?;
    Ok(())
}

/// The CPUs this process may run on (its affinity mask, which `taskset` or a cgroup may have
/// narrowed), from `/proc/self/status`. Empty if unknown.
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(list) = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
    else {
        return Vec::new();
    };
    parse_cpu_list(list.trim())
}

/// Parses a kernel CPU list (`0-3,8,10-11`).
fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let range = match part.split_once('-') {
            Some((a, b)) => a.trim().parse::<usize>().ok().zip(b.trim().parse().ok()),
            None => part.trim().parse().ok().map(|c| (c, c)),
        };
        match range {
            Some((a, b)) if a <= b && b - a < 4096 => cpus.extend(a..=b),
            _ => return Vec::new(),
        }
    }
    cpus
}

/// Starts core `id` listening on `addr`; returns its thread and the bound address.
fn spawn_core(
    id: usize,
    shared: &Arc<Shared>,
    addr: SocketAddr,
    placement: Placement,
) -> anyhow::Result<(std::thread::JoinHandle<()>, SocketAddr)> {
    let (tx, rx) = mpsc::channel();
    let shared = Arc::clone(shared);
    // The executor's own blocking pool is not used (see `crate::runtime::offload`): one thread.
    let builder = LocalExecutorBuilder::new(placement)
        .name(&format!("core-{id}"))
        .blocking_thread_pool_placement(PoolPlacement::Unbound(1));
    let handle = builder
        .spawn(move || async move {
            let listener = match TcpListener::bind(addr) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = tx.send(listener.local_addr().map_err(|e| e.to_string()));
            let core = Rc::new(Core::new(id, shared));
            accept_loop(&core, listener).await;
        })
        .map_err(|e| anyhow::anyhow!("cannot start executor {id}: {e}"))?;
    let bound = rx
        .recv()
        .context("executor exited before binding")?
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let thread = std::thread::spawn(move || {
        if let Err(e) = handle.join() {
            tracing::error!(core = id, error = ?e, "executor thread failed");
        }
    });
    Ok((thread, bound))
}

/// Resolves when shutdown starts (checked every 100 ms: stopping is not latency-critical).
pub async fn shutdown_signal(core: &Core) {
    while !core.shutting_down() {
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

async fn accept_loop(core: &Rc<Core>, listener: TcpListener) {
    let max = core.config().max_connections_per_core;
    let reaper = Rc::clone(core);
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(REAP_EVERY).await;
            reaper.pool.reap();
            if reaper.id == 0 {
                reaper.shared.resolver.reap();
            }
        }
    })
    .detach();
    if core.audit_gate().is_some() {
        let flusher = Rc::clone(core);
        glommio::spawn_local(async move {
            let every = audit_batch_interval(flusher.config());
            loop {
                glommio::timer::sleep(every).await;
                if let Some(gate) = flusher.audit_gate() {
                    gate.flush();
                }
            }
        })
        .detach();
    }
    loop {
        let accepted = async { Some(listener.accept().await) }
            .or(async {
                shutdown_signal(core).await;
                None
            })
            .await;
        let stream = match accepted {
            None => break,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(core = core.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let metrics = core.metrics();
        if core.connections.get() >= max {
            metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
            // A plaintext 503 means nothing to a TLS client: it is just closed.
            if core.config().tls.is_none() {
                glommio::spawn_local(crate::runtime::conn::refuse(stream)).detach();
            }
            continue;
        }
        core.connections.set(core.connections.get() + 1);
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        let task_core = Rc::clone(core);
        glommio::spawn_local(async move {
            let served = AssertUnwindSafe(crate::runtime::conn::serve(stream, &task_core))
                .catch_unwind()
                .await;
            if served.is_err() {
                task_core.metrics().panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    core = task_core.id,
                    "connection task panicked; connection dropped, core keeps serving"
                );
            }
            task_core.connections.set(task_core.connections.get() - 1);
            task_core
                .metrics()
                .connections
                .fetch_sub(1, Ordering::Relaxed);
        })
        .detach();
    }
    drop(listener);
    core.shutdown_gate.close();
    while core.connections.get() > 0 {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    if let Some(gate) = core.audit_gate() {
        gate.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_cpu_list;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8,10-11"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("1"), vec![1]);
        assert_eq!(parse_cpu_list("x"), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("3-1"), Vec::<usize>::new());
    }
}

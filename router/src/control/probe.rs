//! Active health checks: one side thread (never an executor) probes every endpoint whose
//! health check interval is set (`health_check: { interval_ms }` or
//! `health_check_interval_ms`), at that interval — at `health_check.path` when given (any
//! type), else `GET /health` for `vllm`, `GET /api/tags` for `ollama`, `GET {url}/models`
//! for `openai` and `custom` (with the endpoint's key); cloud types, Azure, Anthropic and
//! `mock` have no free health path and are probed only at a configured one.
//! `unhealthy_threshold` (default [`UNHEALTHY_AFTER`]) failed probes in a row open the
//! endpoint's breaker without any traffic having failed; `healthy_threshold` (default
//! [`HEALTHY_AFTER`]) good ones close it again without waiting for the ejection to end.
//! Probes are sequential, each bounded by `health_check.timeout_ms` (default
//! [`PROBE_TIMEOUT`]; never longer than the interval). What they find is shown in
//! `GET /v1/endpoints` (`health.probe`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use switchyard_table::EndpointKind;

use crate::control::table::{PathPlan, Plan, Upstream};
use crate::http::url::Url;

/// Failed probes in a row that mark an endpoint down (unless `unhealthy_threshold` says).
pub const UNHEALTHY_AFTER: u32 = 3;
/// Good probes in a row that mark it up again (unless `healthy_threshold` says).
pub const HEALTHY_AFTER: u32 = 2;
/// Longest wait for a probe's answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the thread looks for due probes (and for a new table or shutdown).
const TICK: Duration = Duration::from_millis(50);

/// What one endpoint's probes have found.
#[derive(Clone, Debug, Default)]
struct Tally {
    due: Option<Instant>,
    ok_in_a_row: u32,
    failed_in_a_row: u32,
}

/// Starts the prober thread; it stops when `shared` says the router is shutting down.
pub fn start(shared: Arc<crate::runtime::core::Shared>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("health-probe".into())
        .spawn(move || run(&shared))
        .map(|_| ())
}

fn run(shared: &crate::runtime::core::Shared) {
    let mut tallies: HashMap<String, Tally> = HashMap::new();
    while !shared.shutdown.load(Ordering::Relaxed) {
        let (_, loaded) = shared.tables.load();
        let table = loaded.table();
        for (e, plan) in table.endpoints().zip(&loaded.plans) {
            let interval = e.health_check_interval_ms();
            let Plan::Forward(up) = plan else { continue };
            let path = match e.health_check_path() {
                "" => probe_path(e.kind(), up),
                given => Some(given.to_owned()),
            };
            let Some(path) = path.filter(|_| interval > 0) else {
                continue;
            };
            let limit = match e.health_check_timeout_ms() {
                0 => PROBE_TIMEOUT,
                ms => Duration::from_millis(u64::from(ms)),
            };
            let unhealthy_after = match e.unhealthy_threshold() {
                0 => UNHEALTHY_AFTER,
                n => u32::from(n),
            };
            let healthy_after = match e.healthy_threshold() {
                0 => HEALTHY_AFTER,
                n => u32::from(n),
            };
            let interval = Duration::from_millis(u64::from(interval));
            let tally = tallies.entry(e.id().to_owned()).or_default();
            let now = Instant::now();
            if tally.due.is_some_and(|due| due > now) {
                continue;
            }
            tally.due = Some(now + interval);
            let result = probe(up, &path, interval.min(limit));
            let now_ms = crate::clock::now_ms();
            shared
                .health
                .probed(e.id(), now_ms, result.as_ref().err().map(String::as_str));
            let breaker = shared.health.breakers.get(e.id());
            match result {
                Ok(()) => {
                    tally.failed_in_a_row = 0;
                    tally.ok_in_a_row = tally.ok_in_a_row.saturating_add(1);
                    if tally.ok_in_a_row >= healthy_after && breaker.is_open() {
                        tracing::info!(
                            endpoint = e.id(),
                            "health checks pass again; endpoint back in use"
                        );
                        breaker.close();
                    }
                }
                Err(why) => {
                    tally.ok_in_a_row = 0;
                    tally.failed_in_a_row = tally.failed_in_a_row.saturating_add(1);
                    if tally.failed_in_a_row >= unhealthy_after && !breaker.is_open() {
                        tracing::warn!(
                            endpoint = e.id(),
                            error = why.as_str(),
                            "health checks fail; endpoint taken out of use"
                        );
                        breaker.force_open(now_ms);
                    }
                }
            }
        }
        std::thread::sleep(TICK);
    }
}

/// The path an endpoint is probed at (`None`: this type has no free health path).
fn probe_path(kind: EndpointKind, up: &Upstream) -> Option<String> {
    let PathPlan::OpenAi { base } = &up.path else {
        return None;
    };
    match kind {
        EndpointKind::Vllm => Some("/health".to_owned()),
        EndpointKind::Ollama => Some("/api/tags".to_owned()),
        EndpointKind::OpenAi | EndpointKind::Custom => Some(format!("{base}/models")),
        _ => None,
    }
}

/// One probe: any 2xx is up.
fn probe(up: &Upstream, path: &str, timeout: Duration) -> Result<(), String> {
    let url = Url {
        tls: up.tls.is_some(),
        host: up.host.clone(),
        port: up.port,
        authority: up.authority.clone(),
        path: path.to_owned(),
    };
    let auth = up
        .auth
        .as_ref()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .unwrap_or_default();
    let (status, _) =
        crate::upstream::blocking::call_within(&url, up.tls.clone(), "GET", &auth, b"", timeout)?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}

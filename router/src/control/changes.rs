//! Changes to the policy, its endpoints and its tenants made through the admin API.
//!
//! The serving table is the source of truth. A change is applied to the policy object the
//! serving table decompiles to ([`policyc::json::table_to_json`]); the whole bundle is then
//! compiled with the compiler library — the rules as the policy document, the endpoints,
//! tenants and data classes as its catalogue — and only a bundle without errors is persisted
//! (`<data-dir>/admin/policy.swt`, written atomically) and installed, with the revision after
//! the serving one. A refused change leaves the serving table untouched.
//!
//! At start the persisted table is used when its revision is higher than the `--table` file's
//! (or the demo's); a newer `--table` (CI published a new policy) supersedes admin changes.
//! Each change is appended to `<data-dir>/admin/changes.jsonl`: who, what, when, revision.
//!
//! With `--state` a change is compiled on the shared state's latest revision and published
//! there before it serves anywhere, this host included ([`crate::control::shared`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value, json};

use policyc::store::StoreError;

use crate::control::shared::{Edit, SharedState};
use crate::control::state::{LOG_FILE, TABLE_FILE, append_log};
use crate::control::table::{LoadError, Loaded, Origin, PlanSettings, TableCell};

/// The catalogue sections a change may carry over from the serving policy.
const SECTIONS: [&str; 3] = ["endpoints", "tenants", "data_classes"];
/// Times a change is compiled again when the serving table changed under it.
const MAX_ATTEMPTS: usize = 3;

/// One change to apply.
#[derive(Debug)]
pub enum Change {
    /// `POST /v1/policies`: a whole policy. Sections it leaves out (endpoints, tenants,
    /// data classes) are kept from the serving policy. `text` is the YAML it came as, if it
    /// did (diagnostics then point into it).
    Policy { doc: Option<Value>, text: String },
    /// `POST /v1/endpoints`: create an endpoint, or update the fields given (`null` removes).
    Endpoint(Map<String, Value>),
    /// `POST /v1/tenants`: likewise for a tenant.
    Tenant(Map<String, Value>),
}

impl Change {
    /// The change log's name for it.
    pub fn action(&self, created: bool) -> &'static str {
        match (self, created) {
            (Self::Policy { .. }, _) => "policy.deploy",
            (Self::Endpoint(_), true) => "endpoint.create",
            (Self::Endpoint(_), false) => "endpoint.update",
            (Self::Tenant(_), true) => "tenant.create",
            (Self::Tenant(_), false) => "tenant.update",
        }
    }
}

/// A compiled change, not yet serving.
struct Prepared {
    next: Loaded,
    bytes: Vec<u8>,
    revision: u64,
    created: bool,
    report: Value,
    action: &'static str,
    target: String,
}

/// A change that is now serving.
#[derive(Debug)]
pub struct Applied {
    pub revision: u64,
    /// An endpoint or tenant that did not exist before.
    pub created: bool,
    /// The compiler's warnings (its JSON report).
    pub report: Value,
}

/// Why a change was not applied.
#[derive(Debug)]
pub enum Rejected {
    /// The bundle does not compile: the compiler's JSON report.
    Invalid { report: Value, errors: usize },
    /// It compiled but references a secret the admin API may not use.
    Secret(String),
    /// The serving table changed (a newer file) while it compiled: compile again on it.
    Conflict,
    /// It compiled but could not be persisted or loaded; nothing changed.
    Failed(String),
    /// The shared state (`--state`) could not take it: unreachable, or other writers kept
    /// winning. Nothing changed anywhere.
    Store(StoreError),
}

impl From<StoreError> for Rejected {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Where secrets referenced through the admin API may live (`--secrets-dir`,
/// `--secret-env-prefix`). An admin key may change endpoints, so without this bound it could
/// point `api_key_file` at `/etc/shadow` or `api_key_env` at `AWS_SECRET_ACCESS_KEY` and
/// send the value to a URL of its choosing. References the serving policy already makes
/// (reviewed and shipped by the operator) stay usable.
#[derive(Clone, Debug, Default)]
pub struct SecretScope {
    pub dirs: Vec<PathBuf>,
    pub env_prefixes: Vec<String>,
}

impl SecretScope {
    /// Why the new table's secret references are not allowed, if they are not: each one
    /// must be made by the serving table already or lie inside the scope.
    fn check(&self, serving: &Loaded, next: &Loaded) -> Result<(), String> {
        let known_env = |name: &str| serving.table().endpoints().any(|e| e.api_key_env() == name);
        let known_file = |path: &str| {
            serving
                .table()
                .endpoints()
                .any(|e| e.api_key_file() == path)
        };
        for e in next.table().endpoints() {
            let env = e.api_key_env();
            if !env.is_empty()
                && !known_env(env)
                && !self
                    .env_prefixes
                    .iter()
                    .any(|p| env.starts_with(p.as_str()))
            {
                return Err(format!(
                    "endpoint `{}`: `api_key_env: {env}` is not a variable the admin API may use; allowed prefixes: {} (--secret-env-prefix)",
                    e.id(),
                    list(&self.env_prefixes)
                ));
            }
            let file = e.api_key_file();
            if !file.is_empty() && !known_file(file) && !self.allows_file(Path::new(file)) {
                return Err(format!(
                    "endpoint `{}`: `api_key_file: {file}` is outside the directories the admin API may use: {} (--secrets-dir)",
                    e.id(),
                    list(
                        &self
                            .dirs
                            .iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                    )
                ));
            }
        }
        Ok(())
    }

    /// Inside one of the directories: lexically (absolute, no `..`) and, when the file
    /// exists, after resolving symbolic links.
    fn allows_file(&self, path: &Path) -> bool {
        let plain = path.is_absolute()
            && path
                .components()
                .all(|c| !matches!(c, std::path::Component::ParentDir));
        if !plain {
            return false;
        }
        self.dirs.iter().any(|dir| {
            let Ok(root) = dir.canonicalize() else {
                return false;
            };
            let lexical = path.starts_with(dir) || path.starts_with(&root);
            let resolved = match path.canonicalize() {
                Ok(real) => real.starts_with(&root),
                Err(_) => true,
            };
            lexical && resolved
        })
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none configured".to_owned()
    } else {
        items
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Applies admin changes, one at a time.
#[derive(Debug)]
pub struct Manager {
    dir: PathBuf,
    tables: Arc<TableCell>,
    settings: PlanSettings,
    secrets: SecretScope,
    lock: Mutex<()>,
    /// With `--state`: every change goes through the shared state.
    pub shared: Option<Arc<SharedState>>,
}

impl Manager {
    #[must_use]
    pub fn new(
        dir: PathBuf,
        tables: Arc<TableCell>,
        settings: PlanSettings,
        secrets: SecretScope,
        shared: Option<Arc<SharedState>>,
    ) -> Self {
        Self {
            dir,
            tables,
            settings,
            secrets,
            lock: Mutex::new(()),
            shared,
        }
    }

    /// The table to start with: `first` (the `--table` file or the demo), or the persisted
    /// admin table when its revision is not lower.
    pub fn startup_table(
        dir: &Path,
        first: Loaded,
        settings: &PlanSettings,
    ) -> Result<Loaded, LoadError> {
        let path = dir.join(TABLE_FILE);
        if !path.exists() {
            return Ok(first);
        }
        let bytes = std::fs::read(&path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let persisted = Loaded::from_bytes(bytes, Origin::Admin(path.clone()), settings)?;
        let (theirs, ours) = (first.table().revision(), persisted.table().revision());
        // Ties go to the admin table, as at runtime (`table::not_older`): a file replaces admin
        // changes only with a higher revision.
        if ours >= theirs {
            tracing::info!(
                table = %path.display(),
                revision = ours,
                superseded = %first.origin,
                superseded_revision = theirs,
                "serving the policy last changed through the admin API"
            );
            Ok(persisted)
        } else {
            tracing::warn!(
                table = %first.origin,
                revision = theirs,
                admin_revision = ours,
                "the table is newer than the admin API's changes ({}); those are superseded",
                path.display()
            );
            Ok(first)
        }
    }

    /// Compiles the serving policy with `change` applied and, when it has no errors,
    /// persists and installs it. `who` is the admin key's id, for the change log.
    pub fn apply(&self, who: &str, change: &Change) -> Result<Applied, Rejected> {
        if let Some(shared) = &self.shared {
            return self.apply_shared(shared, who, change);
        }
        let _one_at_a_time = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        // The table watcher may swap in a newer file while a change compiles: the change is
        // then recompiled on top of it (it must not undo what the file brought).
        for _ in 0..MAX_ATTEMPTS {
            match self.attempt(who, change) {
                Err(Rejected::Conflict) => continue,
                result => return result,
            }
        }
        Err(Rejected::Failed(
            "the serving table kept changing while this change compiled; retry".into(),
        ))
    }

    fn attempt(&self, who: &str, change: &Change) -> Result<Applied, Rejected> {
        let (_, current) = self.tables.load();
        let prepared = self.prepare(change, &current)?;
        let revision = prepared.revision;
        let path = self.dir.join(TABLE_FILE);
        // Under the table's lock: still the table this change was compiled on, then persisted
        // (a change that would not survive a restart is not made), then serving.
        let base_revision = current.table().revision();
        let bytes = prepared.bytes;
        self.tables.replace_if(prepared.next, |serving, _| {
            if serving.table().revision() != base_revision {
                return Err(Rejected::Conflict);
            }
            crate::control::state::write_atomic(&path, &bytes).map_err(|e| {
                Rejected::Failed(format!(
                    "cannot persist the new policy to `{}`: {e}",
                    path.display()
                ))
            })
        })?;
        tracing::info!(
            admin = who,
            action = prepared.action,
            target = prepared.target.as_str(),
            revision,
            "admin: policy changed"
        );
        self.log(who, prepared.action, &prepared.target, Some(revision));
        Ok(Applied {
            revision,
            created: prepared.created,
            report: prepared.report,
        })
    }

    /// Through the shared state (`--state`): compiled on the latest shared revision,
    /// published there, then serving here (other hosts pick it up when they poll).
    fn apply_shared(
        &self,
        shared: &SharedState,
        who: &str,
        change: &Change,
    ) -> Result<Applied, Rejected> {
        let (applied, _) = shared.write(who, |serving, _keys| {
            let p = self.prepare(change, serving)?;
            let edit = Edit {
                table: Some((p.bytes, p.revision)),
                keys: None,
                action: p.action,
                target: p.target,
            };
            let applied = Applied {
                revision: p.revision,
                created: p.created,
                report: p.report,
            };
            Ok::<_, Rejected>((edit, applied))
        })?;
        tracing::info!(
            admin = who,
            action = change.action(applied.created),
            revision = applied.revision,
            "admin: policy changed (shared state)"
        );
        Ok(applied)
    }

    /// Compiles `current`'s policy with `change` applied: the table that would serve next.
    fn prepare(&self, change: &Change, current: &Loaded) -> Result<Prepared, Rejected> {
        let mut base = match policyc::json::table_to_json(current.table()) {
            Value::Object(o) => o,
            _ => Map::new(),
        };
        let mut catalogue = Map::new();
        let mut created = false;
        let mut target = String::new();
        let (policy_name, policy_text) = match change {
            Change::Policy { doc, text } => {
                // Sections the posted policy leaves out stay as they are. (Text that does
                // not parse is compiled alone, for its syntax errors.)
                if let Some(doc) = doc {
                    for section in SECTIONS {
                        if doc.get(section).is_none()
                            && let Some(v) = base.remove(section)
                        {
                            catalogue.insert(section.to_owned(), v);
                        }
                    }
                }
                ("posted policy", text.clone())
            }
            Change::Endpoint(item) | Change::Tenant(item) => {
                let section = if matches!(change, Change::Endpoint(_)) {
                    "endpoints"
                } else {
                    "tenants"
                };
                for s in SECTIONS {
                    if let Some(v) = base.remove(s) {
                        catalogue.insert(s.to_owned(), v);
                    }
                }
                let list = catalogue
                    .entry(section.to_owned())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(items) = list {
                    created = upsert(items, item);
                }
                target = item
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                ("serving policy", pretty(&Value::Object(base)))
            }
        };
        let mut sources = policyc::source::Sources::new();
        let policy = sources.add(policy_name, policy_text);
        let cat = (!catalogue.is_empty()).then(|| {
            sources.add(
                "serving endpoints, tenants and data classes",
                pretty(&Value::Object(catalogue)),
            )
        });
        let revision = current.table().revision() + 1;
        let out = policyc::compile_sources(&sources, policy, cat, revision)
            .map_err(|e| Rejected::Failed(e.to_string()))?;
        let report: Value =
            serde_json::from_str(&policyc::diag::render_json(&sources, &out.diagnostics))
                .unwrap_or(Value::Null);
        let Some(compiled) = out.compiled else {
            let errors = report.get("errors").and_then(Value::as_u64).unwrap_or(1);
            return Err(Rejected::Invalid {
                report,
                errors: usize::try_from(errors).unwrap_or(1),
            });
        };
        let next = Loaded::from_bytes(
            compiled.table.clone(),
            Origin::Admin(self.dir.join(TABLE_FILE)),
            &self.settings,
        )
        .map_err(|e| Rejected::Failed(e.to_string()))?;
        self.secrets
            .check(current, &next)
            .map_err(Rejected::Secret)?;
        Ok(Prepared {
            next,
            bytes: compiled.table,
            revision,
            created,
            report,
            action: change.action(created),
            target,
        })
    }

    /// Appends one line to the change log (a failure to write it is logged, not fatal: the
    /// change itself is already persisted).
    pub fn log(&self, who: &str, action: &str, target: &str, revision: Option<u64>) {
        let line = json!({
            "ts": crate::clock::iso8601(crate::clock::now_ms()),
            "admin": who,
            "action": action,
            "target": target,
            "revision": revision,
        });
        append_log(&self.dir, &line);
    }

    /// The change log, newest first, at most `limit` entries.
    #[must_use]
    pub fn changes(&self, limit: usize) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join(LOG_FILE)).unwrap_or_default();
        text.lines()
            .rev()
            .filter_map(|l| serde_json::from_str(l).ok())
            .take(limit)
            .collect()
    }
}

/// Creates the item with its id, or updates the fields it gives (`null` removes one).
/// Whether it was created.
fn upsert(items: &mut Vec<Value>, item: &Map<String, Value>) -> bool {
    let id = item.get("id");
    if let Some(Value::Object(existing)) = items.iter_mut().find(|v| v.get("id") == id) {
        for (k, v) in item {
            if v.is_null() {
                existing.remove(k);
            } else {
                existing.insert(k.clone(), v.clone());
            }
        }
        return false;
    }
    let fresh: Map<String, Value> = item
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    items.push(Value::Object(fresh));
    true
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    #[test]
    fn upsert_creates_then_merges_fields() {
        let mut items = vec![json!({"id": "a", "rate_limit_rpm": 5, "audit_bucket": "s3://x"})];
        let created = upsert(
            &mut items,
            json!({"id": "a", "rate_limit_rpm": 9, "audit_bucket": null})
                .as_object()
                .unwrap(),
        );
        assert!(!created);
        assert_eq!(items, vec![json!({"id": "a", "rate_limit_rpm": 9})]);
        let created = upsert(
            &mut items,
            json!({"id": "b", "x": null}).as_object().unwrap(),
        );
        assert!(created);
        assert_eq!(items.get(1), Some(&json!({"id": "b"})));
    }
}

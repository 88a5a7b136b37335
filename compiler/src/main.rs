//! The `policyc` command line: a thin layer over the library.
//!
//! Exit codes: 0 ok (warnings allowed), 1 the policy has errors, 2 usage or unreadable
//! input, 3 a table file is invalid, 4 `test` cases failed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use policyc::diag::{self, Diagnostic};
use policyc::interp::Attrs;
use policyc::source::Sources;
use policyc::{Compiled, Error, cases, ci, diff, dump, explain};
use switchyard_table::{Micros, Table};

const EXIT_OK: u8 = 0;
const EXIT_DIAGNOSTICS: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_BAD_TABLE: u8 = 3;
const EXIT_TESTS_FAILED: u8 = 4;
const EXIT_PUBLISH: u8 = 5;
/// `replay`: a `--fail-if` condition held.
const EXIT_REPLAY_FAILED: u8 = 5;

#[derive(Parser)]
#[command(
    name = "policyc",
    version,
    about = "Compile and check Switchyard routing policies",
    after_help = "Exit codes: 0 ok (warnings allowed), 1 policy errors, 2 usage or unreadable input, \
                  3 invalid table file, 4 test cases failed, 5 publishing refused or failed \
                  (publish) or a --fail-if condition held (replay)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Default, ValueEnum)]
enum Format {
    #[default]
    Human,
    Json,
}

/// Output of the commands a CI pipeline runs (`check`, `compile`, `test`, `replay`).
#[derive(Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
enum CiFormat {
    /// Text for people (diagnostics on stderr).
    #[default]
    Human,
    Json,
    /// GitHub Actions workflow commands: an annotation per finding on its file, line and
    /// column.
    Github,
    /// A SARIF 2.1.0 log (GitHub code scanning, review tools).
    Sarif,
}

#[derive(Subcommand)]
enum Command {
    /// Report every error and warning in a policy; write nothing.
    Check {
        /// The policy YAML.
        policy: PathBuf,
        /// An endpoint catalogue (YAML with `endpoints:`, optionally `tenants:` and
        /// `data_classes:`) for policies that reference endpoints declared elsewhere.
        #[arg(long, value_name = "FILE")]
        endpoints: Option<PathBuf>,
        /// Silence a warning code (e.g. `--allow P1003`); repeatable. Errors cannot be
        /// silenced.
        #[arg(long, value_name = "CODE", value_parser = parse_allow)]
        allow: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        format: CiFormat,
    },
    /// Compile a policy into a decision table (written atomically).
    Compile {
        policy: PathBuf,
        #[arg(long, value_name = "FILE")]
        endpoints: Option<PathBuf>,
        /// Where to write the table.
        #[arg(short, long, value_name = "TABLE")]
        output: PathBuf,
        /// Policy revision stamped into the table; routers refuse to load an older one.
        #[arg(long, value_name = "N", default_value_t = 0)]
        revision: u64,
        /// Silence a warning code; repeatable.
        #[arg(long, value_name = "CODE", value_parser = parse_allow)]
        allow: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        format: CiFormat,
    },
    /// Show which rule a described request hits, and why each earlier rule did not.
    Explain {
        /// A table, or a policy (compiled in memory).
        table: PathBuf,
        #[arg(long, value_name = "FILE")]
        endpoints: Option<PathBuf>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        data_class: Option<String>,
        #[arg(long)]
        user_role: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long, value_name = "N")]
        latency_budget_ms: Option<u64>,
        /// USD per 1,000 tokens, at most 6 decimal places.
        #[arg(long, value_name = "USD", value_parser = parse_money)]
        cost_cap_per_1k: Option<Micros>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Run request → expected decision cases against a policy or table.
    Test {
        /// A policy (also checked against the reference interpreter) or a table.
        policy: PathBuf,
        /// The cases YAML.
        cases: PathBuf,
        #[arg(long, value_name = "FILE")]
        endpoints: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: CiFormat,
    },
    /// Show every region of the request space whose route changes between two policies
    /// or tables, with an example request for each.
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// Catalogue used for both sides when they are policies.
        #[arg(long, value_name = "FILE")]
        endpoints: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print a table in readable form.
    Dump { table: PathBuf },
    /// Judge a policy against recorded traffic: every audit record in the window is
    /// evaluated under NEW (and OLD, else its recorded decision is the baseline) and the
    /// routes compared — requests moved between endpoints, newly denied and allowed, pinned
    /// models the new route does not serve, cost at the new endpoints' prices.
    Replay {
        /// The new policy or table.
        new: PathBuf,
        /// Audit shards: a directory (the router's `--data-dir`/audit, or a copy) or
        /// `s3://bucket/prefix` (the shipping prefix; AWS environment as for `publish`).
        #[arg(long, value_name = "DIR_OR_S3_URL")]
        audit: String,
        /// The old policy or table to compare with, instead of the recorded decisions.
        #[arg(long, value_name = "POLICY_OR_TABLE")]
        old: Option<PathBuf>,
        /// Catalogue used for policies.
        #[arg(long, value_name = "FILE")]
        endpoints: Option<PathBuf>,
        /// Records from this time on: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]Z`, or an age
        /// (`7d`, `12h`, `30m`: that long before now).
        #[arg(long, value_name = "T", value_parser = parse_time)]
        from: Option<i64>,
        /// Records before this time (same forms).
        #[arg(long, value_name = "T", value_parser = parse_time)]
        to: Option<i64>,
        /// Only this tenant's records.
        #[arg(long)]
        tenant: Option<String>,
        /// Exit with code 5 when the condition holds, e.g. `denied > 0`, `rerouted_pct > 5`,
        /// `cost_delta_usd > 100`; repeatable (any one failing fails). Metrics: records,
        /// replayed, skipped, rerouted, rerouted_pct, denied, allowed, model_unserved,
        /// cost_usd_recorded, cost_usd_new, cost_delta_usd.
        #[arg(long = "fail-if", value_name = "EXPR", value_parser = parse_condition)]
        fail_if: Vec<policyc::replay::Condition>,
        #[arg(long, value_enum, default_value_t)]
        format: CiFormat,
    },
    /// Publish a compiled table to object storage, where routers pick it up: a state
    /// prefix (`s3://bucket/prefix`, what `switchyard --state` reads: the table as a
    /// create-only object, then the manifest swapped) or one object (`s3://bucket/key.swt`,
    /// what `switchyard --table s3://…` polls, replaced only if unchanged since read).
    /// A table whose revision is not above the published one is refused. Credentials and
    /// endpoint come from the AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, …).
    Publish {
        table: PathBuf,
        /// `s3://bucket/prefix` or `s3://bucket/key.swt`.
        #[arg(value_name = "S3_URL")]
        url: String,
        /// Who publishes, for the change log (default: `policyc@<hostname>`).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
}

fn parse_allow(s: &str) -> Result<String, String> {
    match policyc::diag::Code::ALL.iter().find(|c| c.as_str() == s) {
        Some(c) if c.severity() == policyc::diag::Severity::Warning => Ok(s.to_owned()),
        Some(_) => Err(format!("{s} is an error; errors cannot be silenced")),
        None => Err(format!(
            "unknown diagnostic code `{s}` (warnings are P1001..P1105)"
        )),
    }
}

fn parse_condition(s: &str) -> Result<policyc::replay::Condition, String> {
    policyc::replay::Condition::parse(s)
}

/// A time for `--from`/`--to`, ms since the epoch.
fn parse_time(s: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "`{s}`: expected `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]Z` or an age like `7d`, `12h`, `30m`"
        )
    };
    if let Some(unit) = s.chars().last().filter(|c| matches!(c, 'd' | 'h' | 'm'))
        && let Ok(n) = s[..s.len() - 1].parse::<i64>()
    {
        let ms = match unit {
            'd' => 86_400_000,
            'h' => 3_600_000,
            _ => 60_000,
        };
        return Ok(policyc::store::now_ms() - n.saturating_mul(ms));
    }
    let day = policyc::replay::source::parse_day(s.get(..10).ok_or_else(bad)?).ok_or_else(bad)?;
    let rest = &s[10..];
    if rest.is_empty() {
        return Ok(day * 86_400_000);
    }
    let clock = rest
        .strip_prefix('T')
        .and_then(|r| r.strip_suffix('Z'))
        .ok_or_else(bad)?;
    let mut parts = clock.split(':');
    let mut field = |max: i64| -> Result<i64, String> {
        match parts.next() {
            None => Ok(0),
            Some(p) if p.len() == 2 => p.parse::<i64>().ok().filter(|v| *v < max).ok_or_else(bad),
            Some(_) => Err(bad()),
        }
    };
    let (h, m, sec) = (field(24)?, field(60)?, field(60)?);
    Ok(day * 86_400_000 + h * 3_600_000 + m * 60_000 + sec * 1000)
}

fn parse_money(s: &str) -> Result<Micros, String> {
    Micros::parse(s).map_err(|e| e.to_string())
}

/// A failure that ends the command with a message and an exit code.
struct Fail(u8, String);

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        let code = match e {
            Error::BadTable { .. } => EXIT_BAD_TABLE,
            Error::Internal(_) => EXIT_DIAGNOSTICS,
            Error::Read { .. } | Error::NotText { .. } | Error::Write { .. } => EXIT_USAGE,
        };
        Fail(code, e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(Fail(code, message)) => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "policyc: {message}");
            ExitCode::from(code)
        }
    }
}

fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
}

fn err(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(text.as_bytes());
}

/// Appends `text` to a file (a CI summary page).
fn append(path: &Path, text: &str) -> Result<(), Fail> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| {
            Fail(
                EXIT_USAGE,
                format!("cannot append to `{}`: {e}", path.display()),
            )
        })
}

fn load_text(sources: &mut Sources, path: &Path) -> Result<policyc::source::FileId, Fail> {
    let bytes = policyc::read_file(path)?;
    let text = String::from_utf8(bytes).map_err(|_| Error::NotText {
        path: path.display().to_string(),
    })?;
    Ok(sources.add(path.display().to_string(), text))
}

/// Prints findings as workflow commands or a SARIF log (nothing for the other formats),
/// paths relative to `$GITHUB_WORKSPACE` when it is set.
fn emit(
    format: CiFormat,
    rules: &[ci::RuleInfo],
    mut findings: Vec<ci::Finding>,
    properties: Option<serde_json::Value>,
) -> Result<(), Fail> {
    if let Ok(root) = std::env::var("GITHUB_WORKSPACE") {
        ci::strip_root(&mut findings, &root);
    }
    match format {
        CiFormat::Github => out(&ci::github::render(&findings)),
        CiFormat::Sarif => json(&ci::sarif::render(rules, &findings, properties))?,
        CiFormat::Human | CiFormat::Json => {}
    }
    Ok(())
}

/// Compiles a policy; prints its diagnostics to stderr (human), or stdout (json — with
/// `quiet_ok`, only when there are errors — github, sarif).
fn compile_policy(
    path: &Path,
    endpoints: Option<&Path>,
    revision: u64,
    format: CiFormat,
    quiet_ok: bool,
    allow: &[String],
) -> Result<(Sources, Option<Compiled>, Vec<Diagnostic>), Fail> {
    let mut sources = Sources::new();
    let policy = load_text(&mut sources, path)?;
    let catalogue = endpoints.map(|p| load_text(&mut sources, p)).transpose()?;
    let mut output = policyc::compile_sources(&sources, policy, catalogue, revision)?;
    output
        .diagnostics
        .retain(|d| !allow.iter().any(|a| a == d.code.as_str()));
    match format {
        CiFormat::Human => err(&diag::render_human(&sources, &output.diagnostics)),
        CiFormat::Json if !quiet_ok || output.has_errors() => {
            out(&diag::render_json(&sources, &output.diagnostics));
            out("\n");
        }
        CiFormat::Json => {}
        CiFormat::Github | CiFormat::Sarif => emit(
            format,
            &ci::diagnostic_rules(),
            ci::of_diagnostics(&sources, &output.diagnostics),
            None,
        )?,
    }
    Ok((sources, output.compiled, output.diagnostics))
}

/// A policy compiled in memory, with its sources (to point at its rules).
type LoadedPolicy = (Sources, policyc::ir::Policy);

/// Loads a table file, or compiles a policy file, into table bytes (and the policy IR and
/// its sources when there was one). Diagnostics go to stderr.
fn load_table_bytes(
    path: &Path,
    endpoints: Option<&Path>,
) -> Result<(Vec<u8>, Option<LoadedPolicy>), Fail> {
    let bytes = policyc::read_file(path)?;
    if policyc::is_table(&bytes) {
        return Ok((bytes, None));
    }
    let (sources, compiled, _) = compile_policy(path, endpoints, 0, CiFormat::Human, true, &[])?;
    match compiled {
        Some(c) => Ok((c.table, Some((sources, c.policy)))),
        None => Err(Fail(
            EXIT_DIAGNOSTICS,
            format!("`{}` has errors; nothing to do", path.display()),
        )),
    }
}

fn validate<'a>(path: &Path, bytes: &'a [u8]) -> Result<Table<'a>, Fail> {
    Table::from_bytes(bytes).map_err(|source| {
        Fail::from(Error::BadTable {
            path: path.display().to_string(),
            source,
        })
    })
}

fn json(value: &impl serde::Serialize) -> Result<(), Fail> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Fail(EXIT_USAGE, e.to_string()))?;
    out(&text);
    out("\n");
    Ok(())
}

fn run(cli: Cli) -> Result<u8, Fail> {
    match cli.command {
        Command::Check {
            policy,
            endpoints,
            allow,
            format,
        } => {
            let (_, compiled, _) =
                compile_policy(&policy, endpoints.as_deref(), 0, format, false, &allow)?;
            Ok(if compiled.is_some() {
                EXIT_OK
            } else {
                EXIT_DIAGNOSTICS
            })
        }
        Command::Compile {
            policy,
            endpoints,
            output,
            revision,
            allow,
            format,
        } => {
            let (_, compiled, _) = compile_policy(
                &policy,
                endpoints.as_deref(),
                revision,
                format,
                true,
                &allow,
            )?;
            let Some(compiled) = compiled else {
                return Ok(EXIT_DIAGNOSTICS);
            };
            policyc::write_atomic(&output, &compiled.table)?;
            let message = format!(
                "wrote {} ({} rules + default, {} bytes, revision {revision})\n",
                output.display(),
                compiled.policy.rules.len(),
                compiled.table.len()
            );
            match format {
                CiFormat::Human | CiFormat::Github | CiFormat::Sarif => err(&message),
                CiFormat::Json => json(&serde_json::json!({
                    "output": output.display().to_string(),
                    "rules": compiled.policy.rules.len(),
                    "bytes": compiled.table.len(),
                    "revision": revision,
                    "errors": 0,
                }))?,
            }
            Ok(EXIT_OK)
        }
        Command::Explain {
            table,
            endpoints,
            tenant,
            data_class,
            user_role,
            model,
            latency_budget_ms,
            cost_cap_per_1k,
            format,
        } => {
            let (bytes, _) = load_table_bytes(&table, endpoints.as_deref())?;
            let t = validate(&table, &bytes)?;
            let attrs = Attrs {
                tenant,
                data_class,
                user_role,
                model,
                latency_budget_ms,
                cost_cap_per_1k,
            };
            let e = explain::explain(&t, &attrs);
            match format {
                Format::Human => out(&explain::render_human(&e)),
                Format::Json => json(&e)?,
            }
            Ok(EXIT_OK)
        }
        Command::Test {
            policy,
            cases: cases_path,
            endpoints,
            format,
        } => {
            let (bytes, ir) = load_table_bytes(&policy, endpoints.as_deref())?;
            let t = validate(&policy, &bytes)?;
            let mut sources = Sources::new();
            let file = load_text(&mut sources, &cases_path)?;
            let parsed = cases::parse(&sources, file).map_err(|diags| {
                err(&diag::render_human(&sources, &diags));
                Fail(
                    EXIT_USAGE,
                    format!("`{}` is not a valid cases file", cases_path.display()),
                )
            })?;
            let results = cases::run(&t, ir.as_ref().map(|(_, p)| p), &parsed);
            let failed = results.iter().filter(|r| !r.passed).count();
            let cases_name = cases_path.display().to_string();
            match format {
                CiFormat::Github | CiFormat::Sarif => {
                    err(&format!(
                        "{} passed, {failed} failed\n",
                        results.len() - failed
                    ));
                    let findings = results
                        .iter()
                        .filter(|r| !r.passed)
                        .map(|r| cases::finding(r, &cases_name))
                        .collect();
                    emit(format, &[cases::finding_rule()], findings, None)?;
                }
                CiFormat::Json => json(&serde_json::json!({
                    "passed": results.len() - failed,
                    "failed": failed,
                    "cases": results,
                }))?,
                CiFormat::Human => {
                    let mut text = String::new();
                    for r in &results {
                        if r.passed {
                            text.push_str(&format!("ok    {}\n", r.name));
                        } else {
                            text.push_str(&format!(
                                "FAIL  {} ({}:{})\n",
                                r.name,
                                cases_path.display(),
                                r.line
                            ));
                            for f in &r.failures {
                                text.push_str(&format!("        {f}\n"));
                            }
                            for line in explain::render_human(&r.explanation).lines() {
                                text.push_str(&format!("        | {line}\n"));
                            }
                        }
                    }
                    text.push_str(&format!(
                        "\n{} passed, {failed} failed\n",
                        results.len() - failed
                    ));
                    out(&text);
                }
            }
            Ok(if failed == 0 {
                EXIT_OK
            } else {
                EXIT_TESTS_FAILED
            })
        }
        Command::Diff {
            old,
            new,
            endpoints,
            format,
        } => {
            let (old_bytes, _) = load_table_bytes(&old, endpoints.as_deref())?;
            let (new_bytes, _) = load_table_bytes(&new, endpoints.as_deref())?;
            let a = validate(&old, &old_bytes)?;
            let b = validate(&new, &new_bytes)?;
            let report = diff::diff(&a, &b);
            match format {
                Format::Human => out(&diff::render_human(&report)),
                Format::Json => json(&report)?,
            }
            Ok(EXIT_OK)
        }
        Command::Replay {
            new,
            audit,
            old,
            endpoints,
            from,
            to,
            tenant,
            fail_if,
            format,
        } => {
            let source = policyc::replay::Source::parse(&audit).map_err(|e| Fail(EXIT_USAGE, e))?;
            let (new_bytes, new_policy) = load_table_bytes(&new, endpoints.as_deref())?;
            let new_table = validate(&new, &new_bytes)?;
            let old_bytes = match &old {
                Some(path) => Some((path, load_table_bytes(path, endpoints.as_deref())?.0)),
                None => None,
            };
            let old_table = match &old_bytes {
                Some((path, bytes)) => Some(validate(path, bytes)?),
                None => None,
            };
            let filter = policyc::replay::Filter {
                from_ms: from,
                to_ms: to,
                tenant,
            };
            let mut replay =
                policyc::replay::Replay::new(&new_table, old_table.as_ref(), filter.clone());
            let stats = source
                .read(&filter, &mut replay)
                .map_err(|e| Fail(EXIT_USAGE, e))?;
            let mut report = replay.finish();
            report.shards = stats.shards;
            report.row_groups = stats.row_groups;
            report.row_groups_pruned = stats.row_groups_pruned;
            let held: Vec<(policyc::replay::Condition, bool)> = fail_if
                .into_iter()
                .map(|c| {
                    let h = c.holds(&report);
                    (c, h)
                })
                .collect();
            match format {
                CiFormat::Human => out(&report.render_human(&held)),
                CiFormat::Json => json(&report.to_json(&held))?,
                CiFormat::Github | CiFormat::Sarif => {
                    // Each change at the new policy's rule that decides it.
                    let locate = |rule: u32| {
                        let (sources, policy) = new_policy.as_ref()?;
                        let r = policy.rules.get(rule as usize).unwrap_or(&policy.default);
                        ci::Location::of(sources, r.head)
                    };
                    let whole = ci::Location::line(&new.display().to_string(), 1);
                    let mut findings = report.findings(&held, &locate, &whole);
                    if format == CiFormat::Github {
                        // The report on the job's summary page, when there is one.
                        if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
                            append(
                                Path::new(&path),
                                &report.render_markdown(&new.display().to_string(), &held),
                            )?;
                        }
                        // The summary on the run's page (no place in a file).
                        findings.push(ci::Finding {
                            level: ci::Level::Notice,
                            rule: String::new(),
                            title: "policyc replay".to_owned(),
                            message: report.summary(),
                            location: None,
                            related: Vec::new(),
                            properties: serde_json::Map::new(),
                        });
                    }
                    emit(
                        format,
                        &policyc::replay::finding_rules(),
                        findings,
                        Some(report.to_json(&held)),
                    )?;
                }
            }
            Ok(if held.iter().any(|(_, h)| *h) {
                EXIT_REPLAY_FAILED
            } else {
                EXIT_OK
            })
        }
        Command::Dump { table } => {
            let bytes = policyc::read_file(&table)?;
            let t = validate(&table, &bytes)?;
            out(&dump::dump(&t));
            Ok(EXIT_OK)
        }
        Command::Publish { table, url, by } => {
            let bytes = policyc::read_file(&table)?;
            let revision = validate(&table, &bytes)?.revision();
            let who = by.unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .unwrap_or_default();
                format!("policyc@{host}")
            });
            let read_revision = |b: &[u8]| Table::from_bytes(b).ok().map(|t| t.revision());
            match policyc::store::publish(&url, &bytes, revision, &who, read_revision) {
                Ok(policyc::store::Published::State { revision: state }) => {
                    err(&format!(
                        "published `{}` (policy revision {revision}) to {url}: state revision {state}\n",
                        table.display()
                    ));
                    Ok(EXIT_OK)
                }
                Ok(policyc::store::Published::Object) => {
                    err(&format!(
                        "published `{}` (policy revision {revision}) to {url}\n",
                        table.display()
                    ));
                    Ok(EXIT_OK)
                }
                Err(message) => Err(Fail(EXIT_PUBLISH, message)),
            }
        }
    }
}

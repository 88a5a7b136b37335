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
use policyc::{Compiled, Error, cases, diff, dump, explain};
use switchyard_table::{Micros, Table};

const EXIT_OK: u8 = 0;
const EXIT_DIAGNOSTICS: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_BAD_TABLE: u8 = 3;
const EXIT_TESTS_FAILED: u8 = 4;
const EXIT_PUBLISH: u8 = 5;

#[derive(Parser)]
#[command(
    name = "policyc",
    version,
    about = "Compile and check Switchyard routing policies",
    after_help = "Exit codes: 0 ok (warnings allowed), 1 policy errors, 2 usage or unreadable input, \
                  3 invalid table file, 4 test cases failed, 5 publishing refused or failed."
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
        format: Format,
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
        format: Format,
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
        format: Format,
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

fn load_text(sources: &mut Sources, path: &Path) -> Result<policyc::source::FileId, Fail> {
    let bytes = policyc::read_file(path)?;
    let text = String::from_utf8(bytes).map_err(|_| Error::NotText {
        path: path.display().to_string(),
    })?;
    Ok(sources.add(path.display().to_string(), text))
}

/// Compiles a policy; prints its diagnostics to stderr (human) or stdout (json).
fn compile_policy(
    path: &Path,
    endpoints: Option<&Path>,
    revision: u64,
    format: Format,
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
        Format::Human => err(&diag::render_human(&sources, &output.diagnostics)),
        Format::Json if !quiet_ok || output.has_errors() => {
            out(&diag::render_json(&sources, &output.diagnostics));
            out("\n");
        }
        Format::Json => {}
    }
    Ok((sources, output.compiled, output.diagnostics))
}

/// Loads a table file, or compiles a policy file, into table bytes (and the policy IR
/// when there was one).
fn load_table_bytes(
    path: &Path,
    endpoints: Option<&Path>,
) -> Result<(Vec<u8>, Option<policyc::ir::Policy>), Fail> {
    let bytes = policyc::read_file(path)?;
    if policyc::is_table(&bytes) {
        return Ok((bytes, None));
    }
    let (_, compiled, _) = compile_policy(path, endpoints, 0, Format::Human, true, &[])?;
    match compiled {
        Some(c) => Ok((c.table, Some(c.policy))),
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
                Format::Human => err(&message),
                Format::Json => json(&serde_json::json!({
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
            let results = cases::run(&t, ir.as_ref(), &parsed);
            let failed = results.iter().filter(|r| !r.passed).count();
            match format {
                Format::Json => json(&serde_json::json!({
                    "passed": results.len() - failed,
                    "failed": failed,
                    "cases": results,
                }))?,
                Format::Human => {
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

//! The `switchyard` binary: flags, logging, then [`switchyard::runtime::process::run`].

use std::io::Write as _;

use clap::Parser as _;

/// `switchyard audit …`: tools for the audit trail, run beside (or instead of) the router.
#[derive(Debug, clap::Parser)]
#[command(name = "switchyard audit", bin_name = "switchyard audit", version)]
enum Audit {
    /// Merge one tenant-hour's shards into one file, in an audit directory or the bucket the
    /// router ships to. Safe to rerun and to interrupt: inputs are deleted only after the
    /// merged file holds their rows, and a rerun finishes an interrupted run. Credentials
    /// for `s3://` come from the AWS environment, as for `--audit-sink`. Prints what it did
    /// as one JSON object.
    Compact {
        /// An audit directory (`--audit-dir`) or `s3://bucket/prefix` (`--audit-sink`).
        target: String,
        /// The tenant whose hour to compact (as in the `tenant=` directory, unescaped).
        #[arg(long)]
        tenant: String,
        /// The hour, `YYYY-MM-DDTHH` (UTC).
        #[arg(long)]
        hour: String,
        /// Say what would be merged; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn audit(args: impl Iterator<Item = std::ffi::OsString>) -> std::process::ExitCode {
    let Audit::Compact {
        target,
        tenant,
        hour,
        dry_run,
    } = Audit::parse_from(args);
    let _log = switchyard::runtime::logging::init("text", "info");
    let req = switchyard::audit::compact::Request {
        target,
        tenant,
        hour,
        dry_run,
    };
    match switchyard::audit::compact::run(&req) {
        Ok(r) => {
            let line = serde_json::json!({
                "partition": switchyard::audit::compact::partition(&req.tenant, &req.hour).unwrap_or_default(),
                "inputs": r.inputs,
                "rows": r.rows,
                "output": r.output,
                "deleted": r.deleted,
                "left_for_object_storage": r.elsewhere,
                "dry_run": req.dry_run,
            });
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "audit compact failed");
            std::process::ExitCode::FAILURE
        }
    }
}

fn main() -> std::process::ExitCode {
    let mut argv = std::env::args_os();
    if std::env::args_os().nth(1).is_some_and(|a| a == "audit") {
        argv.next();
        return audit(argv);
    }
    let args = switchyard::config::Args::parse();
    // Flushes the log queue when dropped, at the end of `main`.
    let _log = switchyard::runtime::logging::init(&args.log_format, &args.log);
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%location, panic = %message, "panic");
    }));
    let result = args
        .check()
        .map_err(anyhow::Error::from)
        .and_then(|config| switchyard::runtime::process::run(&config));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "switchyard failed to start");
            std::process::ExitCode::FAILURE
        }
    }
}

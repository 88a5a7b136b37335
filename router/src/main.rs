//! The `switchyard` binary: flags, logging, then [`switchyard::runtime::process::run`].

use clap::Parser as _;

fn main() -> std::process::ExitCode {
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

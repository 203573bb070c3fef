//! `loadtest`: parse the command line, start logging, run the mode. Everything else is in the
//! library (see `lib.rs`).
use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = loadtest::cli::Cli::parse();
    ledgerline_runtime::telemetry::init_logging(&Default::default());
    match loadtest::cli::execute(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("loadtest: {error}");
            ExitCode::from(2)
        }
    }
}

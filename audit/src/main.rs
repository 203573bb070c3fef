use audit::cli::{Cli, Command};
use audit::{app, Application, Settings};
use clap::Parser;
use ledgerline_runtime::{settings, shutdown, telemetry};
use std::process::ExitCode;
use std::time::Duration;

/// `audit verify` exit statuses (0 when every chain is intact).
const EXIT_BROKEN: u8 = 1;
/// `audit verify` could not read the store.
const EXIT_FAILED: u8 = 2;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if cli.print_settings {
        settings::cli::<Settings>("audit");
    }
    let settings: Settings = settings::load(cli.config.as_deref())?;
    match cli.command {
        None => {
            telemetry::init_logging(&settings.log);
            tracing::info!(?settings, "starting audit");
            let deadline = Duration::from_millis(settings.shutdown_deadline_ms);
            let app = Application::build(settings).await?;
            app.run_until_stopped(shutdown::on_signal(deadline)).await?;
            Ok(ExitCode::SUCCESS)
        }
        // No log subscriber: the runtime's logs go to stdout, which carries the JSON report.
        Some(command @ Command::Verify { .. }) => {
            match app::verify(&settings, &command.scope(&settings.kafka)).await {
                Ok(report) => {
                    println!("{}", serde_json::to_string(&report)?);
                    Ok(ExitCode::from(if report.intact { 0 } else { EXIT_BROKEN }))
                }
                Err(error) => {
                    eprintln!("audit verify: cannot read the audit store: {error}");
                    Ok(ExitCode::from(EXIT_FAILED))
                }
            }
        }
    }
}

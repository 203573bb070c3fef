use clap::Parser;
use ledger_writer::cli::Cli;
use ledger_writer::{Application, Settings};
use ledgerline_runtime::{settings, shutdown, telemetry};
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.print_settings {
        settings::cli::<Settings>("ledger-writer");
    }
    let settings: Settings = settings::load(cli.config.as_deref())?;
    telemetry::init_logging(&settings.log);
    tracing::info!(?settings, "starting ledger-writer");
    let deadline = Duration::from_millis(settings.shutdown_deadline_ms);
    let app = Application::build(settings).await?;
    match cli.command {
        None => app.run_until_stopped(shutdown::on_signal(deadline)).await?,
        Some(command) => {
            let (from, partitions) = command.replay_from();
            let report = app
                .replay(from, partitions, shutdown::on_signal(deadline))
                .await?;
            tracing::info!(?report, "replay finished");
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}

use clap::{CommandFactory, Parser};
use ledgerline_runtime::{settings, shutdown, telemetry};
use reconciler::cli::{Cli, Command};
use reconciler::{commands, Settings};
use std::process::ExitCode;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if cli.print_settings {
        settings::cli::<Settings>("reconciler");
    }
    let Some(command) = cli.command else {
        Cli::command().print_help()?;
        return Ok(ExitCode::from(commands::EXIT_FAILED));
    };
    let settings: Settings = settings::load(cli.config.as_deref())?;
    // The daemon logs like every service; the other commands keep stdout for their report.
    if matches!(command, Command::Daemon) {
        telemetry::init_logging(&settings.log);
        tracing::info!(?settings, "starting reconciler daemon");
    } else {
        telemetry::init_cli_logging(&settings.log);
    }
    let deadline = Duration::from_millis(settings.shutdown_deadline_ms);
    commands::execute(settings, command, shutdown::on_signal(deadline)).await
}

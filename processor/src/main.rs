use ledgerline_runtime::{settings, shutdown, telemetry};
use processor::{Application, Settings};
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = settings::cli::<Settings>("processor");
    let settings: Settings = settings::load(file.as_deref())?;
    telemetry::init_logging(&settings.log);
    tracing::info!(?settings, "starting processor");
    let deadline = Duration::from_millis(settings.shutdown_deadline_ms);
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown::on_signal(deadline)).await?;
    Ok(())
}

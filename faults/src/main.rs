//! `faults`: see the crate documentation and `docs/reliability.md`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    faults::cli::main().await
}

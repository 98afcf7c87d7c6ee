//! The `cairn` command.

#![forbid(unsafe_code)]

use std::time::Instant;

use cairn::gc::GcArgs;
use cairn::{shutdown_signal, Application, ServerArgs};
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "A self-hosted, MLflow-compatible AI platform"
)]
struct Cli {
    /// Log format.
    #[arg(long, env = "CAIRN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the tracking server.
    Server(ServerArgs),
    /// Serve registered models (Open Inference Protocol, MLflow /invocations).
    Serve(cairn::serve::ServeArgs),
    /// Permanently delete deleted experiments, runs and logged models, and their artifacts.
    Gc(GcArgs),
    /// Verify or export the tamper-evident audit log.
    Audit(cairn::audit::AuditArgs),
}

fn init_logging(format: LogFormat) {
    // RUST_LOG (or CAIRN_LOG) overrides; default is one INFO line per request.
    let filter = EnvFilter::try_from_env("CAIRN_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Server(args) => {
            let config = args.resolve()?;
            tracing::debug!(?config, "configuration");
            let app = Application::build(&config).await?;
            tracing::info!(
                addr = %app.addr(),
                startup_ms = started.elapsed().as_millis() as u64,
                "cairn listening"
            );
            app.run_until(shutdown_signal()).await?;
            tracing::info!("stopped cleanly");
        }
        Command::Serve(args) => {
            let config = args.resolve()?;
            tracing::debug!(?config, "serve configuration");
            let app = cairn_serve::ServeApp::build(config).await?;
            tracing::info!(
                addr = %app.http_addr()?,
                grpc_addr = %app.grpc_addr()?.map_or_else(|| "disabled".to_string(), |a| a.to_string()),
                startup_ms = started.elapsed().as_millis() as u64,
                "cairn serve listening; loading models"
            );
            app.run(shutdown_signal()).await?;
            tracing::info!("stopped cleanly");
        }
        Command::Gc(args) => {
            let (config, options) = args.resolve()?;
            let report = cairn::gc::run(&config, &options).await?;
            print!("{}", cairn::gc::summary(&report, options.dry_run));
        }
        Command::Audit(args) => {
            if !cairn::audit::run(args).await? {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

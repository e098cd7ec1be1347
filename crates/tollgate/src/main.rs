//! `tollgate`: the gateway's command line. Thin: it parses arguments, sets up
//! logging and calls into the `gateway` library.

mod admin;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than the system allocator: a request allocates and frees
/// many small buffers across worker threads, where glibc's malloc spent
/// about a tenth of the gateway's CPU (`_int_malloc`, `_int_free`,
/// `malloc_consolidate` in `perf`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use gateway::config::Config;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Tollgate: a self-hosted LLM API gateway.",
    long_about = "Tollgate: a self-hosted LLM API gateway.\n\n\
        Configuration comes from an optional TOML file (--config or TOLLGATE_CONFIG) and \
        TOLLGATE_* environment variables, which override any key: TOLLGATE_LISTEN, \
        TOLLGATE_DATABASE_URL, TOLLGATE_PROVIDERS__<NAME>__API_KEY, …"
)]
struct Cli {
    /// Path of the TOML configuration file.
    #[arg(long, short, global = true, env = "TOLLGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway (creates and migrates the database when needed).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Print the effective configuration's providers and models, then exit.
    CheckConfig,
    /// Manage users and balances.
    #[command(subcommand)]
    User(admin::UserCommand),
    /// Manage a user's API keys.
    #[command(subcommand)]
    Key(admin::KeyCommand),
    /// List a user's usage records, newest first.
    Usage(admin::UsageArgs),
    /// Top-up orders.
    #[command(subcommand)]
    Payments(admin::PaymentsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tollgate: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tollgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(&config).await,
            Command::CheckConfig => {
                for name in config.models.keys() {
                    let spec = config.model_spec(name).map_err(|e| e.to_string())?;
                    for c in &spec.channels {
                        println!(
                            "model {name} → provider {} ({}), priority {}, weight {}",
                            c.provider, c.upstream_model, c.priority, c.weight
                        );
                    }
                }
                println!(
                    "{} provider(s), {} model(s): configuration is valid",
                    config.providers.len(),
                    config.models.len()
                );
                Ok(())
            }
            Command::User(cmd) => admin::user(&config, cmd).await,
            Command::Key(cmd) => admin::key(&config, cmd).await,
            Command::Usage(args) => admin::usage(&config, args).await,
            Command::Payments(cmd) => admin::payments(&config, cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn migrate(config: &Config) -> Result<(), String> {
    let store = store::Store::connect(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    println!("database is up to date");
    Ok(())
}

async fn serve(config: Config) -> Result<(), String> {
    let listen = config.listen.clone();
    let gateway = gateway::build(config).await.map_err(|e| e.to_string())?;
    if let Some(token) = &gateway.generated_admin_token {
        println!("Admin token (shown once, keep it safe): {token}");
    }
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if let Some(token) = &gateway.console_setup_token {
        println!(
            "Make the console's first admin account (once): http://{addr}/console/setup?token={token}"
        );
    }
    println!("Tollgate listening on http://{addr}");
    tracing::info!(%addr, "listening");
    gateway::serve(gateway.app, listener, shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

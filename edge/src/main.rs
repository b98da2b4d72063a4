//! `if-edge`: the agent binary.
//!
//! `init` writes a working agent directory, `check-config` checks a config file, `run` runs the agent.
//! Errors print as `IF_ERR_xxx NAME: detail` and exit with the code's status (10 + class); usage errors
//! exit 2.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use if_edge::config::Config;
use if_edge::if_protocol::IfError;
use if_edge::if_protocol::envelope::{PROTOCOL_MAJOR, PROTOCOL_MINOR};
use if_edge::init::{InitRequest, init};

#[derive(Debug, Parser)]
#[command(name = "if-edge", about = "The IF edge agent", disable_version_flag = true)]
struct Cli {
    /// Print the version.
    #[arg(long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write DIR/edge.toml, the agent key DIR/agent.key (0600) and DIR/agent.pub.
    Init {
        /// Directory to write (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// The control broker, mqtt://HOST:PORT or mqtts://HOST:PORT (with --tls-ca).
        #[arg(long)]
        broker: String,
        /// The CA certificate (PEM) of an mqtts:// broker.
        #[arg(long, value_name = "FILE")]
        tls_ca: Option<PathBuf>,
        /// This agent's client certificate (PEM), for a broker that requires one.
        #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
        tls_cert: Option<PathBuf>,
        /// The client certificate's key (PEM, mode 0600).
        #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_cert"])]
        tls_key: Option<PathBuf>,
        /// Site name.
        #[arg(long)]
        site: String,
        /// Agent name.
        #[arg(long)]
        agent: String,
        /// The site's signed trust root (`ifctl trust init`); copied to DIR/policy/root.toml.
        #[arg(long)]
        trust_root: Option<PathBuf>,
    },
    /// Check a config file and exit.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Run the agent.
    Run {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// How log lines are written to stderr: text for people, json (one object per line) for
        /// journald and log shippers. Secrets are redacted in both.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Print the version.
    Version,
    /// Print if-edge's man page (roff).
    Man,
}

/// The log's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per event.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        _ if cli.version => version(),
        Some(Command::Version) => version(),
        Some(Command::Man) => man(),
        None => {
            eprintln!("usage: if-edge <init|check-config|run|version|man>; see if-edge --help");
            return ExitCode::from(2);
        }
        Some(Command::Init { dir, broker, site, agent, trust_root, tls_ca, tls_cert, tls_key }) => {
            let tls = tls_ca.map(|ca| if_edge::tls::TlsFiles { ca, cert: tls_cert, key: tls_key });
            run_init(InitRequest { dir, broker, site, agent, trust_root, tls })
        }
        Some(Command::CheckConfig { file }) => return check_config(&file),
        Some(Command::Run { config, log_format }) => run(config, log_format),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.code().exit_status())
        }
    }
}

/// Prints every problem of the file, one per line, or a one-line summary when there are none.
fn check_config(file: &std::path::Path) -> ExitCode {
    let status = ExitCode::from(if_edge::if_protocol::ErrorCode::ConfigInvalid.exit_status());
    let text = match if_edge::files::read_text(file, if_edge::files::DOC_MAX) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("IF_ERR_503 CONFIG_INVALID: {}: {e}", file.display());
            return status;
        }
    };
    // Exactly what `run` checks before it serves: the file's rules, then its TLS files, keys and trust.
    let checked = Config::from_text(file, &text).and_then(|loaded| {
        let list = if_edge::preflight::problems(&loaded.config);
        if list.is_empty() {
            Ok(loaded.config)
        } else {
            Err(if_edge::config::Problems { file: file.to_path_buf(), list })
        }
    });
    match checked {
        Ok(c) => {
            println!(
                "{}: ok (agent {}/{}, broker {}, trust root {}, {} allowed manifest(s), witness {})",
                file.display(),
                c.agent.site,
                c.agent.name,
                c.mqtt.broker,
                c.trust.root.as_ref().map_or_else(|| "none".to_string(), |r| r.display().to_string()),
                c.trust.allow.len(),
                c.witness.path.display()
            );
            ExitCode::SUCCESS
        }
        Err(p) => {
            for line in &p.list {
                eprintln!("IF_ERR_503 CONFIG_INVALID: {}: {line}", p.file.display());
            }
            eprintln!("{} problem(s)", p.list.len());
            status
        }
    }
}

fn man() -> Result<(), IfError> {
    let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command().version(env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    page.render(&mut out)
        .map_err(|e| IfError::format(if_edge::if_protocol::ErrorCode::SystemError, format_args!("man page: {e}")))?;
    std::io::Write::write_all(&mut std::io::stdout(), &out)
        .map_err(|e| IfError::format(if_edge::if_protocol::ErrorCode::SystemError, format_args!("man page: {e}")))
}

fn version() -> Result<(), IfError> {
    println!("if-edge {} (IF.connect {PROTOCOL_MAJOR}.{PROTOCOL_MINOR})", env!("CARGO_PKG_VERSION"));
    Ok(())
}

fn run_init(req: InitRequest) -> Result<(), IfError> {
    let written = init(&req)?;
    println!("wrote {} (agent config)", written.config.display());
    println!("wrote {} (agent identity key, mode 0600)", written.key.display());
    println!("wrote {} (agent public key: checkpoints verify against it)", written.public.display());
    match &written.trust_root {
        Some(r) => println!("wrote {} (trust root; signed manifests go in policy/manifests)", r.display()),
        None => println!("no trust root yet: add one with [trust] root, or run init again with --trust-root"),
    }
    println!("run it with: if-edge run --config {}", written.config.display());
    Ok(())
}

/// Sets up the log: `RUST_LOG` filters (default `info`); the `log` records of dependencies (rumqttc's
/// broker trouble) come through the same subscriber.
fn init_log(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .fmt_fields(tracing_subscriber::field::MakeExt::delimited(
                tracing_subscriber::fmt::format::debug_fn(if_edge::redact::write_field),
                " ",
            ))
            .with_writer(if_edge::redact::LogStderr::text())
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(false)
            .with_writer(if_edge::redact::LogStderr::json())
            .init(),
    }
}

fn run(config: PathBuf, log_format: LogFormat) -> Result<(), IfError> {
    let loaded = Config::load(&config)?;
    init_log(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| IfError::format(if_edge::if_protocol::ErrorCode::SystemError, format_args!("runtime: {e}")))?;
    runtime.block_on(async {
        watch_file_size_limit();
        let stop = shutdown();
        if_edge::agent::run(loaded, stop).await
    })
}

/// A process over its file size limit gets SIGXFSZ, which would kill it. The agent handles it instead:
/// the write fails with an error, the witness reports WITNESS_UNAVAILABLE, and nothing executes.
fn watch_file_size_limit() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::from_raw(libc::SIGXFSZ)) {
        Ok(mut s) => {
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    tracing::error!("file size limit reached: the witness log cannot grow");
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot watch for SIGXFSZ"),
    }
}

/// Resolves on SIGTERM or Ctrl-C. The SIGTERM handler is installed when this is called, not when the
/// future is first polled: a service manager that stops the agent the moment it is up must get the
/// ordered stop, not the default action of the signal.
fn shutdown() -> impl std::future::Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        match term {
            Some(mut term) => tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            },
            None => std::future::pending().await,
        }
    }
}

//! `if-collector`: verifies and collects agents' anchors until killed (`--follow`) or until the broker
//! has been quiet for `--wait-ms`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser as _;
use if_protocol::error::ErrorReport;

#[derive(Debug, clap::Parser)]
#[command(name = "if-collector", version, about = "Verify, keep and acknowledge IF edge anchors")]
struct Cli {
    /// Print verdicts and errors as JSON lines.
    #[arg(long)]
    json: bool,
    /// The CA certificate (PEM) of an mqtts:// broker.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for a broker that requires one.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The client certificate's key (PEM, mode 0600).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    args: if_collector::Args,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let tls = cli
        .tls_ca
        .clone()
        .map(|ca| if_edge::tls::TlsFiles { ca, cert: cli.tls_cert.clone(), key: cli.tls_key.clone() }.load("--tls"))
        .transpose();
    let result = tls.and_then(|tls| cli.args.options(tls, cli.json)).and_then(|opts| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                if_protocol::IfError::format(if_protocol::ErrorCode::SystemError, format_args!("runtime: {e}"))
            })?
            .block_on(if_collector::run(opts))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match cli.json {
                true => eprintln!("{}", serde_json::to_string(&ErrorReport::from(&e)).unwrap_or_default()),
                false => eprintln!("{e}"),
            }
            ExitCode::from(e.code().exit_status())
        }
    }
}

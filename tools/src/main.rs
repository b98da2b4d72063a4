//! `ifctl`: the IF edge operator CLI.
//!
//! Every failure prints as `IF_ERR_xxx NAME: message` on stderr (or as JSON with `--json`) and exits with
//! the code's stable exit status (10 + class); usage errors exit 2.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use if_protocol::error::ErrorReport;
use if_protocol::{ErrorCode, IfError, keys};

#[derive(Debug, Parser)]
#[command(name = "ifctl", version, about = "Operate IF edge agents")]
struct Cli {
    /// Print results and errors as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an Ed25519 key pair: DIR/NAME.key (mode 0600) and DIR/NAME.pub.
    Keygen {
        /// Key name: letters, digits, '_', '.', '-'.
        #[arg(long)]
        name: String,
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// List every IF error code with its name, exit status and whether it is retryable.
    Errors,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Keygen { name, out } => keygen(name, out, cli.json),
        Command::Errors => {
            errors(cli.json);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json {
                let report = serde_json::to_string(&ErrorReport::from(&e)).unwrap_or_default();
                eprintln!("{report}");
            } else {
                eprintln!("{e}");
            }
            ExitCode::from(e.code().exit_status())
        }
    }
}

fn keygen(name: &str, out: &std::path::Path, json: bool) -> Result<(), IfError> {
    let (paths, public) = if_edge::keyfile::generate(out, name)?;
    let id: String = keys::key_id(&public).iter().map(|b| format!("{b:02x}")).collect();
    if json {
        let v = serde_json::json!({ "secret": paths.secret, "public": paths.public, "key_id": id });
        println!("{v}");
    } else {
        println!("wrote {} (secret key, mode 0600: keep it on this machine)", paths.secret.display());
        println!("wrote {} (public key: give it to the agent's trust configuration)", paths.public.display());
        println!("key id {id}");
    }
    Ok(())
}

fn errors(json: bool) {
    if json {
        let rows: Vec<_> = ErrorCode::ALL
            .iter()
            .map(|c| {
                serde_json::json!({
                    "code": format!("IF_ERR_{:03}", c.number()),
                    "name": c.name(),
                    "message": c.message(),
                    "retryable": c.retryable(),
                    "exit_status": c.exit_status(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    println!("{:<11} {:<24} {:>4} {:<9} message", "code", "name", "exit", "retryable");
    for c in ErrorCode::ALL {
        let retry = if c.retryable() { "yes" } else { "no" };
        println!("IF_ERR_{:03} {:<24} {:>4} {:<9} {}", c.number(), c.name(), c.exit_status(), retry, c.message());
    }
}

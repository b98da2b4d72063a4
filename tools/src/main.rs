//! `ifctl`: the IF edge operator CLI.
//!
//! Every failure prints as `IF_ERR_xxx NAME: message` on stderr (or as JSON with `--json`) and exits with
//! the code's stable exit status (10 + class); usage errors exit 2. The grammar and the verbs are in
//! [`cli`]; the modules beside it do the work (sign and send, status, policy documents, the witness
//! file, the demo). One tokio runtime serves the whole process.

mod broker;
mod capability;
mod cli;
mod demo;
mod message;
mod policy;
mod retained;
mod seq;
mod settings;
mod status;
mod talent;
mod tally;
mod witness;

use std::process::ExitCode;

use clap::Parser as _;
use if_protocol::error::ErrorReport;
use if_protocol::{ErrorCode, IfError};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = settings::Settings::load(cli.config.as_deref()).and_then(|mut s| {
        // A flag wins over the file.
        for (flag, file) in [
            (&cli.tls_ca, &mut s.tls_ca),
            (&cli.tls_cert, &mut s.tls_cert),
            (&cli.tls_key, &mut s.tls_key),
            (&cli.agent_key, &mut s.agent_key),
            (&cli.agent_keys, &mut s.agent_keys),
        ] {
            if flag.is_some() {
                file.clone_from(flag);
            }
        }
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("runtime: {e}")))?
            .block_on(cli::run(&cli, &s))
    });
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

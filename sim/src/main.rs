//! `if-sim`: runs one studio device simulator until it is killed.

use std::process::ExitCode;

use clap::Parser as _;

#[derive(Debug, clap::Parser)]
#[command(name = "if-sim", version, about = "Run a simulated studio device")]
struct Cli {
    /// Say where it listens as JSON.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    device: if_sim::Device,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|runtime| runtime.block_on(if_sim::run(cli.device, cli.json)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("if-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

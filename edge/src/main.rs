//! `if-edge`: the agent binary.

use std::process::ExitCode;

const USAGE: &str = "usage: if-edge --version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["--version"] | ["version"] => {
            println!(
                "if-edge {} (IF.connect {}.{})",
                env!("CARGO_PKG_VERSION"),
                if_edge::if_protocol::envelope::PROTOCOL_MAJOR,
                if_edge::if_protocol::envelope::PROTOCOL_MINOR
            );
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

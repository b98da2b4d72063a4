//! Device simulators on real sockets, faithful to PROTOCOLS.md, with fault injection and a record of
//! everything they received. `ifctl sim vmix ...` runs one until it is killed.

pub mod videohub;
pub mod visca;
pub mod vmix;

use std::path::PathBuf;

use if_protocol::{ErrorCode, IfError};

/// Which simulator.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// vMix TCP API, with this many inputs.
    Vmix(usize),
    /// Videohub, this many inputs and outputs.
    Videohub(usize),
}

/// Runs the VISCA camera on a pseudo-terminal whose slave is linked at `link`.
pub fn run_visca(link: PathBuf, record: Option<PathBuf>, fault: Option<PathBuf>, json: bool) -> Result<(), IfError> {
    let failed = |e: std::io::Error| IfError::format(ErrorCode::SystemError, format_args!("visca simulator: {e}"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(failed)?;
    runtime.block_on(async {
        let pty = visca::open(&link).map_err(failed)?;
        match json {
            true => println!("{}", serde_json::json!({ "simulator": "visca", "link": link, "pty": pty.name })),
            false => println!("visca simulator on {} ({})", link.display(), pty.name),
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        visca::serve(pty, vmix::Files { record, fault }).await.map_err(failed)
    })
}

/// Runs a simulator on `127.0.0.1:port` (0: any free port) and prints the address it listens on (as
/// `{"simulator", "listening"}` with `json`).
pub fn run(kind: Kind, port: u16, record: Option<PathBuf>, fault: Option<PathBuf>, json: bool) -> Result<(), IfError> {
    let failed = |e: std::io::Error| IfError::format(ErrorCode::SystemError, format_args!("simulator: {e}"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(failed)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.map_err(failed)?;
        let addr = listener.local_addr().map_err(failed)?;
        let files = vmix::Files { record, fault };
        let name = match kind {
            Kind::Vmix(_) => "vmix",
            Kind::Videohub(_) => "videohub",
        };
        match json {
            true => println!("{}", serde_json::json!({ "simulator": name, "listening": addr.to_string() })),
            false => println!("{name} simulator listening on {addr}"),
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        match kind {
            Kind::Vmix(inputs) => vmix::serve(listener, files, inputs).await,
            Kind::Videohub(size) => videohub::serve(listener, files, size).await,
        }
        .map_err(failed)
    })
}

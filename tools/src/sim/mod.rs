//! Device simulators on real sockets, faithful to PROTOCOLS.md, with fault injection and a record of
//! everything they received. `ifctl sim vmix ...` runs one until it is killed.

pub mod vmix;

use std::path::PathBuf;

use if_protocol::{ErrorCode, IfError};

/// Runs the vMix simulator on `127.0.0.1:port` (0: any free port) and prints the address it listens on.
pub fn run_vmix(port: u16, record: Option<PathBuf>, fault: Option<PathBuf>, inputs: usize) -> Result<(), IfError> {
    let failed = |e: std::io::Error| IfError::format(ErrorCode::SystemError, format_args!("vmix simulator: {e}"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(failed)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.map_err(failed)?;
        let addr = listener.local_addr().map_err(failed)?;
        println!("vmix simulator listening on {addr}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        vmix::serve(listener, vmix::Files { record, fault }, inputs).await.map_err(failed)
    })
}

//! Studio devices, simulated on real sockets and pseudo-terminals, for the demo, the end-to-end suites
//! and anyone trying IF edge without hardware.
//!
//! Each simulator speaks its device's protocol as the device does, decoded by its own code (none of
//! the agent's), so a mistake in a driver's framing or parsing cannot pass for the device agreeing with
//! it. Each appends what it received to a record file and reads faults from a fault file, both of
//! which a test may read and change while the agent is connected.
//!
//! - [`vmix`]: the vMix TCP API.
//! - [`videohub`]: the Blackmagic Videohub Ethernet protocol.
//! - [`visca`]: a Sony VISCA camera on a serial line (a pty).
//! - [`visca_ip`]: a Sony camera that takes VISCA over IP, on UDP.
//! - [`tsl`]: a TSL UMD v5.0 receiver (a multiviewer's tally displays) on UDP.
//!
//! `if-sim vmix|videohub|visca|visca-ip|tsl ...` (and `ifctl sim ...`, the same [`Device`] grammar) runs one until
//! it is killed.

pub mod tsl;
pub mod videohub;
pub mod visca;
pub mod visca_ip;
pub mod vmix;

use std::io::Write as _;
use std::path::PathBuf;

/// Where a simulator keeps its files.
#[derive(Debug, Clone, Default)]
pub struct Files {
    /// Everything received is appended here.
    pub record: Option<PathBuf>,
    /// The current fault, read again for every connection and message.
    pub fault: Option<PathBuf>,
}

/// A simulator to run, with its flags.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Device {
    /// The vMix TCP API (port 8099 on a real vMix).
    Vmix {
        /// Port on 127.0.0.1; 0 picks a free one (printed).
        #[arg(long, default_value_t = 8099)]
        port: u16,
        /// Append every received line to this file.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Read the current fault from this file: refuse, http, hang, garbage, slow, er, drop.
        #[arg(long)]
        fault_file: Option<PathBuf>,
        /// Number of inputs.
        #[arg(long, default_value_t = 4)]
        inputs: usize,
    },
    /// A Sony VISCA camera on a pseudo-terminal.
    Visca {
        /// Where to link the serial port the agent opens.
        #[arg(long)]
        link: PathBuf,
        /// Append every received packet (MS HEX) to this file.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Read the current fault from this file: hang, syntax, busy, notexec, garbage.
        #[arg(long)]
        fault_file: Option<PathBuf>,
    },
    /// A Sony camera that takes VISCA over IP, on UDP.
    ViscaIp {
        /// UDP port on 127.0.0.1; 0 picks a free one (printed).
        #[arg(long, default_value_t = 52381)]
        port: u16,
        /// Append every received datagram (UNIX_US TYPE SEQ HEX) to this file.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Read the current fault from this file: refuse, hang, garbage, drop, slow, lose-ack,
        /// lose-command, busy, syntax, notexec.
        #[arg(long)]
        fault_file: Option<PathBuf>,
    },
    /// A TSL UMD v5.0 receiver: tally displays on UDP, each display message recorded.
    Tsl {
        /// UDP port on 127.0.0.1; 0 picks a free one (printed).
        #[arg(long, default_value_t = 8900)]
        port: u16,
        /// Append every display message received to this file, one line each.
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// A Blackmagic Videohub (port 9990 on a real router).
    Videohub {
        /// Port on 127.0.0.1; 0 picks a free one (printed).
        #[arg(long, default_value_t = 9990)]
        port: u16,
        /// Append every received block to this file, one line each.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Read faults from this file, one per line: refuse, hang, nak, drop, lock N.
        #[arg(long)]
        fault_file: Option<PathBuf>,
        /// Inputs and outputs.
        #[arg(long, default_value_t = 12)]
        size: usize,
    },
}

/// Runs `device` until the process ends, first printing where it is (as `{"simulator", ...}` with
/// `json`).
pub async fn run(device: Device, json: bool) -> std::io::Result<()> {
    match device {
        Device::Visca { link, record, fault_file } => {
            let pty = visca::open(&link)?;
            match json {
                true => println!("{}", serde_json::json!({ "simulator": "visca", "link": link, "pty": pty.name })),
                false => println!("visca simulator on {} ({})", link.display(), pty.name),
            }
            let _ = std::io::stdout().flush();
            visca::serve(pty, Files { record, fault: fault_file }).await
        }
        Device::Vmix { port, record, fault_file, inputs } => {
            let listener = listen("vmix", port, json).await?;
            vmix::serve(listener, Files { record, fault: fault_file }, inputs).await
        }
        Device::ViscaIp { port, record, fault_file } => {
            let socket = bind_udp("visca-ip", "visca-ip simulator", port, json).await?;
            visca_ip::serve(socket, Files { record, fault: fault_file }).await
        }
        Device::Tsl { port, record } => {
            let socket = bind_udp("tsl", "tsl receiver", port, json).await?;
            tsl::serve(socket, Files { record, fault: None }).await
        }
        Device::Videohub { port, record, fault_file, size } => {
            let listener = listen("videohub", port, json).await?;
            videohub::serve(listener, Files { record, fault: fault_file }, size).await
        }
    }
}

/// Binds UDP `127.0.0.1:port` and says where.
async fn bind_udp(name: &str, what: &str, port: u16, json: bool) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = tokio::net::UdpSocket::bind(("127.0.0.1", port)).await?;
    let addr = socket.local_addr()?;
    match json {
        true => println!("{}", serde_json::json!({ "simulator": name, "listening": addr.to_string() })),
        false => println!("{what} listening on udp {addr}"),
    }
    let _ = std::io::stdout().flush();
    Ok(socket)
}

/// Binds `127.0.0.1:port` and says where.
async fn listen(name: &str, port: u16, json: bool) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    match json {
        true => println!("{}", serde_json::json!({ "simulator": name, "listening": addr.to_string() })),
        false => println!("{name} simulator listening on {addr}"),
    }
    let _ = std::io::stdout().flush();
    Ok(listener)
}

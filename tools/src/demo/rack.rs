//! The demo's rack node: the real firmware under `qemu-system-arm -machine mps2-an386`, when QEMU and the
//! firmware image are on this machine. Its link is a pseudo-terminal QEMU makes (the agent opens it like a
//! USB serial adapter); its front panel is a pseudo-terminal the demo holds, to press a button and to see
//! the lamps.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use if_protocol::IfError;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::failed;

/// The firmware image built by `cargo build -p if-rack-node --profile firmware --target
/// thumbv7em-none-eabihf`, looked for beside this program in the same target directory.
pub(super) fn default_image() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?;
    Some(target.join("thumbv7em-none-eabihf/firmware/if-rack-node"))
}

/// Why the rack node is left out, if it is.
pub(super) fn missing(image: Option<&Path>) -> Option<String> {
    let qemu = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("qemu-system-arm").is_file()));
    if !qemu {
        return Some("qemu-system-arm is not installed".into());
    }
    match image {
        Some(i) if i.is_file() => None,
        _ => Some(
            "the firmware is not built (cargo build -p if-rack-node --profile firmware --target \
             thumbv7em-none-eabihf)"
                .into(),
        ),
    }
}

/// The node under QEMU.
pub(super) struct Rack {
    _qemu: tokio::process::Child,
    /// The link's pseudo-terminal, for the manifest's endpoint.
    pub(super) link: String,
    panel: tokio::io::WriteHalf<tokio_serial::SerialStream>,
    _slave: tokio_serial::SerialStream,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every panel line read so far.
    pub(super) seen: Vec<String>,
}

impl Rack {
    /// Boots `image` under QEMU; returns once QEMU has said where the link is.
    pub(super) async fn start(image: &Path) -> Result<Rack, IfError> {
        let (master, slave) = tokio_serial::SerialStream::pair().map_err(|e| failed("front panel pty", e))?;
        let slave_path = tokio_serial::SerialPort::name(&slave).ok_or_else(|| failed("front panel pty", "no name"))?;
        let mut qemu = tokio::process::Command::new("qemu-system-arm")
            .args(["-machine", "mps2-an386", "-display", "none", "-monitor", "none", "-serial", "pty", "-serial"])
            .arg(&slave_path)
            .arg("-kernel")
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed("qemu-system-arm", e))?;
        let mut said = String::new();
        let (mut out, mut err) = (qemu.stdout.take(), qemu.stderr.take());
        let link = tokio::time::timeout(Duration::from_secs(10), async {
            let (mut a, mut b) = ([0u8; 512], [0u8; 512]);
            loop {
                // QEMU says `char device redirected to /dev/pts/N (label serial0)` on one of its streams.
                let (n, buf) = tokio::select! {
                    n = async { match out.as_mut() { Some(o) => o.read(&mut a).await, None => std::future::pending().await } } => (n, &a),
                    n = async { match err.as_mut() { Some(e) => e.read(&mut b).await, None => std::future::pending().await } } => (n, &b),
                };
                match n {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => said.push_str(&String::from_utf8_lossy(&buf[..n])),
                }
                if let Some(p) = said.split_whitespace().find(|w| w.starts_with("/dev/pts/")) {
                    return Some(p.to_string());
                }
            }
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| failed("qemu-system-arm", "did not say where the node's link is"))?;
        let (read, panel) = tokio::io::split(master);
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut read = BufReader::new(read).lines();
            while let Ok(Some(line)) = read.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Rack { _qemu: qemu, link, panel, _slave: slave, lines, seen: Vec::new() })
    }

    /// Closes and opens contact `input` on the front panel, as a finger on a button does.
    pub(super) async fn press(&mut self, input: u8) -> Result<(), IfError> {
        self.panel.write_all(format!("press {input}\n").as_bytes()).await.map_err(|e| failed("front panel", e))?;
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.panel.write_all(format!("release {input}\n").as_bytes()).await.map_err(|e| failed("front panel", e))
    }

    /// The colour lamp `i` shows now, as the panel last printed it.
    pub(super) fn lamp(&self, i: u8) -> Option<&str> {
        let prefix = format!("lamp {i} ");
        self.seen.iter().rev().find_map(|l| l.strip_prefix(&prefix))
    }

    /// Waits up to `timeout` until `done` holds for the panel.
    pub(super) async fn until(&mut self, timeout: Duration, done: impl Fn(&Rack) -> bool) -> bool {
        let end = tokio::time::Instant::now() + timeout;
        loop {
            if done(self) {
                return true;
            }
            match tokio::time::timeout_at(end, self.lines.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                _ => return false,
            }
        }
    }
}

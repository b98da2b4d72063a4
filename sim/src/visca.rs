//! A Sony VISCA camera (docs/PROTOCOLS.md, "Sony VISCA") on a pseudo-terminal: camera address 1, two sockets.
//!
//! The simulator holds the master side of a pty pair and publishes the slave's path as a symlink, which
//! the agent opens like any serial port. A command (`81 01 ...`) takes a free socket and is answered with
//! ACK (`90 4y FF`) one frame later (17 ms) and completion (`90 5y FF`) when done: 300 ms for a preset
//! recall, one frame for anything else. A third command while both sockets are busy gets "buffer full"
//! (`90 60 03 FF`). Cancel (`81 2y FF`) ends the command in socket y, answered `90 6y 04 FF` (`05`
//! when the socket is empty). Inquiries (`81 09 ...`) get `90 50 ... FF`; `IF_Clear` and address set
//! are answered as a camera does. Every packet received is recorded as `UNIX_MS HEX`.
//!
//! Faults from the fault file: `hang` (answer nothing), `syntax` (every command: syntax error),
//! `busy` (every command: buffer full), `notexec` (every command: not executable now), `garbage`
//! (noise instead of answers), `drop` (the first byte of an answer, then nothing, as when a cable is
//! pulled mid-answer), `slow` (every answer 2 s late).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::Files;

fn fault(files: &Files) -> String {
    files.fault.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ")
}

/// The camera's end of a pty pair whose other end is linked where the agent opens it.
#[derive(Debug)]
pub struct Pty {
    master: tokio_serial::SerialStream,
    /// The slave stays open here too, unread: were it ever closed by all, the master would report
    /// hang-up for good and its reads would spin.
    _slave: tokio_serial::SerialStream,
    /// The slave's device path.
    pub name: String,
}

/// Opens the pty pair and links `link` to the slave, which the agent opens like any serial port.
pub fn open(link: &std::path::Path) -> std::io::Result<Pty> {
    let (master, slave) = tokio_serial::SerialStream::pair().map_err(std::io::Error::other)?;
    let name = tokio_serial::SerialPort::name(&slave).ok_or_else(|| std::io::Error::other("the pty has no name"))?;
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(&name, link)?;
    Ok(Pty { master, _slave: slave, name })
}

/// Answers on the camera's end until the process ends.
pub async fn serve(pty: Pty, files: Files) -> std::io::Result<()> {
    let Pty { master, _slave, .. } = pty;
    let (mut rx, tx) = tokio::io::split(master);
    let tx = Arc::new(Mutex::new(tx));
    let busy = Sockets::default();
    let mut line = Line::default();
    let mut buf = [0u8; 64];
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) | Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Ok(n) => n,
        };
        for p in line.feed(&buf[..n]) {
            record(&files, &p);
            let (tx, busy) = (tx.clone(), busy.clone());
            match fault(&files).as_str() {
                "slow" => drop(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    answer(&p, "", tx, busy).await
                })),
                f => answer(&p, f, tx, busy).await?,
            }
        }
    }
}

/// Longest message a camera takes, terminator included.
const MAX_MESSAGE: usize = 16;

/// The camera's reading of its serial line. A message from a controller starts with a header byte `8x`
/// (`x`: the camera's address, or 8 for a broadcast) and ends with the first `FF` after it. Bytes
/// before a header are line noise and are skipped; when a second header comes before the `FF`, the
/// first message was cut short and only the second is read; a message longer than [`MAX_MESSAGE`] is
/// dropped whole.
#[derive(Debug, Default)]
struct Line {
    pending: Vec<u8>,
}

fn is_header(b: u8) -> bool {
    (0x81..=0x88).contains(&b)
}

impl Line {
    /// The messages complete after `bytes` arrived.
    fn feed(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == 0xFF) {
            let chunk: Vec<u8> = self.pending.drain(..=end).collect();
            if let Some(start) = chunk.iter().rposition(|&b| is_header(b)) {
                let message = &chunk[start..];
                if message.len() <= MAX_MESSAGE {
                    out.push(message.to_vec());
                }
            }
        }
        // Nothing that waits for its terminator is ever longer than a message.
        if self.pending.len() > MAX_MESSAGE {
            let keep = self.pending.iter().rposition(|&b| is_header(b)).unwrap_or(self.pending.len());
            self.pending.drain(..keep);
            if self.pending.len() > MAX_MESSAGE {
                self.pending.clear();
            }
        }
        out
    }
}

fn record(files: &Files, packet: &[u8]) {
    if let Some(path) = &files.record {
        use std::io::Write as _;
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{ms} {}", hex(packet));
        }
    }
}

async fn send<W: AsyncWriteExt + Unpin>(tx: &Mutex<W>, bytes: &[u8]) -> std::io::Result<()> {
    let mut w = tx.lock().await;
    w.write_all(bytes).await?;
    w.flush().await
}

/// The camera's two sockets: 0 when free, else the number of the command executing there (so a
/// command cancelled and its socket given to another never completes in it).
type Sockets = Arc<Mutex<([u64; 2], u64)>>;

async fn answer<W: AsyncWriteExt + Unpin + Send + 'static>(
    p: &[u8],
    f: &str,
    tx: Arc<Mutex<W>>,
    busy: Sockets,
) -> std::io::Result<()> {
    match f {
        "hang" => return Ok(()),
        "garbage" => return send(&tx, &[0x12, 0x34, 0xFF]).await,
        "drop" => return send(&tx, &[0x90]).await,
        _ => {}
    }
    match p {
        [0x88, 0x01, 0x00, 0x01, 0xFF] => send(&tx, p).await,
        [0x88, 0x30, 0x01, 0xFF] => send(&tx, &[0x88, 0x30, 0x02, 0xFF]).await,
        [0x81, 0x09, 0x04, 0x00, 0xFF] => send(&tx, &[0x90, 0x50, 0x02, 0xFF]).await,
        [0x81, 0x09, ..] => send(&tx, &[0x90, 0x50, 0x00, 0xFF]).await,
        [0x81, 0x01, ..] if f == "syntax" => send(&tx, &[0x90, 0x60, 0x02, 0xFF]).await,
        [0x81, 0x01, ..] if f == "busy" => send(&tx, &[0x90, 0x60, 0x03, 0xFF]).await,
        [0x81, 0x01, ..] if f == "notexec" => send(&tx, &[0x90, 0x61, 0x41, 0xFF]).await,
        // Cancel: the command in socket y ends "cancelled"; an empty socket is "no socket".
        [0x81, c, 0xFF] if c & 0xF0 == 0x20 && (1..=2).contains(&(c & 0x0F)) => {
            let y = c & 0x0F;
            let was = std::mem::take(&mut busy.lock().await.0[usize::from(y - 1)]);
            send(&tx, &[0x90, 0x60 | y, if was == 0 { 0x05 } else { 0x04 }, 0xFF]).await
        }
        [0x81, 0x01, rest @ ..] if p.len() >= 5 => {
            let (socket, id) = {
                let mut b = busy.lock().await;
                b.1 += 1;
                let id = b.1;
                match b.0.iter().position(|x| *x == 0) {
                    Some(i) => {
                        b.0[i] = id;
                        (i, id)
                    }
                    None => return send(&tx, &[0x90, 0x60, 0x03, 0xFF]).await,
                }
            };
            let y = 0x41 + socket as u8;
            let done = if rest.starts_with(&[0x04, 0x3F, 0x02]) { 300 } else { 17 };
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(17)).await;
                let _ = send(&tx, &[0x90, y, 0xFF]).await;
                tokio::time::sleep(Duration::from_millis(done)).await;
                let mine = {
                    let mut b = busy.lock().await;
                    let mine = b.0[socket] == id;
                    if mine {
                        b.0[socket] = 0;
                    }
                    mine
                };
                if mine {
                    let _ = send(&tx, &[0x90, y + 0x10, 0xFF]).await;
                }
            });
            Ok(())
        }
        _ => send(&tx, &[0x90, 0x60, 0x02, 0xFF]).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_camera_reads_whole_messages_across_reads_and_skips_noise() {
        let mut l = Line::default();
        assert!(l.feed(&[0x12, 0x81, 0x01, 0x06]).is_empty(), "not ended yet");
        assert_eq!(l.feed(&[0x04, 0xFF, 0x81]), vec![vec![0x81, 0x01, 0x06, 0x04, 0xFF]]);
        assert_eq!(l.feed(&[0x09, 0x04, 0x00, 0xFF]), vec![vec![0x81, 0x09, 0x04, 0x00, 0xFF]]);
        assert_eq!(l.feed(&[0x81, 0x01, 0x81, 0x09, 0xFF]), vec![vec![0x81, 0x09, 0xFF]], "a cut message");
        assert!(l.feed(&[0x55, 0x66, 0xFF]).is_empty(), "noise alone is no message");
        let long: Vec<u8> = [0x81].into_iter().chain([0x01; 20]).chain([0xFF]).collect();
        assert!(l.feed(&long).is_empty(), "longer than any message");
        assert_eq!(l.feed(&[0x88, 0x30, 0x01, 0xFF]), vec![vec![0x88, 0x30, 0x01, 0xFF]], "and the line recovers");
    }
}

//! The rack node's firmware running in `qemu-system-arm -machine mps2-an386`, with its two UARTs on
//! pseudo-terminals: UART0, the link, on a pty that QEMU makes (the edge opens its path, as it would a
//! USB serial adapter), and UART1, the front panel, on a pty this harness makes and reads, so that no
//! line the firmware prints is lost before anyone listens.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serialport::{SerialPort as _, TTYPort};

/// The firmware image `tools/test.sh` builds, checked to be newer than its sources.
pub fn firmware() -> PathBuf {
    crate::cross_image(
        "thumbv7em-none-eabihf/firmware/if-rack-node",
        "cargo build -p if-rack-node --profile firmware --target thumbv7em-none-eabihf",
    )
}

/// One line the front panel printed, and when it arrived.
#[derive(Debug, Clone)]
pub struct PanelLine {
    /// When the harness read it.
    pub at: Instant,
    /// The line, without its newline.
    pub text: String,
}

/// A rack node under QEMU.
#[derive(Debug)]
pub struct RackNode {
    qemu: Child,
    link: String,
    panel: TTYPort,
    _panel_slave: TTYPort,
    lines: Arc<Mutex<Vec<PanelLine>>>,
}

impl RackNode {
    /// Boots the firmware; returns once QEMU has said where the link's pty is.
    pub fn start() -> RackNode {
        let (panel, slave) = TTYPort::pair().expect("a pty pair for the front panel");
        let slave_path = slave.name().expect("the pty's name");
        let mut qemu = Command::new("qemu-system-arm")
            .args(["-machine", "mps2-an386", "-display", "none", "-monitor", "none"])
            .args(["-serial", "pty", "-serial", &slave_path, "-kernel"])
            .arg(firmware())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-system-arm runs (tools/test.sh installs it)");
        let mut said = String::new();
        let stderr = qemu.stderr.take().expect("piped");
        let stdout = qemu.stdout.take().expect("piped");
        // QEMU says `char device redirected to /dev/pts/N (label serial0)` on one of its streams.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        for mut stream in [Box::new(stderr) as Box<dyn std::io::Read + Send>, Box::new(stdout)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                        break;
                    }
                }
            });
        }
        let end = Instant::now() + Duration::from_secs(10);
        let link = loop {
            if let Some(p) = said.split_whitespace().find(|w| w.starts_with("/dev/pts/")) {
                break p.to_string();
            }
            let left = end.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(s) => said.push_str(&s),
                Err(_) => panic!("QEMU did not say where the link is: {said:?}"),
            }
        };
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut reader = panel.try_clone_native().expect("clone the panel pty");
        reader.set_timeout(Duration::from_millis(100)).expect("timeout");
        let seen = lines.clone();
        std::thread::spawn(move || {
            let mut part = String::new();
            let mut buf = [0u8; 256];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => std::thread::sleep(Duration::from_millis(20)),
                    Ok(n) => {
                        part.push_str(&String::from_utf8_lossy(&buf[..n]));
                        while let Some(i) = part.find('\n') {
                            let text = part[..i].trim_end_matches('\r').to_string();
                            part.drain(..=i);
                            let mut l = seen.lock().unwrap_or_else(PoisonError::into_inner);
                            l.push(PanelLine { at: Instant::now(), text });
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
                if Arc::strong_count(&seen) == 1 {
                    return;
                }
            }
        });
        RackNode { qemu, link, panel, _panel_slave: slave, lines }
    }

    /// The path of the link's pty, for the edge to open.
    pub fn link(&self) -> &str {
        &self.link
    }

    /// Every line the front panel printed so far.
    pub fn lines(&self) -> Vec<PanelLine> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The panel's lines as text.
    pub fn text(&self) -> Vec<String> {
        self.lines().into_iter().map(|l| l.text).collect()
    }

    /// How many lines have been printed: a mark for [`RackNode::wait_line`].
    pub fn mark(&self) -> usize {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Waits up to `timeout` for the line `text` printed after `mark`.
    pub fn wait_line(&self, mark: usize, text: &str, timeout: Duration) -> Option<PanelLine> {
        crate::wait_for(timeout, || self.lines().into_iter().skip(mark).find(|l| l.text == text))
    }

    /// How many times `text` was printed after `mark`.
    pub fn count(&self, mark: usize, text: &str) -> usize {
        self.lines().into_iter().skip(mark).filter(|l| l.text == text).count()
    }

    /// Closes input `i`'s contact on the front panel.
    pub fn press(&mut self, i: u8) {
        self.say(&format!("press {i}\n"));
    }

    /// Opens input `i`'s contact.
    pub fn release(&mut self, i: u8) {
        self.say(&format!("release {i}\n"));
    }

    /// Writes a raw line to the front panel.
    pub fn say(&mut self, line: &str) {
        self.panel.write_all(line.as_bytes()).expect("write to the front panel");
    }

    /// Kills QEMU (the node loses power).
    pub fn kill(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

impl Drop for RackNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The edge's end of the link played by a test, frame by frame (the suites of the firmware itself; the
/// agent's driver has its own): a reader that decodes every frame the node sends, and heartbeats that
/// can be stopped to make the node's link time out.
#[derive(Debug)]
pub struct EdgeEnd {
    port: Arc<Mutex<TTYPort>>,
    frames: Arc<Mutex<Vec<(Instant, if_protocol::link::LinkFrame)>>>,
    beating: Arc<std::sync::atomic::AtomicBool>,
    seq: u8,
}

impl EdgeEnd {
    /// Opens the node's link pty and starts reading; heartbeats are off until [`EdgeEnd::beat`].
    pub fn open(path: &str) -> EdgeEnd {
        let mut port = serialport::new(path, 115_200).open_native().expect("open the link pty");
        port.set_timeout(Duration::from_millis(50)).expect("timeout");
        let mut reader = port.try_clone_native().expect("clone the link pty");
        let port = Arc::new(Mutex::new(port));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let got = frames.clone();
        std::thread::spawn(move || {
            let mut acc = if_protocol::link::Accumulator::new();
            let mut buf = [0u8; 256];
            while Arc::strong_count(&got) > 1 {
                match reader.read(&mut buf) {
                    Ok(n) if n > 0 => acc.feed(&buf[..n], |r| {
                        if let Ok(f) = r {
                            got.lock().unwrap_or_else(PoisonError::into_inner).push((Instant::now(), f));
                        }
                    }),
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let beating = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (on, out) = (beating.clone(), port.clone());
        std::thread::spawn(move || {
            while Arc::strong_count(&on) > 1 {
                if on.load(std::sync::atomic::Ordering::Relaxed) {
                    let hb = if_protocol::link::Message::Heartbeat { uptime_ms: 0 };
                    write_frame(&out, &if_protocol::link::LinkFrame { seq: 0, ack: 0, msg: hb });
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        EdgeEnd { port, frames, beating, seq: 0 }
    }

    /// Starts or stops sending heartbeats every 250 ms.
    pub fn beat(&self, on: bool) {
        self.beating.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes one frame.
    pub fn send(&self, frame: &if_protocol::link::LinkFrame) {
        write_frame(&self.port, frame);
    }

    /// Writes raw bytes.
    pub fn send_raw(&self, bytes: &[u8]) {
        let mut p = self.port.lock().unwrap_or_else(PoisonError::into_inner);
        p.write_all(bytes).expect("write to the link");
    }

    /// Every frame received so far.
    pub fn frames(&self) -> Vec<(Instant, if_protocol::link::LinkFrame)> {
        self.frames.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits up to `timeout` for a frame received at or after `since` that `pred` accepts.
    pub fn wait(
        &self,
        since: Instant,
        timeout: Duration,
        pred: impl Fn(&if_protocol::link::LinkFrame) -> bool,
    ) -> Option<if_protocol::link::LinkFrame> {
        crate::wait_for(timeout, || self.frames().into_iter().find(|(t, f)| *t >= since && pred(f)).map(|(_, f)| f))
    }

    /// Waits for the node's `Hello` and answers it with `Welcome { session }`; returns the `Hello`.
    pub fn handshake(&self, session: u32) -> if_protocol::link::Message {
        use if_protocol::link::{LinkFrame, Message};
        let since = Instant::now() - Duration::from_secs(60);
        let hello = self
            .wait(since, Duration::from_secs(5), |f| matches!(f.msg, Message::Hello { .. }))
            .expect("the node says Hello within a second of boot or of the port opening")
            .msg;
        let Message::Hello { boots, .. } = hello else { unreachable!("matched above") };
        self.send(&LinkFrame { seq: 0, ack: 0, msg: Message::Welcome { session, boots } });
        hello
    }

    /// Sends `msg` as the next reliable frame, resending every 100 ms (five sends at most) until the
    /// node answers; returns the answer (`Ack` or `Nak`), or `None` if none came.
    pub fn command(&mut self, msg: if_protocol::link::Message) -> Option<if_protocol::link::Message> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let frame = if_protocol::link::LinkFrame { seq: self.seq, ack: 0, msg };
        self.resend(&frame)
    }

    /// Sends `frame` as it is (its number unchanged) until it is answered.
    pub fn resend(&self, frame: &if_protocol::link::LinkFrame) -> Option<if_protocol::link::Message> {
        for _ in 0..5 {
            let since = Instant::now();
            self.send(frame);
            let answer = self.wait(since, Duration::from_millis(100), |f| f.msg.is_answer() && f.ack == frame.seq);
            if let Some(a) = answer {
                return Some(a.msg);
            }
        }
        None
    }
}

fn write_frame(port: &Mutex<TTYPort>, frame: &if_protocol::link::LinkFrame) {
    let mut buf = [0u8; if_protocol::link::MAX_ENCODED_LEN];
    let n = if_protocol::link::encode(frame, &mut buf).expect("the test's frames fit");
    let mut p = port.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = p.write_all(&buf[..n]);
}

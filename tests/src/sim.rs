//! Device simulators as real processes (`if-sim ...`) on real sockets, with their record of what they
//! received and a fault file the test can change while the agent is connected.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running simulator.
#[derive(Debug)]
pub struct Sim {
    /// `vmix`, `videohub`, `visca`, `visca-ip` or `tsl`.
    pub kind: &'static str,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Sim {
    /// Starts `if-sim KIND` on a free port.
    pub fn start(kind: &'static str) -> Sim {
        Sim::start_with(kind, &[])
    }

    /// Starts `if-sim KIND` on a free port with more flags (e.g. `--inputs 1000`).
    pub fn start_with(kind: &'static str, extra: &[&str]) -> Sim {
        let extra = extra.iter().map(|a| a.to_string()).collect();
        let mut sim = Sim { kind, port: 0, dir: tempfile::tempdir().expect("tempdir"), extra, child: None };
        sim.launch();
        sim
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(crate::bin("if-sim"));
        if self.kind == "visca" {
            cmd.args(["visca", "--link"]).arg(self.link());
        } else {
            cmd.args([self.kind, "--port", &self.port.to_string()]);
        }
        cmd.args(&self.extra);
        let mut child = cmd
            .arg("--record")
            .arg(self.record_path())
            .arg("--fault-file")
            .arg(self.fault_path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start if-sim");
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout");
        BufReader::new(out).read_line(&mut line).expect("the simulator says where it listens");
        assert!(line.contains("simulator"), "the simulator started: {line:?}");
        if self.kind != "visca" {
            let addr = line.trim().rsplit(' ').next().unwrap_or("");
            self.port = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
        }
        self.child = Some(child);
    }

    /// `tcp://127.0.0.1:PORT`; for VISCA `serial://LINK?baud=9600&address=1`, over IP
    /// `udp://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        match self.kind {
            "visca" => format!("serial://{}?baud=9600&address=1", self.link().display()),
            "visca-ip" => format!("udp://127.0.0.1:{}", self.port),
            _ => format!("tcp://127.0.0.1:{}", self.port),
        }
    }

    /// Where the VISCA simulator links its serial port.
    fn link(&self) -> PathBuf {
        self.dir.path().join("camera")
    }

    fn record_path(&self) -> PathBuf {
        self.dir.path().join("received.log")
    }

    fn fault_path(&self) -> PathBuf {
        self.dir.path().join("fault")
    }

    /// Every line (vMix) or block (Videohub, `HEADER: line | line`) received so far.
    pub fn received(&self) -> Vec<String> {
        std::fs::read_to_string(self.record_path()).unwrap_or_default().lines().map(String::from).collect()
    }

    /// What was received (`rx LINE`) and answered (`tx LINE`), in order (vMix).
    pub fn timeline(&self) -> Vec<String> {
        self.stamped().into_iter().map(|(_, l)| l).collect()
    }

    /// Each line received, with when (microseconds since the Unix epoch) (vMix).
    pub fn received_at(&self) -> Vec<(u128, String)> {
        self.stamped().into_iter().filter_map(|(t, l)| Some((t, l.strip_prefix("rx ")?.to_string()))).collect()
    }

    fn stamped(&self) -> Vec<(u128, String)> {
        let path = self.record_path().with_extension("timeline");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once(' ').and_then(|(t, l)| Some((t.parse().ok()?, l.to_string()))))
            .collect()
    }

    /// Sets the fault (`""` for none).
    pub fn fault(&self, fault: &str) {
        std::fs::write(self.fault_path(), fault).expect("write fault");
    }

    /// Kills it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}

//! `if-collector --follow` (what `ifctl witness verify-anchors --follow` runs) as a real process: its key
//! directory, its own store, its archive directory, and what it said, line by line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::broker::Broker;

/// A running collector.
#[derive(Debug)]
pub struct Collector {
    dir: tempfile::TempDir,
    url: String,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Collector {
    /// Starts it against `broker`.
    pub fn start(broker: &Broker) -> Collector {
        Collector::start_at(&broker.url(), &[])
    }

    /// Starts it against the broker at `url`, with more arguments (e.g. `--tls-ca FILE`).
    pub fn start_at(url: &str, extra: &[&str]) -> Collector {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("keys")).expect("keys dir");
        let extra = extra.iter().map(|a| a.to_string()).collect();
        let mut c = Collector { dir, url: url.to_string(), extra, child: None };
        c.launch();
        c
    }

    fn launch(&mut self) {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(self.out()).expect("output file");
        let err_path = self.dir.path().join("collector.err");
        let listening = |p: &Path| std::fs::read_to_string(p).unwrap_or_default().matches("listening").count();
        let before = listening(&err_path);
        let err = std::fs::OpenOptions::new().create(true).append(true).open(&err_path).expect("error file");
        let child = Command::new(crate::bin("if-collector"))
            .args(["--follow", "--broker", &self.url, "--keys"])
            .arg(self.dir.path().join("keys"))
            .arg("--store")
            .arg(self.dir.path().join("collector.redb"))
            .arg("--archive")
            .arg(self.archive())
            .args(&self.extra)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the collector");
        self.child = Some(child);
        let up = crate::wait_for(std::time::Duration::from_secs(10), || (listening(&err_path) > before).then_some(()));
        assert!(up.is_some(), "the collector subscribed");
    }

    /// Pins agent `site.agent`'s public key.
    pub fn trust(&self, site: &str, agent: &str, public: &Path) {
        let to = self.dir.path().join("keys").join(format!("{site}.{agent}.pub"));
        std::fs::copy(public, to).expect("copy the agent's key");
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("collector.out")
    }

    /// Where accepted notes are archived.
    pub fn archive(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    /// Every line it printed so far.
    pub fn said(&self) -> Vec<String> {
        std::fs::read_to_string(self.out()).unwrap_or_default().lines().map(String::from).collect()
    }

    /// The sizes it accepted, in order.
    pub fn accepted(&self) -> Vec<u64> {
        self.said().iter().filter_map(|l| l.split_once(": ACCEPTED size ")?.1.split(' ').next()?.parse().ok()).collect()
    }

    /// Kills it and starts it again with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Kills it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

//! `if-collector --follow` (what `ifctl witness verify-anchors --follow` runs) as a real process: its key
//! directory, its own store, its archive directory, and what it said, line by line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::agent::Agent;
use crate::broker::Broker;
use crate::probe::Probe;

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

    /// One not started against `broker`: its directories only, for [`Collector::once`].
    pub fn unstarted(broker: &Broker) -> Collector {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("keys")).expect("keys dir");
        Collector { dir, url: broker.url(), extra: Vec::new(), child: None }
    }

    /// Runs it once, without `--follow`: it judges what arrives until `wait_ms` pass without a message,
    /// then exits.
    pub fn once(&self, wait_ms: u64) -> std::process::Output {
        Command::new(crate::bin("if-collector"))
            .args(["--broker", &self.url, "--wait-ms", &wait_ms.to_string(), "--keys"])
            .arg(self.dir.path().join("keys"))
            .arg("--store")
            .arg(self.dir.path().join("collector.redb"))
            .arg("--archive")
            .arg(self.archive())
            .output()
            .expect("run the collector")
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

/// The agent's retained status on `broker`, where its status is (null when none came within 5 s).
pub fn status(broker: &Broker, agent: &Agent) -> serde_json::Value {
    let w = Probe::connect(broker, &agent.site, &agent.name);
    w.subscribe(&w.topics.status);
    w.next_on(&w.topics.status, std::time::Duration::from_secs(5)).map(|m| m.json()).unwrap_or_default()
}

/// The agent's (acknowledged, pending) anchors from its retained status on `broker`, where its status is.
pub fn anchors(broker: &Broker, agent: &Agent) -> (u64, u64) {
    let s = status(broker, agent);
    (s["anchors"]["acked"].as_u64().unwrap_or(0), s["anchors"]["pending"].as_u64().unwrap_or(u64::MAX))
}

/// An agent on `broker` for `desk` whose log holds `records` (written through the store's API) before it
/// first starts, its records archived upstream, its status and its offers upstream every second, and
/// `keep_records = keep` when given. Not started; no collector knows its key yet.
pub fn archiving_agent(broker: &Broker, desk: &crate::talent::Talent, records: u64, keep: Option<u64>) -> Agent {
    archiving_agent_sized(broker, desk, records, keep, 0)
}

/// [`archiving_agent`] whose records carry `detail` bytes of device answer each.
pub fn archiving_agent_sized(
    broker: &Broker,
    desk: &crate::talent::Talent,
    records: u64,
    keep: Option<u64>,
    detail: usize,
) -> Agent {
    let agent = Agent::init(broker, &[desk]);
    let keep = keep.map(|n| format!("\nkeep_records = {n}")).unwrap_or_default();
    agent.edit_config(|t| {
        t.replace("status_interval_s = 30", "status_interval_s = 1")
            .replace("republish_s = 10", "republish_s = 1")
            .replace("rejected_per_s = 20", &format!("rejected_per_s = 20{keep}"))
    });
    crate::bench::fill_agent_log_sized(&agent, records, detail);
    agent
}

/// Waits (30 s at most) until none of the agent's anchors is pending and the acknowledged one is beyond
/// size `beyond`; returns its size.
pub fn until_all_acknowledged(broker: &Broker, agent: &Agent, beyond: u64) -> u64 {
    let acked = crate::wait_for(std::time::Duration::from_secs(30), || {
        let (acked, pending) = anchors(broker, agent);
        (pending == 0 && acked > beyond).then_some(acked)
    });
    acked.unwrap_or_else(|| panic!("anchors not acknowledged; status {:?}", anchors(broker, agent)))
}

impl Collector {
    /// Checks, with the agent stopped, that its log's anchored checkpoint is `acked` and that this
    /// collector accepted every checkpoint the agent made up to it, in order and each once, and archived
    /// each note, and refused nothing but what the contract allows.
    pub fn holds_every_checkpoint(&self, agent: &Agent, acked: u64) {
        let mut store = if_edge::witness::store::Store::open_existing(&agent.db()).expect("open the agent's log");
        let made: Vec<u64> = store.checkpoints().expect("checkpoints").into_iter().map(|(s, _)| s).collect();
        assert_eq!(store.anchored().expect("anchored"), acked);
        let accepted = self.accepted();
        assert!(accepted.windows(2).all(|w| w[0] < w[1]), "accepted in order: {accepted:?}");
        let due: Vec<u64> = made.iter().copied().filter(|s| *s <= acked).collect();
        assert!(accepted.len() >= due.len(), "accepted {accepted:?}, made {made:?}");
        assert_eq!(accepted[..due.len()], due[..], "every checkpoint up to the acknowledged one, each once");
        // A collector that subscribes after the anchors went out first sees only the retained latest,
        // whose proof starts at an anchor it has not seen: it refuses that one (no acknowledgement, no
        // evidence), and the agent's next round brings the rest in order. Nothing else is refused.
        let said = self.said();
        let gap = |l: &String| l.contains("REFUSED") && l.contains("its proof starts at size");
        assert!(!said.iter().any(|l| l.contains("EVIDENCE") || (l.contains("REFUSED") && !gap(l))), "{said:#?}");
        for size in &due {
            let note = self.archive().join(format!("anchors/{}/{}/{size:020}.note", agent.site, agent.name));
            assert!(note.is_file(), "archived: {}", note.display());
        }
    }
}

impl Collector {
    /// Where the agent's log is archived as tlog-tiles.
    pub fn tiles_of(&self, agent: &Agent) -> PathBuf {
        self.archive().join(format!("tlog/{}/{}", agent.site, agent.name))
    }

    /// The size of the checkpoint the archive of `agent`'s log publishes, if it has one.
    pub fn published(&self, agent: &Agent) -> Option<u64> {
        let note = std::fs::read_to_string(self.tiles_of(agent).join("checkpoint")).ok()?;
        if_protocol::witness::checkpoint::Checkpoint::parse_note(&note).ok().map(|cp| cp.size)
    }
}

/// The agent's signed-note verifier key, as a tlog-tiles client takes it.
pub fn vkey(agent: &Agent) -> String {
    let loaded = if_edge::config::Config::load(&agent.config()).expect("config");
    let public = if_edge::keyfile::read_public(&agent.public_key()).expect("public key");
    let origin = loaded.config.origin();
    let verifier = if_protocol::witness::checkpoint::NoteVerifier::new(&origin, public).expect("verifier");
    verifier.to_vkey().to_string()
}

/// Runs the independent verifier (`fixtures/tlog_verify.py`, the Python standard library only) on the
/// archive `dir` with the verifier key `vkey`, proving each of `indices` from the tiles; (passed, what
/// it printed).
pub fn tlog_verify(dir: &Path, vkey: &str, indices: &[u64]) -> (bool, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tlog_verify.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(dir)
        .arg(vkey)
        .args(indices.iter().map(u64::to_string))
        .output()
        .expect("python3");
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

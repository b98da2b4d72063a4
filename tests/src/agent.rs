//! The real `if-edge` binary, set up with `if-edge init` and run, stopped and killed like on a rack box.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use if_protocol::messages::{State, Status};
use rumqttc::v5::Event;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;

use crate::broker::Broker;
use crate::signal;
use crate::talent::Talent;

/// An `if-edge` a bench runs in place of the workspace's own build (`IF_BENCH_AGENT=path`).
pub const OTHER_BUILD: &str = "IF_BENCH_AGENT";

/// An agent directory and, while running, its process.
#[derive(Debug)]
pub struct Agent {
    /// The directory `if-edge init` wrote.
    pub dir: tempfile::TempDir,
    /// Site name.
    pub site: String,
    /// Agent name.
    pub name: String,
    /// The policy key of the agent's trust root, when [`Agent::init`] made one.
    pub policy_key: Option<Arc<Talent>>,
    /// The key that signed that root and signs manifests for it.
    pub root_key: Option<Arc<Talent>>,
    /// `RUST_LOG` for the next start.
    pub log_filter: String,
    /// More environment for the next start (`NOTIFY_SOCKET`, say).
    pub env: Vec<(String, String)>,
    /// More arguments of `if-edge run` for the next start (`--log-format json`, say).
    pub run_args: Vec<String>,
    /// Another `if-edge` to run, and the program that runs it (the Arm build under `qemu-aarch64`).
    pub program: Option<(PathBuf, Vec<std::ffi::OsString>)>,
    broker_url: String,
    /// Talents still to add by policy command at the first start: (name, public key file).
    to_add: Vec<(String, PathBuf)>,
    child: Option<Child>,
}

impl Agent {
    /// The environment the packaged systemd unit (`packaging/if-edge.service`) gives the agent, to run it
    /// as a box does: `(name, value)` of each `Environment=` assignment.
    pub fn service_environment() -> Vec<(String, String)> {
        let unit = crate::workspace().join("packaging/if-edge.service");
        let text = std::fs::read_to_string(&unit).expect("the packaged unit");
        text.lines()
            .filter_map(|l| l.strip_prefix("Environment="))
            .flat_map(str::split_whitespace)
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    }

    /// `if-edge init` against `broker`, with a trust root whose policy key adds `talents` at the first
    /// start (with `ifctl talent add`, as an operator would).
    pub fn init(broker: &Broker, talents: &[&Talent]) -> Agent {
        let root_key = Talent::new("root");
        let policy_key = Talent::new("sec");
        let keys = tempfile::tempdir().expect("tempdir");
        let root = keys.path().join("root.toml");
        Agent::trust_root(&root_key, &policy_key, &root);
        let mut agent = Agent::init_with(broker, &["--trust-root", path(&root)]);
        agent.policy_key = Some(Arc::new(policy_key));
        agent.root_key = Some(Arc::new(root_key));
        agent.to_add = talents.iter().map(|t| (t.name.clone(), t.public.clone())).collect();
        agent
    }

    /// Agent `name` of site `site` with the same trust root (and policy key) as `like`, one more box of
    /// the same fleet; `talents` are added at its first start.
    pub fn init_like(like: &Agent, broker: &Broker, site: &str, name: &str, talents: &[&Talent]) -> Agent {
        let root = like.home().join("policy/root.toml");
        let mut agent = Agent::init_as(broker, site, name, &["--trust-root", path(&root)]);
        agent.policy_key.clone_from(&like.policy_key);
        agent.root_key.clone_from(&like.root_key);
        agent.to_add = talents.iter().map(|t| (t.name.clone(), t.public.clone())).collect();
        agent
    }

    /// `if-edge init` against `broker` with no trust root: the test provides its own policy.
    pub fn init_bare(broker: &Broker) -> Agent {
        Agent::init_with(broker, &[])
    }

    /// Like [`Agent::init_bare`], for agent `name` of site `site` (one of a fleet).
    pub fn init_named(broker: &Broker, site: &str, name: &str) -> Agent {
        Agent::init_as(broker, site, name, &[])
    }

    fn init_with(broker: &Broker, extra: &[&str]) -> Agent {
        Agent::init_as(broker, "studio-a", "edge-1", extra)
    }

    /// An agent of `site`/`name` on `broker_url` whose files are (or will be) under `dir`, not running.
    fn at(dir: tempfile::TempDir, site: &str, name: &str, broker_url: &str) -> Agent {
        Agent {
            dir,
            site: site.into(),
            name: name.into(),
            policy_key: None,
            root_key: None,
            log_filter: "info".into(),
            env: Vec::new(),
            run_args: Vec::new(),
            program: None,
            broker_url: broker_url.into(),
            to_add: Vec::new(),
            child: None,
        }
    }

    fn init_as(broker: &Broker, site: &str, name: &str, extra: &[&str]) -> Agent {
        let agent = Agent::at(tempfile::tempdir().expect("tempdir"), site, name, &broker.url());
        let mut cmd = Command::new(crate::bin("if-edge"));
        cmd.arg("init").arg("--dir").arg(agent.home()).args([
            "--broker",
            &broker.url(),
            "--site",
            &agent.site,
            "--agent",
            &agent.name,
        ]);
        cmd.args(extra);
        let out = cmd.output().expect("run if-edge init");
        assert!(out.status.success(), "if-edge init failed: {}", String::from_utf8_lossy(&out.stderr));
        agent
    }

    /// A copy of this (not yet started) agent's directory: the same key, name and config, as a copied
    /// configuration on a second box would be, with a witness log of its own.
    pub fn twin(&self) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("cp").arg("-a").arg(self.home()).arg(dir.path()).status().expect("cp");
        assert!(status.success(), "copy the agent directory");
        let mut twin = Agent::at(dir, &self.site, &self.name, &self.broker_url);
        twin.policy_key.clone_from(&self.policy_key);
        twin.root_key.clone_from(&self.root_key);
        twin
    }

    /// `ifctl talent VERB ARGS` signed with the agent's policy key; its output.
    pub fn talent(&self, verb: &str, args: &[&str]) -> Output {
        self.policy_command("talent", verb, args)
    }

    /// `ifctl binding VERB ARGS` signed with the agent's policy key; its output.
    pub fn binding(&self, verb: &str, args: &[&str]) -> Output {
        self.policy_command("binding", verb, args)
    }

    fn policy_command(&self, family: &str, verb: &str, args: &[&str]) -> Output {
        let key = self.policy_key.as_ref().expect("an agent made by Agent::init has a policy key");
        let mut all = vec![family, verb];
        all.extend_from_slice(args);
        let pinned = self.public_key();
        all.extend(["--broker", &self.broker_url, "--site", &self.site, "--agent", &self.name]);
        all.extend(["--key", path(&key.secret), "--why", "test set-up", "--agent-key", path(&pinned)]);
        Agent::ifctl(&all)
    }

    /// Signs manifest `text` with the root key into the agent's manifest directory as `NAME.toml`.
    pub fn add_manifest(&self, name: &str, text: &str) {
        let key = self.root_key.as_ref().expect("an agent made by Agent::init has a root key");
        let unsigned = self.dir.path().join(format!("{name}.unsigned.toml"));
        std::fs::write(&unsigned, text).expect("write manifest");
        let out_path = self.home().join("policy/manifests").join(format!("{name}.toml"));
        let out =
            Agent::ifctl(&["manifest", "sign", path(&unsigned), "--key", path(&key.secret), "--out", path(&out_path)]);
        assert!(out.status.success(), "manifest sign: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Adds the talents [`Agent::init`] was given; the agent must be running.
    fn add_talents(&mut self) {
        for (name, public) in std::mem::take(&mut self.to_add) {
            let out = self.talent("add", &["--name", &name, "--role", "test", "--pubkey", path(&public)]);
            assert!(out.status.success(), "talent add {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    /// The agent directory.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    /// `edge.toml`.
    pub fn config(&self) -> PathBuf {
        self.home().join("edge.toml")
    }

    /// The witness log file.
    pub fn db(&self) -> PathBuf {
        self.home().join("data/witness.redb")
    }

    /// The agent's public key file.
    pub fn public_key(&self) -> PathBuf {
        self.home().join("agent.pub")
    }

    /// An `ifctl.toml` for `talent` (key file `secret`) commanding this agent, with its key pinned.
    pub fn ifctl_toml(&self, talent: &str, secret: &Path) -> String {
        format!(
            "broker = \"{}\"\nsite = \"{}\"\nagent = \"{}\"\nkey = \"{}\"\nsender = \"{talent}\"\nagent_key = \"{}\"\n",
            self.broker_url,
            self.site,
            self.name,
            secret.display(),
            self.public_key().display()
        )
    }

    /// Copies the agent's public key into `dir` as `{site}.{agent}.pub`, where `ifctl --agent-keys DIR`
    /// and the collector look for it.
    pub fn pin(&self, dir: &Path) {
        std::fs::create_dir_all(dir).expect("key directory");
        std::fs::copy(self.public_key(), dir.join(format!("{}.{}.pub", self.site, self.name))).expect("pin key");
    }

    /// `--broker URL --site S --agent A --agent-key agent.pub`: where `ifctl` finds this agent and the key
    /// its answers must be signed with.
    pub fn addr(&self) -> Vec<String> {
        let key = self.public_key().to_str().expect("utf-8 path").to_string();
        ["--broker", &self.broker_url, "--site", &self.site, "--agent", &self.name, "--agent-key", &key]
            .map(String::from)
            .to_vec()
    }

    /// The log of every run so far.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// Everything the agent has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Rewrites the config file.
    pub fn edit_config(&self, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(self.config()).expect("read edge.toml");
        std::fs::write(self.config(), f(text)).expect("write edge.toml");
    }

    /// Starts `if-edge run` and waits until it serves: its retained `online` status of this run,
    /// signed by its key, is on the broker (published once its subscriptions are in place).
    pub fn start(&mut self) {
        let since_ms = now_ms();
        self.spawn();
        let up = self.wait_online(since_ms, Duration::from_secs(20));
        assert!(up, "the agent did not come online; its log:\n{}", self.log());
        self.add_talents();
    }

    /// Starts `if-edge run` and returns at once, without waiting for it to serve.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = OpenOptions::new().create(true).append(true).open(self.log_path()).expect("open agent.log");
        let mut cmd = match &self.program {
            Some((runner, args)) => {
                let mut c = Command::new(runner);
                c.args(args);
                c
            }
            // A bench may run another build of the agent, to compare two in one session.
            None => Command::new(std::env::var_os(OTHER_BUILD).map_or_else(|| crate::bin("if-edge"), PathBuf::from)),
        };
        let child = cmd
            .arg("run")
            .arg("--config")
            .arg(self.config())
            .args(&self.run_args)
            .env("RUST_LOG", &self.log_filter)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start if-edge");
        self.child = Some(child);
    }

    /// Whether the agent's signed `online` status published at or after `since_ms` appears within
    /// `timeout` (false at once if the process ends).
    fn wait_online(&mut self, since_ms: u64, timeout: Duration) -> bool {
        let key = if_edge::keyfile::read_public(&self.public_key()).expect("the agent's public key");
        let topic = if_protocol::topics::Topics::new(&self.site, &self.name).status;
        let broker = if_edge::mqtt::BrokerAddr::parse(&self.broker_url).expect("broker URL");
        let id = format!("ready-{}", uuid::Uuid::new_v4().simple());
        let (client, mut conn) =
            rumqttc::v5::Client::new(rumqttc::v5::MqttOptions::new(id, broker.host, broker.port), 16);
        let context = if_protocol::attest::topic_context(&topic);
        let end = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < end && self.is_running() {
            let Ok(event) = conn.recv_timeout(Duration::from_millis(200)) else { continue };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe(topic.clone(), QoS::AtMostOnce);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let own =
                        if_protocol::attest::verify(&key, if_protocol::attest::PUBLISH_DOMAIN, &context, &p.payload);
                    let status = own.ok().and_then(|o| serde_json::from_slice::<Status>(&o).ok());
                    if status.is_some_and(|s| s.state == State::Online && s.at_ms.unwrap_or(0) >= since_ms) {
                        let _ = client.disconnect();
                        return true;
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        false
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, without waiting: the agent begins its ordered stop ([`Agent::stop`] then waits for it).
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            signal(c, "TERM");
        }
    }

    /// SIGTERM, and waits for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, "TERM");
            let status = c.wait().expect("wait for if-edge");
            assert!(status.success(), "if-edge exited with {status}; its log:\n{}", self.log());
        }
    }

    /// `ifctl trust init`: a trust root at `out` whose key is `root_key` and whose policy key is `policy_key`.
    pub fn trust_root(root_key: &Talent, policy_key: &Talent, out: &Path) {
        let (key, policy) = (path(&root_key.secret), path(&policy_key.public));
        let out_path = path(out);
        let out = Agent::ifctl(&["trust", "init", "--key", key, "--policy-key", policy, "--out", out_path]);
        assert!(out.status.success(), "ifctl trust init: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs `ifctl` with `args`.
    pub fn ifctl(args: &[&str]) -> Output {
        Command::new(crate::bin("ifctl")).args(args).output().expect("run ifctl")
    }

    /// `ifctl witness verify` on the log, with the agent's public key.
    pub fn verify_witness(&self) -> Output {
        Agent::ifctl(&["witness", "verify", "--db", path(&self.db()), "--key", path(&self.public_key())])
    }

    /// `ifctl witness export`, parsed.
    pub fn export(&self) -> Vec<serde_json::Value> {
        let out = Agent::ifctl(&["witness", "export", "--db", path(&self.db())]);
        assert!(out.status.success(), "export failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("export line is JSON"))
            .collect()
    }

    /// How many `edge.ping` commands the log says ran (EXECUTED records).
    pub fn executed_pings(&self) -> usize {
        let ping = |r: &&serde_json::Value| r["kind"] == "EXECUTED" && r["capability"] == "if://capability/edge.ping";
        self.export().iter().filter(ping).count()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

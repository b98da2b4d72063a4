//! A site with one device: a broker, an agent whose trust root vouches for the device's manifest, a
//! `desk` talent granted the given actions on it, and a probe that sends the desk's commands.

use std::time::Duration;

use if_protocol::envelope::{ArgValue, Args, EnvelopeBody, Hazards};

use crate::agent::Agent;
use crate::broker::Broker;
use crate::probe::Probe;
use crate::talent::Talent;

/// The site.
#[derive(Debug)]
pub struct DeviceRig {
    /// The broker.
    pub broker: Broker,
    /// The agent (running).
    pub agent: Agent,
    /// The talent that sends commands.
    pub desk: Talent,
    /// Sends and collects replies.
    pub probe: Probe,
    capability: String,
    n: u64,
}

impl DeviceRig {
    /// Installs `manifest` (its id `capability`, version 1.0.0), starts the agent and grants the desk
    /// `actions` in scope `studio:control` with the on-air hazard. `before_start` runs with the agent
    /// configured but not yet started (to subscribe to topics, say).
    pub fn new(manifest: &str, capability: &str, actions: &[&str], before_start: impl FnOnce(&Broker, &Agent)) -> Self {
        let broker = Broker::start();
        let desk = Talent::new("desk");
        let mut agent = Agent::init(&broker, &[&desk]);
        agent.add_manifest("device", manifest);
        agent.edit_config(|t| t.replace("allow = []", &format!("allow = [\"{capability}@1.0.0\"]")));
        before_start(&broker, &agent);
        agent.start();
        let mut grant =
            vec!["--name", "desk", "--capability", capability, "--scope", "studio:control", "--hazard", "on_air"];
        for a in actions {
            grant.extend(["--action", a]);
        }
        let out = agent.talent("grant", &grant);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let probe = Probe::connect(&broker, &agent.site, &agent.name);
        DeviceRig { broker, agent, desk, probe, capability: capability.to_string(), n: 0 }
    }

    /// Sends `action` with `args` (declaring `hazards`) and returns the reply.
    pub fn ask(&mut self, action: &str, hazards: Hazards, args: &[(&str, ArgValue)]) -> serde_json::Value {
        let frame = self.frame(action, hazards, args);
        self.n += 1;
        let corr = self.n.to_be_bytes();
        self.probe.request(frame, &corr);
        loop {
            let m = self.probe.next(Duration::from_secs(10)).expect("a reply");
            if m.correlation.as_deref() == Some(&corr[..]) {
                return m.json();
            }
        }
    }

    /// Sends `n` commands at once and returns their replies (in any order).
    pub fn burst(&mut self, n: usize, action: &str, args: &[(&str, ArgValue)]) -> Vec<serde_json::Value> {
        let frames: Vec<Vec<u8>> = (0..n).map(|_| self.frame(action, Hazards::NONE, args)).collect();
        for f in frames {
            self.n += 1;
            self.probe.request(f, &self.n.to_be_bytes());
        }
        let msgs = self.probe.until_replies(n, Duration::from_secs(30));
        msgs.into_iter().filter(|m| m.topic != self.probe.topics.dlq).map(|m| m.json()).collect()
    }

    /// The signed frame of a command.
    pub fn frame(&self, action: &str, hazards: Hazards, args: &[(&str, ArgValue)]) -> Vec<u8> {
        let mut b: EnvelopeBody = self.desk.next_ping();
        b.capability = self.capability.as_str().try_into().expect("short");
        b.action = action.try_into().expect("short");
        b.hazards = hazards;
        let mut a = Args::new();
        for (k, v) in args {
            a.insert(k, v.clone()).expect("arg");
        }
        b.args = a;
        self.desk.sign(&b)
    }
}

/// A reply's error code, or `OK`.
pub fn code(reply: &serde_json::Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("OK")
}

/// A text argument.
pub fn text(v: &str) -> ArgValue {
    ArgValue::Text(v.try_into().expect("short"))
}

/// The `[limits]` of a device under test.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Commands a second.
    pub rps: f32,
    /// Commands at once.
    pub burst: u32,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// Commands that may wait.
    pub queue_depth: u32,
    /// Answer timeout.
    pub timeout_ms: u32,
    /// Breaker waits and reconnect delays, seconds.
    pub backoff: &'static str,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { rps: 50.0, burst: 10, breaker_failures: 5, queue_depth: 32, timeout_ms: 800, backoff: "[1, 2, 5]" }
    }
}

/// An unsigned manifest, version 1.0.0, scope `studio:control`: each action in `actions` costs 0; those
/// in `on_air` carry the on-air hazard, those in `emergency` take the priority lane.
pub fn manifest(
    id: &str,
    driver: &str,
    endpoint: &str,
    limits: Limits,
    actions: &[&str],
    on_air: &[&str],
    emergency: &[&str],
) -> String {
    let l = limits;
    let mut text = format!(
        "id = \"{id}\"\nversion = \"1.0.0\"\ndriver = \"{driver}\"\nendpoint = \"{endpoint}\"\nrequires_secrets = []\n\
         scopes = [\"studio:control\"]\nexpires = 4000000000\n\n[limits]\nrps = {:.1}\nburst = {}\nbackoff = {}\n\
         breaker_failures = {}\nqueue_depth = {}\ntimeout_ms = {}\n",
        l.rps, l.burst, l.backoff, l.breaker_failures, l.queue_depth, l.timeout_ms
    );
    for a in actions {
        let hazards = if on_air.contains(a) { "[\"on_air\"]" } else { "[]" };
        text += &format!(
            "\n[[actions]]\nname = \"{a}\"\nhazards = {hazards}\ncost = 0\nemergency = {}\n",
            emergency.contains(a)
        );
    }
    text
}

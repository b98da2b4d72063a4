//! The MQTT topics of the contract, built and read in one place.
//!
//! Every topic is `if/v1/{site}/{agent}/{kind}`; replies add the sender (`reply/{sender}` and anything
//! under it). The agent, `ifctl`, the collector and the tests all take their topics from here, so a
//! change to the scheme is a change to this file and nowhere else.

use alloc::format;
use alloc::string::{String, ToString};

/// The root of every topic of this contract version.
pub const ROOT: &str = "if/v1";

/// The longest response topic the agent answers on.
pub const MAX_REPLY_TOPIC: usize = 256;

/// The kinds of topic under an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Signed envelopes in.
    Cmd,
    /// Rejected and failed commands.
    Dlq,
    /// Retained status, birth and Will.
    Status,
    /// Signed policy documents pushed at run time.
    Policy,
    /// Device feedback (tally) for panels.
    Tally,
    /// Signed checkpoints upstream.
    Anchors,
    /// The upstream's acknowledgements of anchors.
    AnchorsAck,
    /// Evidence about the agent's log (a fork, a shrink), from the collector.
    Security,
    /// Contact closures (buttons) on the agent's rack nodes.
    Gpi,
    /// Video routers' routing, with labels (retained).
    Routing,
    /// The log's entry bundles upstream, for the archive.
    Tiles,
    /// The archive's acknowledgements of entry bundles.
    TilesAck,
}

impl Kind {
    /// Every kind, for parsing.
    pub const ALL: [Kind; 12] = [
        Kind::Cmd,
        Kind::Dlq,
        Kind::Status,
        Kind::Policy,
        Kind::Tally,
        Kind::Anchors,
        Kind::AnchorsAck,
        Kind::Security,
        Kind::Gpi,
        Kind::Routing,
        Kind::Tiles,
        Kind::TilesAck,
    ];

    /// The topic's last levels.
    pub const fn suffix(self) -> &'static str {
        match self {
            Kind::Cmd => "cmd",
            Kind::Dlq => "dlq",
            Kind::Status => "status",
            Kind::Policy => "policy",
            Kind::Tally => "tally",
            Kind::Anchors => "anchors",
            Kind::AnchorsAck => "anchors/ack",
            Kind::Security => "security",
            Kind::Gpi => "gpi",
            Kind::Routing => "routing",
            Kind::Tiles => "tiles",
            Kind::TilesAck => "tiles/ack",
        }
    }
}

/// A topic of `kind` for `site` and `agent`, either of which may be the wildcard `+`.
pub fn of(site: &str, agent: &str, kind: Kind) -> String {
    format!("{ROOT}/{site}/{agent}/{}", kind.suffix())
}

/// The subscription filter for `kind` on every agent of `site` (`+`: every site).
pub fn every(site: &str, kind: Kind) -> String {
    of(site, "+", kind)
}

/// Which agent a topic of `kind` belongs to: `(site, agent)`, or `None` for any other topic.
pub fn agent_of(topic: &str, kind: Kind) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix(ROOT)?.strip_prefix('/')?;
    let (site, rest) = rest.split_once('/')?;
    let (agent, rest) = rest.split_once('/')?;
    let named = |s: &str| !s.is_empty() && !s.contains(['+', '#']);
    (rest == kind.suffix() && named(site) && named(agent)).then_some((site, agent))
}

/// One agent's topics, built once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Signed envelopes in.
    pub cmd: String,
    /// Rejected and failed commands.
    pub dlq: String,
    /// Retained status, birth and Will.
    pub status: String,
    /// Signed policy documents (manifests, trust roots) pushed at run time.
    pub policy: String,
    /// Device feedback (tally) for panels.
    pub tally: String,
    /// Signed checkpoints upstream.
    pub anchors: String,
    /// Acknowledgements of anchors.
    pub anchors_ack: String,
    /// Evidence about this agent's log.
    pub security: String,
    /// Button presses and releases on this agent's rack nodes.
    pub gpi: String,
    /// Video routers' routing (retained), one topic per router under it: [`Topics::routing_of`].
    pub routing: String,
    /// Entry bundles of the log, for the archive.
    pub tiles: String,
    /// The archive's acknowledgements of them.
    pub tiles_ack: String,
    /// The site.
    pub site: String,
    /// The agent's name.
    pub agent: String,
    base: String,
}

impl Topics {
    /// Topics of agent `agent` at `site`.
    pub fn new(site: &str, agent: &str) -> Self {
        Topics {
            cmd: of(site, agent, Kind::Cmd),
            dlq: of(site, agent, Kind::Dlq),
            status: of(site, agent, Kind::Status),
            policy: of(site, agent, Kind::Policy),
            tally: of(site, agent, Kind::Tally),
            anchors: of(site, agent, Kind::Anchors),
            anchors_ack: of(site, agent, Kind::AnchorsAck),
            security: of(site, agent, Kind::Security),
            gpi: of(site, agent, Kind::Gpi),
            routing: of(site, agent, Kind::Routing),
            tiles: of(site, agent, Kind::Tiles),
            tiles_ack: of(site, agent, Kind::TilesAck),
            site: site.to_string(),
            agent: agent.to_string(),
            base: format!("{ROOT}/{site}/{agent}"),
        }
    }

    /// The routing topic of router `name` (its capability without `if://capability/`).
    pub fn routing_of(&self, name: &str) -> String {
        format!("{}/{name}", self.routing)
    }

    /// The default reply topic of a sender.
    pub fn reply_for(&self, sender: &str) -> String {
        format!("{}/reply/{sender}", self.base)
    }

    /// The filter that receives every reply to `sender` (its reply topic and everything under it).
    pub fn replies_of(&self, sender: &str) -> String {
        format!("{}/reply/{sender}/#", self.base)
    }

    /// Whether the agent may answer on `topic` (a publisher's MQTT 5 response topic): the reply topic of
    /// `sender` or a topic under it, or, when the sender is not known (nothing verified), under any
    /// sender's reply topic of this agent. Never a wildcard, never another agent's or another kind of
    /// topic: the agent publishes only where its contract says.
    pub fn allows_reply(&self, topic: &str, sender: Option<&str>) -> bool {
        let plain = !topic.is_empty() && topic.len() <= MAX_REPLY_TOPIC && !topic.contains(['+', '#', '\0']);
        // `{base}/reply/` then the sender (or any one name), then nothing or `/...`; no allocation.
        let Some(rest) = topic.strip_prefix(self.base.as_str()).and_then(|r| r.strip_prefix("/reply/")) else {
            return false;
        };
        let (name, _) = rest.split_once('/').unwrap_or((rest, ""));
        plain && !name.is_empty() && sender.is_none_or(|s| name == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_scheme() {
        let t = Topics::new("studio-a", "edge-1");
        assert_eq!(t.cmd, "if/v1/studio-a/edge-1/cmd");
        assert_eq!(t.reply_for("desk"), "if/v1/studio-a/edge-1/reply/desk");
        assert_eq!(t.replies_of("desk"), "if/v1/studio-a/edge-1/reply/desk/#");
        assert_eq!(t.dlq, "if/v1/studio-a/edge-1/dlq");
        assert_eq!(t.anchors_ack, "if/v1/studio-a/edge-1/anchors/ack");
        assert_eq!(every("+", Kind::Anchors), "if/v1/+/+/anchors");
        assert_eq!(every("studio-a", Kind::Status), "if/v1/studio-a/+/status");
    }

    #[test]
    fn each_topic_reads_back_as_its_agent_and_kind_only() {
        for kind in Kind::ALL {
            let topic = of("studio-a", "edge-1", kind);
            for other in Kind::ALL {
                let found = agent_of(&topic, other);
                assert_eq!(found, (other == kind).then_some(("studio-a", "edge-1")), "{topic} as {other:?}");
            }
        }
        for bad in
            ["if/v1/a/anchors", "if/v2/a/b/anchors", "x/if/v1/a/b/anchors", "if/v1/+/b/anchors", "if/v1//b/anchors"]
        {
            assert_eq!(agent_of(bad, Kind::Anchors), None, "{bad}");
        }
        assert_eq!(agent_of("if/v1/a/b/anchors/ack", Kind::Anchors), None);
    }

    #[test]
    fn replies_go_only_under_the_senders_reply_topic() {
        let t = Topics::new("studio-a", "edge-1");
        assert!(t.allows_reply("if/v1/studio-a/edge-1/reply/desk", Some("desk")));
        assert!(t.allows_reply("if/v1/studio-a/edge-1/reply/desk/6f1c", Some("desk")));
        assert!(!t.allows_reply("if/v1/studio-a/edge-1/reply/desktop", Some("desk")), "another sender's");
        assert!(!t.allows_reply("if/v1/studio-a/edge-1/reply/op/x", Some("desk")));
        for bad in [
            "if/v1/studio-a/edge-1/cmd",
            "if/v1/studio-a/edge-1/status",
            "if/v1/studio-a/edge-1/policy",
            "if/v1/studio-a/edge-1/anchors",
            "if/v1/studio-b/edge-3/reply/desk",
            "if/v1/studio-a/edge-1/reply/+",
            "if/v1/studio-a/edge-1/reply/desk/#",
            "",
        ] {
            assert!(!t.allows_reply(bad, Some("desk")), "{bad}");
            assert!(!t.allows_reply(bad, None), "{bad}");
        }
        assert!(t.allows_reply("if/v1/studio-a/edge-1/reply/probe/1", None), "unverified: any sender's reply topic");
        assert!(!t.allows_reply("if/v1/studio-a/edge-1/reply/", None));
        let long = alloc::format!("if/v1/studio-a/edge-1/reply/desk/{}", "x".repeat(MAX_REPLY_TOPIC));
        assert!(!t.allows_reply(&long, Some("desk")), "too long");
    }
}

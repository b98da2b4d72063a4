//! The audience of an envelope: one agent, every agent of a site, or the fleet, named inside the
//! signature so that a frame captured on one agent's topic does nothing on another's; and the reach a
//! grant gives, the widest audience its envelopes may name.

use core::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{ErrorCode, IfError, Result};
use crate::if_bail;
use crate::name::{Name, check_token};

/// Whom an envelope is for, inside the signature: an agent refuses an envelope addressed to another one
/// before anything else happens (`WRONG_AUDIENCE`), so a frame captured on one agent's topic does nothing
/// on another's.
///
/// Shown in JSON as `"site/agent"`, `"site/*"` (every agent of the site) or `"*"` (the fleet). The two
/// wide forms run only where the sender's grant allows that [`Reach`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Audience {
    /// One agent.
    Agent {
        /// Its site.
        site: Name,
        /// Its name.
        agent: Name,
    },
    /// Every agent of a site.
    Site {
        /// The site.
        site: Name,
    },
    /// Every agent of the fleet.
    Fleet,
}

/// How wide an audience is; a grant names the widest it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// One named agent.
    #[default]
    Agent,
    /// Every agent of a site.
    Site,
    /// Every agent.
    Fleet,
}

impl Reach {
    /// `agent`, `site` or `fleet`.
    pub fn name(self) -> &'static str {
        match self {
            Reach::Agent => "agent",
            Reach::Site => "site",
            Reach::Fleet => "fleet",
        }
    }

    /// The reach named `name`.
    pub fn by_name(name: &str) -> Option<Reach> {
        [Reach::Agent, Reach::Site, Reach::Fleet].into_iter().find(|r| r.name() == name)
    }
}

impl Audience {
    /// The audience of exactly agent `agent` of site `site`.
    pub fn agent(site: &str, agent: &str) -> Result<Audience> {
        Ok(Audience::Agent { site: name("audience site", site)?, agent: name("audience agent", agent)? })
    }

    /// Whether agent `agent` of site `site` is addressed.
    pub fn includes(&self, site: &str, agent: &str) -> bool {
        match self {
            Audience::Agent { site: s, agent: a } => s == site && a == agent,
            Audience::Site { site: s } => s == site,
            Audience::Fleet => true,
        }
    }

    /// How wide it is.
    pub fn reach(&self) -> Reach {
        match self {
            Audience::Agent { .. } => Reach::Agent,
            Audience::Site { .. } => Reach::Site,
            Audience::Fleet => Reach::Fleet,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            Audience::Agent { site, agent } => {
                check_token("audience site", site, 64)?;
                check_token("audience agent", agent, 64)
            }
            Audience::Site { site } => check_token("audience site", site, 64),
            Audience::Fleet => Ok(()),
        }
    }

    /// Parses `site/agent`, `site/*` or `*`.
    pub fn parse(text: &str) -> Result<Audience> {
        if text == "*" {
            return Ok(Audience::Fleet);
        }
        let Some((site, agent)) = text.split_once('/') else {
            if_bail!(ErrorCode::InvalidEnvelope, "audience must read SITE/AGENT, SITE/* or *");
        };
        if agent == "*" {
            return Ok(Audience::Site { site: name("audience site", site)? });
        }
        Audience::agent(site, agent)
    }
}

fn name(what: &str, text: &str) -> Result<Name> {
    check_token(what, text, 64)?;
    Name::try_from(text).map_err(|_| IfError::format(ErrorCode::InvalidEnvelope, format_args!("{what} is too long")))
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Audience::Agent { site, agent } => write!(f, "{site}/{agent}"),
            Audience::Site { site } => write!(f, "{site}/*"),
            Audience::Fleet => f.write_str("*"),
        }
    }
}

/// The binary form of [`Audience`]: an enum tag, then the names.
#[derive(Serialize, Deserialize)]
enum AudienceWire<'a> {
    Agent(&'a str, &'a str),
    Site(&'a str),
    Fleet,
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return s.collect_str(self);
        }
        match self {
            Audience::Agent { site, agent } => AudienceWire::Agent(site, agent).serialize(s),
            Audience::Site { site } => AudienceWire::Site(site).serialize(s),
            Audience::Fleet => AudienceWire::Fleet.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        let bounded = |t: &str| Name::try_from(t).map_err(|_| de::Error::custom("audience name longer than 64 bytes"));
        if d.is_human_readable() {
            let text = heapless::String::<160>::deserialize(d)?;
            return Audience::parse(&text).map_err(|_| de::Error::custom("audience must read SITE/AGENT, SITE/* or *"));
        }
        Ok(match AudienceWire::deserialize(d)? {
            AudienceWire::Agent(site, agent) => Audience::Agent { site: bounded(site)?, agent: bounded(agent)? },
            AudienceWire::Site(site) => Audience::Site { site: bounded(site)? },
            AudienceWire::Fleet => Audience::Fleet,
        })
    }
}

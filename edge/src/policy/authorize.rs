//! Authorization: may this principal run this action now?
//!
//! Applied after admission, before the RECEIVED record, in this order, each with its own code:
//! policy keys sign policy commands only, and only they do (PERMISSION_DENIED); the talent is active
//! (KEY_REVOKED); built-in capabilities need only an active talent; otherwise a trusted, unexpired
//! manifest offers the capability (CAPABILITY_NOT_ALLOWED, MANIFEST_EXPIRED) in the envelope's scope
//! (SCOPE_DENIED) with the action (ACTION_NOT_ALLOWED); the talent holds an unexpired grant for it
//! (PERMISSION_DENIED) covering the scope and the action (SCOPE_DENIED, ACTION_NOT_ALLOWED) and reaching
//! as wide as the envelope's audience (WRONG_AUDIENCE: a grant reaches one agent unless it says a site
//! or the fleet); and every hazard the manifest lists for the action is declared in the envelope and
//! allowed by the grant (HAZARD_NOT_ACKNOWLEDGED).
//!
//! Whether the audience includes this agent at all is checked earlier, in ingress, before anything else.

use if_protocol::envelope::{EnvelopeBody, Hazards};
use if_protocol::policy::{Grant, Manifest, TalentStatus};
use if_protocol::{ErrorCode, IfError};

use super::Policy;
use super::commands::POLICY_CAPABILITY;

/// Who signed an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// A policy signer of the trust root.
    PolicySigner,
    /// A talent with this status.
    Talent(TalentStatus),
}

/// Capabilities compiled into the agent, usable by any active talent.
pub const BUILT_IN: &[&str] = &["if://capability/edge.ping", "if://capability/edge.witness"];

fn deny(code: ErrorCode, args: std::fmt::Arguments<'_>) -> IfError {
    IfError::format(code, args)
}

/// Decides whether `who` may run `body` at `now_s`.
pub fn authorize(policy: &Policy, who: Principal, body: &EnvelopeBody, now_s: u64) -> Result<(), IfError> {
    let cap = body.capability.as_str();
    match who {
        Principal::PolicySigner if cap == POLICY_CAPABILITY => return Ok(()),
        Principal::PolicySigner => {
            return Err(deny(
                ErrorCode::PermissionDenied,
                format_args!("a policy key signs policy commands only, not {cap}"),
            ));
        }
        Principal::Talent(_) if cap == POLICY_CAPABILITY => {
            return Err(deny(
                ErrorCode::PermissionDenied,
                format_args!("policy commands need a policy key of the trust root"),
            ));
        }
        Principal::Talent(TalentStatus::Revoked) => {
            return Err(deny(ErrorCode::KeyRevoked, format_args!("talent {} is revoked", body.sender)));
        }
        Principal::Talent(TalentStatus::Active) => {}
    }
    if BUILT_IN.contains(&cap) {
        return Ok(());
    }
    let manifest = policy
        .manifest(cap)
        .ok_or_else(|| deny(ErrorCode::CapabilityNotAllowed, format_args!("no trusted manifest offers {cap}")))?;
    let action = offered(manifest, body, now_s)?;
    let grant = policy.grant(&body.sender, cap).ok_or_else(|| {
        deny(ErrorCode::PermissionDenied, format_args!("talent {} holds no grant for {cap}", body.sender))
    })?;
    granted(grant, body, now_s)?;
    hazards(action, grant, body)
}

/// The manifest side: unexpired, in scope, the action listed.
fn offered<'m>(
    m: &'m Manifest,
    body: &EnvelopeBody,
    now_s: u64,
) -> Result<&'m if_protocol::policy::ActionSpec, IfError> {
    if m.expires <= now_s {
        return Err(deny(
            ErrorCode::ManifestExpired,
            format_args!("the manifest of {} expired at {}", m.id, m.expires),
        ));
    }
    if !m.scopes.iter().any(|s| s == &body.scope) {
        return Err(deny(ErrorCode::ScopeDenied, format_args!("{} is not offered in scope {}", m.id, body.scope)));
    }
    m.action(&body.action).ok_or_else(|| {
        deny(
            ErrorCode::ActionNotAllowed,
            format_args!("the manifest of {} lists no action {:?}", m.id, body.action.as_str()),
        )
    })
}

/// The grant side: unexpired, scope and action covered.
fn granted(g: &Grant, body: &EnvelopeBody, now_s: u64) -> Result<(), IfError> {
    if g.expires.is_some_and(|e| e <= now_s) {
        return Err(deny(
            ErrorCode::PermissionDenied,
            format_args!("the grant of {} on {} has expired", g.talent, g.capability),
        ));
    }
    if !g.scopes.iter().any(|s| s == &body.scope) {
        return Err(deny(ErrorCode::ScopeDenied, format_args!("{} is not granted scope {}", g.talent, body.scope)));
    }
    if !g.actions.iter().any(|a| a == &body.action) {
        return Err(deny(
            ErrorCode::ActionNotAllowed,
            format_args!("{} is not granted action {:?} on {}", g.talent, body.action.as_str(), g.capability),
        ));
    }
    if body.audience.reach() > g.reach {
        return Err(deny(
            ErrorCode::WrongAudience,
            format_args!(
                "{} is addressed to {}, but the grant of {} on {} reaches one {} only",
                body.id,
                body.audience,
                g.talent,
                g.capability,
                g.reach.name()
            ),
        ));
    }
    Ok(())
}

/// Every hazard of the action declared by the envelope and allowed by the grant.
fn hazards(action: &if_protocol::policy::ActionSpec, g: &Grant, body: &EnvelopeBody) -> Result<(), IfError> {
    let undeclared = action.hazards.difference(body.hazards);
    if !undeclared.is_empty() {
        return Err(deny(
            ErrorCode::HazardNotAcknowledged,
            format_args!(
                "action {} carries hazard(s) {} the envelope does not declare",
                action.name,
                names(undeclared)
            ),
        ));
    }
    let ungranted = action.hazards.difference(g.hazards);
    if !ungranted.is_empty() {
        return Err(deny(
            ErrorCode::HazardNotAcknowledged,
            format_args!("{} is not granted hazard(s) {}", g.talent, names(ungranted)),
        ));
    }
    Ok(())
}

fn names(h: Hazards) -> String {
    h.names().collect::<Vec<_>>().join(",")
}

#[cfg(test)]
pub(crate) mod tests {
    use if_protocol::envelope::{Args, Nonce, ProtocolVersion};

    use super::*;
    use crate::policy::Doc;
    use crate::policy::file::parse_doc;

    const NOW: u64 = 1_800_000_000;

    pub(crate) fn body(capability: &str, action: &str) -> EnvelopeBody {
        EnvelopeBody {
            version: ProtocolVersion::CURRENT,
            id: uuid::Uuid::nil(),
            audience: if_protocol::envelope::Audience::agent("studio-a", "edge-1").expect("names"),
            sender: "desk".try_into().expect("short"),
            seq: 1,
            nonce: Nonce([0; 16]),
            issued_at_ms: NOW * 1000,
            ttl_s: 30,
            scope: "studio:control".try_into().expect("short"),
            hazards: Hazards::NONE,
            capability: capability.try_into().expect("short"),
            action: action.try_into().expect("short"),
            args: Args::new(),
            why: "test".try_into().expect("short"),
            trace: uuid::Uuid::nil(),
        }
    }

    fn grant(actions: &[&str], hazards: Hazards, expires: Option<u64>) -> Grant {
        Grant {
            talent: "desk".try_into().expect("short"),
            capability: "if://capability/vmix.switcher".try_into().expect("short"),
            scopes: heapless::Vec::from_slice(&["studio:control".try_into().expect("short")]).expect("fits"),
            actions: actions.iter().map(|a| (*a).try_into().expect("short")).collect(),
            hazards,
            expires,
            reach: if_protocol::envelope::Reach::Agent,
        }
    }

    fn policy(g: Option<Grant>) -> Policy {
        let text = include_str!("../../../tests/fixtures/manifests/vmix.toml");
        let m: Manifest = parse_doc(text, "vmix.toml").expect("fixture");
        let mut p = Policy::default();
        p.apply_doc(Doc::Manifest(Box::new(if_protocol::policy::Signed::unsigned(m))));
        if let Some(g) = g {
            p.apply_doc(Doc::Grant(Box::new(g)));
        }
        p
    }

    const ACTIVE: Principal = Principal::Talent(TalentStatus::Active);

    fn code(p: &Policy, who: Principal, b: &EnvelopeBody) -> Option<ErrorCode> {
        authorize(p, who, b, NOW).err().map(|e| e.code())
    }

    #[test]
    fn the_matrix() {
        let full = policy(Some(grant(&["cut", "preview"], Hazards::ON_AIR, None)));
        let mut cut = body("if://capability/vmix.switcher", "cut");
        cut.hazards = Hazards::ON_AIR;
        assert_eq!(code(&full, ACTIVE, &cut), None, "granted, declared, allowed");
        assert_eq!(code(&policy(None), ACTIVE, &cut), Some(ErrorCode::PermissionDenied), "no grant");
        let mut wrong_scope = cut.clone();
        wrong_scope.scope = "studio:admin".try_into().expect("short");
        assert_eq!(code(&full, ACTIVE, &wrong_scope), Some(ErrorCode::ScopeDenied));
        let fade = body("if://capability/vmix.switcher", "fade");
        assert_eq!(code(&full, ACTIVE, &fade), Some(ErrorCode::ActionNotAllowed), "not in the manifest");
        let only_preview = policy(Some(grant(&["preview"], Hazards::ON_AIR, None)));
        assert_eq!(code(&only_preview, ACTIVE, &cut), Some(ErrorCode::ActionNotAllowed), "not in the grant");
        let undeclared = body("if://capability/vmix.switcher", "cut");
        assert_eq!(code(&full, ACTIVE, &undeclared), Some(ErrorCode::HazardNotAcknowledged));
        let no_hazard = policy(Some(grant(&["cut"], Hazards::NONE, None)));
        assert_eq!(code(&no_hazard, ACTIVE, &cut), Some(ErrorCode::HazardNotAcknowledged), "hazard not granted");
        let expired = policy(Some(grant(&["cut"], Hazards::ON_AIR, Some(NOW))));
        assert_eq!(code(&expired, ACTIVE, &cut), Some(ErrorCode::PermissionDenied), "grant expired");
        assert_eq!(code(&full, Principal::Talent(TalentStatus::Revoked), &cut), Some(ErrorCode::KeyRevoked));
        let unknown = body("if://capability/videohub.router", "route");
        assert_eq!(code(&full, ACTIVE, &unknown), Some(ErrorCode::CapabilityNotAllowed));
    }

    #[test]
    fn a_wide_audience_needs_a_grant_that_reaches_as_far() {
        use if_protocol::envelope::{Audience, Reach};
        let mut cut = body("if://capability/vmix.switcher", "cut");
        cut.hazards = Hazards::ON_AIR;
        cut.audience = Audience::Site { site: "studio-a".try_into().expect("short") };
        let agent_only = policy(Some(grant(&["cut"], Hazards::ON_AIR, None)));
        assert_eq!(code(&agent_only, ACTIVE, &cut), Some(ErrorCode::WrongAudience));
        let mut site = grant(&["cut"], Hazards::ON_AIR, None);
        site.reach = Reach::Site;
        assert_eq!(code(&policy(Some(site.clone())), ACTIVE, &cut), None);
        cut.audience = Audience::Fleet;
        assert_eq!(code(&policy(Some(site)), ACTIVE, &cut), Some(ErrorCode::WrongAudience));
        let mut fleet = grant(&["cut"], Hazards::ON_AIR, None);
        fleet.reach = Reach::Fleet;
        assert_eq!(code(&policy(Some(fleet)), ACTIVE, &cut), None);
        let mut ping = body("if://capability/edge.ping", "ping");
        ping.audience = Audience::Fleet;
        assert_eq!(code(&agent_only, ACTIVE, &ping), None, "a fleet-wide line check needs no grant");
    }

    #[test]
    fn policy_keys_and_built_ins() {
        let p = policy(None);
        let ping = body("if://capability/edge.ping", "ping");
        assert_eq!(code(&p, ACTIVE, &ping), None, "built-ins need only an active talent");
        assert_eq!(code(&p, Principal::Talent(TalentStatus::Revoked), &ping), Some(ErrorCode::KeyRevoked));
        let add = body(POLICY_CAPABILITY, "talent.add");
        assert_eq!(code(&p, Principal::PolicySigner, &add), None);
        assert_eq!(code(&p, ACTIVE, &add), Some(ErrorCode::PermissionDenied), "talents cannot change policy");
        assert_eq!(
            code(&p, Principal::PolicySigner, &ping),
            Some(ErrorCode::PermissionDenied),
            "policy keys only sign policy"
        );
        let mut m = policy(Some(grant(&["cut"], Hazards::ON_AIR, None)));
        if let Some(Doc::Manifest(sm)) =
            m.manifests.get("if://capability/vmix.switcher").cloned().map(|s| Doc::Manifest(Box::new(s)))
        {
            let mut sm = *sm;
            sm.doc.expires = NOW;
            m.apply_doc(Doc::Manifest(Box::new(sm)));
        }
        let mut cut = body("if://capability/vmix.switcher", "cut");
        cut.hazards = Hazards::ON_AIR;
        assert_eq!(code(&m, ACTIVE, &cut), Some(ErrorCode::ManifestExpired));
    }
}

//! Policy commands: `talent.add`, `talent.grant`, `talent.revoke` and `talent.reset` (the binding commands
//! are read by `bindings.rs`), sent as signed envelopes to
//! `if://capability/edge.policy` by a key the trust root names as a policy signer.
//!
//! An envelope's arguments are small typed values, so a command carries its document as arguments:
//!
//! | action | arguments |
//! |---|---|
//! | `talent.add` | `name`, `role`, `pubkey` (base64 Ed25519 public key) |
//! | `talent.grant` | `name`, `capability`, `scopes` and `actions` (comma lists), `hazards` (comma list, may be empty), `expires` (unix s, optional, in the future), `reach` (`agent`, `site` or `fleet`: the widest audience its envelopes may name; default `agent`) |
//! | `talent.revoke` | `name` |
//! | `talent.reset` | `name`: a talent or a policy signer whose sequence numbers start over |
//!
//! This module turns a command into the talent or grant document it sets, checking it against what the
//! agent already trusts; the caller commits it with its POLICY record.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use if_protocol::bytes::FixedBytes;
use if_protocol::envelope::{ArgValue, EnvelopeBody, Hazards, Reach};
use if_protocol::policy::{Grant, Talent, TalentStatus};
use if_protocol::{ErrorCode, IfError, keys};

/// The built-in capability policy commands are sent to.
pub const POLICY_CAPABILITY: &str = "if://capability/edge.policy";
/// Its actions.
pub const ACTIONS: &[&str] =
    &["talent.add", "talent.grant", "talent.revoke", "talent.reset", "binding.add", "binding.remove", "binding.list"];

/// The actions that only read the policy: they change nothing, so there is nothing to decide ahead.
pub const READ_ONLY: &[&str] = &["binding.list"];

/// The document a policy command sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Set {
    /// A new or revoked talent.
    Talent(Talent),
    /// A grant, replacing the talent's earlier grant on the same capability.
    Grant(Box<Grant>),
    /// The sender of this name starts its sequence numbers over.
    Reset(if_protocol::envelope::Name),
}

pub(super) fn bad(args: std::fmt::Arguments<'_>) -> IfError {
    IfError::format(ErrorCode::InvalidEnvelope, args)
}

pub(super) fn text<'a>(body: &'a EnvelopeBody, key: &str) -> Result<&'a str, IfError> {
    match body.args.get(key) {
        Some(ArgValue::Text(t)) => Ok(t.as_str()),
        Some(_) => Err(bad(format_args!("{}: argument {key} must be text", body.action))),
        None => Err(bad(format_args!("{}: argument {key} is missing", body.action))),
    }
}

fn bounded<const N: usize>(what: &str, v: &str) -> Result<heapless::String<N>, IfError> {
    v.try_into().map_err(|_| bad(format_args!("{what} is longer than {N} bytes")))
}

/// Splits a comma list, dropping empty items.
fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// The talent or grant `body` sets at `now_s`, given the current talent of that name.
pub fn decide(body: &EnvelopeBody, current: Option<&Talent>, now_s: u64) -> Result<Set, IfError> {
    let name = text(body, "name")?;
    let name_token = name.try_into().map_err(|_| bad(format_args!("talent name {name:?} is too long")))?;
    match body.action.as_str() {
        "talent.add" => {
            let raw = B64.decode(text(body, "pubkey")?).map_err(|_| bad(format_args!("pubkey is not base64")))?;
            let key = keys::verifying_key(&raw)?;
            let talent = Talent {
                name: name_token,
                role: bounded("role", text(body, "role")?)?,
                public_key: FixedBytes(key.to_bytes()),
                status: TalentStatus::Active,
            };
            if let Some(cur) = current.filter(|c| c.status == TalentStatus::Active && c.public_key != talent.public_key)
            {
                return Err(IfError::format(
                    ErrorCode::PermissionDenied,
                    format_args!("talent {} exists with another key: revoke it first", cur.name),
                ));
            }
            Ok(Set::Talent(talent))
        }
        "talent.revoke" => {
            let mut t = current.cloned().ok_or_else(|| not_found(name))?;
            t.status = TalentStatus::Revoked;
            Ok(Set::Talent(t))
        }
        "talent.grant" => {
            current.ok_or_else(|| not_found(name))?;
            grant(body, name_token, now_s).map(|g| Set::Grant(Box::new(g)))
        }
        "talent.reset" => Ok(Set::Reset(name_token)),
        other => Err(IfError::format(ErrorCode::ActionNotAllowed, format_args!("edge.policy has no action {other:?}"))),
    }
}

fn not_found(name: &str) -> IfError {
    IfError::format(ErrorCode::TalentNotFound, format_args!("talent {name:?} is not known"))
}

fn grant(body: &EnvelopeBody, talent: if_protocol::envelope::Name, now_s: u64) -> Result<Grant, IfError> {
    let capability = text(body, "capability")?;
    if_protocol::envelope::capability_name(capability)?;
    let mut g = Grant {
        talent,
        capability: capability.try_into().map_err(|_| bad(format_args!("capability id is too long")))?,
        scopes: heapless::Vec::new(),
        actions: heapless::Vec::new(),
        hazards: Hazards::NONE,
        expires: match body.args.get("expires") {
            Some(ArgValue::Int(s)) if *s > 0 => Some(*s as u64),
            None => None,
            Some(_) => return Err(bad(format_args!("expires must be unix seconds"))),
        },
        reach: match body.args.get("reach") {
            None => Reach::Agent,
            Some(ArgValue::Text(t)) => Reach::by_name(t)
                .ok_or_else(|| bad(format_args!("reach must be agent, site or fleet, not {:?}", t.as_str())))?,
            Some(_) => return Err(bad(format_args!("reach must be agent, site or fleet"))),
        },
    };
    if let Some(at) = g.expires.filter(|at| *at <= now_s) {
        // A grant that has already expired would replace the one that works with one that never does.
        return Err(IfError::format(
            ErrorCode::PermissionDenied,
            format_args!("the grant would have expired at {at}, before now ({now_s}); the current grant stays"),
        ));
    }
    for s in list(text(body, "scopes")?) {
        let scope = s.try_into().map_err(|_| bad(format_args!("scope {s:?} is too long")))?;
        g.scopes.push(scope).map_err(|_| bad(format_args!("a grant names at most 8 scopes")))?;
    }
    for a in list(text(body, "actions")?) {
        let action = a.try_into().map_err(|_| bad(format_args!("action {a:?} is too long")))?;
        g.actions.push(action).map_err(|_| bad(format_args!("a grant names at most 32 actions")))?;
    }
    if g.scopes.is_empty() || g.actions.is_empty() {
        return Err(bad(format_args!("a grant needs at least one scope and one action")));
    }
    let hazards = body.args.get("hazards").map_or(Ok(""), |_| text(body, "hazards"))?;
    for h in list(hazards) {
        g.hazards = g.hazards.union(Hazards::by_name(h).ok_or_else(|| bad(format_args!("unknown hazard {h:?}")))?);
    }
    Ok(g)
}

#[cfg(test)]
pub(crate) mod tests {
    use if_protocol::envelope::Args;

    use super::*;
    use crate::policy::trust::tests::key;

    const NOW: u64 = 1_800_000_000;

    pub(crate) fn command(action: &str, args: &[(&str, ArgValue)]) -> EnvelopeBody {
        let mut a = Args::new();
        for (k, v) in args {
            a.insert(k, v.clone()).expect("arg");
        }
        let mut body = crate::policy::authorize::tests::body(POLICY_CAPABILITY, action);
        body.args = a;
        body
    }

    fn t(s: &str) -> ArgValue {
        ArgValue::Text(s.try_into().expect("short"))
    }

    fn add(name: &str, seed: u8) -> EnvelopeBody {
        let pk = B64.encode(key(seed).verifying_key().to_bytes());
        command("talent.add", &[("name", t(name)), ("role", t("director")), ("pubkey", t(&pk))])
    }

    #[test]
    fn add_revoke_and_grant_set_their_documents() {
        let Set::Talent(desk) = decide(&add("desk", 1), None, NOW).expect("add") else { panic!("a talent") };
        assert_eq!(desk.status, TalentStatus::Active);
        assert_eq!(decide(&add("desk", 1), Some(&desk), NOW).expect("same again"), Set::Talent(desk.clone()));
        let clash = decide(&add("desk", 2), Some(&desk), NOW).expect_err("other key");
        assert_eq!(clash.code(), ErrorCode::PermissionDenied);
        let Set::Talent(gone) =
            decide(&command("talent.revoke", &[("name", t("desk"))]), Some(&desk), NOW).expect("revoke")
        else {
            panic!("a talent")
        };
        assert_eq!(gone.status, TalentStatus::Revoked);
        let g = command(
            "talent.grant",
            &[
                ("name", t("desk")),
                ("capability", t("if://capability/vmix.switcher")),
                ("scopes", t("studio:control")),
                ("actions", t("cut, preview")),
                ("hazards", t("on_air")),
                ("expires", ArgValue::Int(2_000_000_000)),
            ],
        );
        let Set::Grant(grant) = decide(&g, Some(&desk), NOW).expect("grant") else { panic!("a grant") };
        assert_eq!(grant.actions.len(), 2);
        assert!(grant.hazards.contains(Hazards::ON_AIR));
        assert_eq!(grant.expires, Some(2_000_000_000));
        assert_eq!(decide(&g, None, NOW).expect_err("no talent").code(), ErrorCode::TalentNotFound);
        assert_eq!(grant.reach, Reach::Agent, "a grant reaches one agent unless it says more");
    }

    #[test]
    fn a_grant_that_has_already_expired_is_refused_and_reach_is_read() {
        let Ok(Set::Talent(desk)) = decide(&add("desk", 1), None, NOW) else { panic!("a talent") };
        let g = |extra: &[(&str, ArgValue)]| {
            let mut args = vec![
                ("name", t("desk")),
                ("capability", t("if://capability/vmix.switcher")),
                ("scopes", t("studio:control")),
                ("actions", t("cut")),
            ];
            args.extend(extra.iter().cloned());
            command("talent.grant", &args)
        };
        for past in [1, NOW as i64] {
            let e = decide(&g(&[("expires", ArgValue::Int(past))]), Some(&desk), NOW).expect_err("expired");
            assert_eq!(e.code(), ErrorCode::PermissionDenied, "{e}");
            assert!(e.detail().contains("the current grant stays"), "{e}");
        }
        assert!(decide(&g(&[("expires", ArgValue::Int(NOW as i64 + 1))]), Some(&desk), NOW).is_ok());
        let Ok(Set::Grant(site)) = decide(&g(&[("reach", t("site"))]), Some(&desk), NOW) else { panic!("grant") };
        assert_eq!(site.reach, Reach::Site);
        let e = decide(&g(&[("reach", t("galaxy"))]), Some(&desk), NOW).expect_err("no such reach");
        assert_eq!(e.code(), ErrorCode::InvalidEnvelope);
    }

    #[test]
    fn malformed_commands_say_what_is_wrong() {
        let desk = match decide(&add("desk", 1), None, NOW) {
            Ok(Set::Talent(t)) => t,
            other => panic!("{other:?}"),
        };
        let cases = [
            command("talent.add", &[("name", t("x")), ("role", t("r")), ("pubkey", t("not base64!"))]),
            command("talent.add", &[("name", t("x")), ("role", t("r"))]),
            command("talent.add", &[("name", ArgValue::Int(3)), ("role", t("r"))]),
            command(
                "talent.grant",
                &[("name", t("desk")), ("capability", t("vmix")), ("scopes", t("s")), ("actions", t("a"))],
            ),
            command(
                "talent.grant",
                &[("name", t("desk")), ("capability", t("if://capability/x")), ("scopes", t("")), ("actions", t("a"))],
            ),
            command(
                "talent.grant",
                &[
                    ("name", t("desk")),
                    ("capability", t("if://capability/x")),
                    ("scopes", t("s")),
                    ("actions", t("a")),
                    ("hazards", t("sparkles")),
                ],
            ),
        ];
        for c in &cases {
            let e = decide(c, Some(&desk), NOW).expect_err("refused");
            assert!(
                matches!(e.code(), ErrorCode::InvalidEnvelope | ErrorCode::UnknownKey | ErrorCode::InvalidSignature),
                "{e}"
            );
        }
        let other = command("talent.rename", &[("name", t("desk"))]);
        assert_eq!(decide(&other, Some(&desk), NOW).expect_err("no such action").code(), ErrorCode::ActionNotAllowed);
    }
}

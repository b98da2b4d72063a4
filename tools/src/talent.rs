//! `ifctl talent add|grant|revoke|reset`: the arguments of the policy commands (see
//! `if_edge::policy::commands` for what the agent reads from them).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use if_protocol::IfError;

/// `talent.add` arguments.
pub fn add(name: &str, role: &str, pubkey: &Path) -> Result<Vec<String>, IfError> {
    let key = if_edge::keyfile::read_public(pubkey)?;
    Ok(vec![format!("name={name}"), format!("role={role}"), format!("pubkey={}", B64.encode(key.to_bytes()))])
}

/// `talent.grant` arguments.
pub fn grant(
    name: &str,
    capability: &str,
    scopes: &[String],
    actions: &[String],
    hazards: &[String],
    expires: Option<u64>,
    reach: Option<&str>,
) -> Vec<String> {
    let mut args = vec![
        format!("name={name}"),
        format!("capability={capability}"),
        format!("scopes={}", scopes.join(",")),
        format!("actions={}", actions.join(",")),
    ];
    if !hazards.is_empty() {
        args.push(format!("hazards={}", hazards.join(",")));
    }
    if let Some(e) = expires {
        args.push(format!("expires={e}"));
    }
    if let Some(r) = reach {
        args.push(format!("reach={r}"));
    }
    args
}

/// `talent.revoke` (and `talent.reset`) arguments.
pub fn revoke(name: &str) -> Vec<String> {
    vec![format!("name={name}")]
}

/// The policy command `action` (`talent.add|grant|revoke`) with `args`, signed by the policy key `key`
/// (its name in the trust root: `sender`, or the key file's stem).
pub fn command(
    action: &str,
    args: Vec<String>,
    key: &Path,
    sender: Option<&str>,
    why: &str,
) -> crate::message::Command {
    let sender = match sender {
        Some(s) => s.to_string(),
        None => key.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    let mut cmd = crate::message::Command::new(
        key.to_path_buf(),
        sender,
        if_edge::policy::commands::POLICY_CAPABILITY,
        action,
        why,
    );
    cmd.args = args;
    cmd.scope = "policy".into();
    cmd
}

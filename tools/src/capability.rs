//! `ifctl capability list|apply` and `ifctl falsify --task`: what an agent offers, a command by
//! capability, and a show's cue list checked against the agent without executing anything.
//!
//! A dry run is a signed envelope carrying `_mode = "falsify"` (see `if_edge::falsify`): the agent
//! verifies, admits and witnesses it like any command, asks policy, budgets, breakers and the driver's
//! plan, and answers with every problem; no device is touched.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use if_protocol::{ErrorCode, IfError};
use serde::Deserialize;

use crate::message::{self, Target};

/// The agent's capabilities from its retained status: id, version, driver, actions, breaker.
pub async fn list(target: &Target, wait: Duration, json: bool) -> Result<(), IfError> {
    let pinned = |site: &str, agent: &str| (site == target.site && agent == target.agent).then_some(target.key);
    let statuses = crate::status::collect(&target.broker, target.tls.as_ref(), &target.site, wait, &pinned).await?;
    let name = format!("{}/{}", target.site, target.agent);
    let status = statuses.known.get(&name).ok_or_else(|| match statuses.forged.get(&name) {
        Some(n) => IfError::format(
            ErrorCode::InvalidSignature,
            format_args!("{n} status message(s) of {name} were not signed by its pinned key; none was"),
        ),
        None => IfError::format(ErrorCode::SystemError, format_args!("no status from {name} on {}", target.broker)),
    })?;
    let breakers: BTreeMap<&str, &str> =
        status.breakers.iter().map(|b| (b.capability.as_str(), b.state.as_str())).collect();
    let manifests = status.policy.as_ref().map(|p| p.manifests.as_slice()).unwrap_or_default();
    let breaker = |id: &str| breakers.get(id).copied().unwrap_or("-");
    if json {
        let rows: Vec<serde_json::Value> = manifests
            .iter()
            .map(|m| {
                let mut row = serde_json::to_value(m).unwrap_or_default();
                row["breaker"] = breaker(&m.id).into();
                row
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    let state = if status.state == if_protocol::messages::State::Online { "online" } else { "offline" };
    println!("{name} ({state}):");
    println!("  {:<40} {:<9} {:<14} {:<10} actions", "capability", "version", "driver", "breaker");
    println!("  {:<40} {:<9} {:<14} {:<10} ping", "if://capability/edge.ping", "-", "built-in", "-");
    for m in manifests {
        println!("  {:<40} {:<9} {:<14} {:<10} {}", m.id, m.version, m.driver, breaker(&m.id), m.actions.join(", "));
    }
    Ok(())
}

/// What a dry run answered: `(code, name, message)` of each problem, and what would be sent.
pub fn problems(reply: &if_edge::reply::Reply) -> Vec<(String, String, String)> {
    let Some(r) = reply.result.as_ref().and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok()) else {
        return Vec::new();
    };
    r["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or("").to_string();
            (s("code"), s("name"), s("message"))
        })
        .collect()
}

/// `IF_ERR_nnn` and a message as the error they stand for.
fn to_error(code: &str, message: &str) -> IfError {
    let n: Option<u16> = code.strip_prefix("IF_ERR_").and_then(|n| n.parse().ok());
    let code = ErrorCode::ALL.iter().copied().find(|c| Some(c.number()) == n).unwrap_or(ErrorCode::SystemError);
    IfError::format(code, format_args!("would fail: {message}"))
}

/// The error a dry run's first problem stands for.
fn first_problem(reply: &if_edge::reply::Reply) -> Option<IfError> {
    problems(reply).first().map(|(code, _, message)| to_error(code, message))
}

/// Sends `cmd` (as a dry run when `falsify`), prints the reply; an error when it failed or would.
pub async fn apply(target: &Target, mut cmd: message::Command, falsify: bool) -> Result<(), IfError> {
    if falsify {
        cmd.args.push(format!("{}=falsify", if_edge::falsify::MODE_ARG));
    }
    let reply = message::send_command(target, &cmd).await?;
    println!("{}", serde_json::to_string(&reply).unwrap_or_default());
    if let Some(e) = &reply.error {
        return Err(IfError::from(e));
    }
    match first_problem(&reply) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One cue of a show file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cue {
    /// The cue's name in the show.
    pub name: String,
    /// `if://capability/...`.
    pub capability: String,
    /// The action.
    pub action: String,
    /// Arguments, `KEY = value`.
    #[serde(default)]
    pub args: BTreeMap<String, toml::Value>,
    /// Declared hazards.
    #[serde(default)]
    pub hazards: Vec<String>,
    /// The scope (default `studio:control`).
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Show {
    #[serde(rename = "cue")]
    cues: Vec<Cue>,
}

/// Reads a cue list: TOML (`[[cue]]` tables) or JSON (`{"cue": [...]}`), by its extension.
pub fn read_cues(path: &Path) -> Result<Vec<Cue>, IfError> {
    let bad =
        |e: &dyn std::fmt::Display| IfError::format(ErrorCode::ConfigInvalid, format_args!("{}: {e}", path.display()));
    let text = if_edge::files::read_text(path, if_edge::files::DOC_MAX).map_err(|e| bad(&e))?;
    let show: Show = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| bad(&e))?
    } else {
        toml::from_str(&text).map_err(|e| bad(&e.message().trim()))?
    };
    Ok(show.cues)
}

fn arg_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `falsify --task FILE --mode pre-commit`: a dry run of every cue; lists each failing cue with its
/// codes; an error when any would fail.
pub async fn falsify_task(target: &Target, base: &message::Command, cues: &[Cue], json: bool) -> Result<(), IfError> {
    let mut failing = 0usize;
    let mut first: Option<IfError> = None;
    let mut report = Vec::new();
    for cue in cues {
        let cmd = message::Command {
            capability: cue.capability.clone(),
            action: cue.action.clone(),
            args: cue
                .args
                .iter()
                .map(|(k, v)| format!("{k}={}", arg_text(v)))
                .chain([format!("{}=falsify", if_edge::falsify::MODE_ARG)])
                .collect(),
            why: format!("pre-commit check of cue {}", cue.name),
            hazards: cue.hazards.clone(),
            scope: cue.scope.clone().unwrap_or_else(|| "studio:control".into()),
            ..base.clone()
        };
        let found: Vec<(String, String, String)> = match message::send_command(target, &cmd).await {
            Ok(reply) => match &reply.error {
                Some(e) => vec![(format!("IF_ERR_{:03}", e.code.number()), e.name.to_string(), e.message.to_string())],
                None => problems(&reply),
            },
            Err(e) => {
                vec![(format!("IF_ERR_{:03}", e.code().number()), e.code().name().to_string(), e.detail().to_string())]
            }
        };
        if let Some((code, _, message)) = found.first() {
            failing += 1;
            first.get_or_insert_with(|| to_error(code, &format!("cue {}: {message}", cue.name)));
        }
        if json {
            let list: Vec<serde_json::Value> =
                found.iter().map(|(c, n, m)| serde_json::json!({ "code": c, "name": n, "message": m })).collect();
            report.push(serde_json::json!({ "cue": cue.name, "ok": found.is_empty(), "problems": list }));
        } else if found.is_empty() {
            println!("ok    {}", cue.name);
        } else {
            for (c, n, m) in &found {
                println!("FAIL  {}: {c} {n}: {m}", cue.name);
            }
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(report));
    } else {
        println!("{} of {} cues would fail", failing, cues.len());
    }
    // The exit status is the first failing cue's first problem's.
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

//! What `if-edge run` checks before it opens the witness log, and `if-edge check-config` runs alone: the
//! same function, so a config that check-config calls `ok` is one `run` starts with.
//!
//! Beyond the file's own rules: every TLS file, the agent's identity key (there, a regular file, mode
//! 0600, a key), the trust root (configured and readable as a signed root, unless `[trust] no_root =
//! true` asks to start with none). A missing manifest directory is no error: the manifests the agent
//! trusts are in its log, the directory only offers more. Only the witness log itself is left to `run`:
//! a running agent holds it.

use if_protocol::IfError;
use if_protocol::policy::TrustRoot;

use crate::config::Config;

/// Every problem, one line each (`key: what is wrong`); empty when the agent can start.
pub fn problems(config: &Config) -> Vec<String> {
    let mut out = config.tls_problems();
    if let Err(e) = crate::keyfile::read_secret(&config.agent.key) {
        out.push(format!("agent.key: {}", e.detail()));
    }
    if let Some(Err(e)) = config.uplink.collector_key.as_deref().map(crate::keyfile::read_public) {
        out.push(format!("uplink.collector_key: {}", e.detail()));
    }
    match (&config.trust.root, config.trust.no_root) {
        (None, false) => out.push(
            "trust.root: no trust root is configured, so nothing but edge.ping would ever be trusted: set root = \
             FILE (ifctl trust init), or no_root = true to start with none on purpose"
                .into(),
        ),
        (Some(_), true) => out.push("trust.no_root: is set, but so is trust.root".into()),
        (Some(path), false) => {
            // A root that parses may still be refused against the one in the log (decided at start);
            // one that does not even parse is a mistake to stop for.
            let root = crate::policy::file::read(path)
                .and_then(|text| crate::policy::file::parse_signed::<TrustRoot>(&text, &path.display().to_string()));
            if let Err(e) = root {
                out.push(format!("trust.root: {}", e.detail()));
            }
        }
        (None, true) => {}
    }
    out
}

/// The first problem as the error `run` stops with, saying how many more check-config would list.
pub fn check(config: &Config, file: &std::path::Path) -> Result<(), IfError> {
    let p = crate::config::Problems { file: file.to_path_buf(), list: problems(config) };
    if p.list.is_empty() { Ok(()) } else { Err(p.to_error()) }
}

//! `ifctl status`: every agent on a broker, each status checked against its agent's pinned key.

use std::time::Duration;

use if_protocol::{ErrorCode, IfError};

use crate::settings;

/// Collects, prints, and fails when any status did not verify.
pub(crate) async fn run(
    broker: &str,
    settings: &settings::Settings,
    site: &str,
    wait_ms: u64,
    json: bool,
) -> Result<(), IfError> {
    let keys = settings.keys(None, None);
    if keys.is_empty() {
        return Err(IfError::with(
            ErrorCode::ConfigInvalid,
            "no pinned agent keys: a status cannot be told from a forged one without them; give --agent-keys DIR \
             ({site}.{agent}.pub files), or --agent-key FILE with site and agent in ifctl.toml",
        ));
    }
    let pinned = |site: &str, agent: &str| keys.get(site, agent).ok().flatten();
    let tls = settings.tls()?;
    let statuses = crate::status::collect(broker, tls.as_ref(), site, Duration::from_millis(wait_ms), &pinned).await?;
    crate::status::print(&statuses, json);
    crate::status::forged_error(&statuses)
}

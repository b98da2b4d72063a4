//! Device drivers, by the name a manifest gives in `driver`, each behind a [`Lane`](crate::lane::Lane).

pub mod loopback;

use std::sync::Arc;

use if_protocol::policy::Manifest;
use if_protocol::{ErrorCode, IfError};

use crate::lane::Driver;
use crate::vault::Vault;

/// The driver a manifest names, with the secrets it lists.
pub fn build(m: &Manifest, vault: &Vault) -> Result<Arc<dyn Driver>, IfError> {
    let secrets = vault.for_manifest(m)?;
    match m.driver.as_str() {
        loopback::DRIVER => Ok(Arc::new(loopback::Loopback::new(secrets))),
        other => Err(IfError::format(
            ErrorCode::CapabilityNotAllowed,
            format_args!("driver {other} is not available in this build of the agent"),
        )),
    }
}

//! The talents this agent accepts commands from, and the keys that sign for them.
//!
//! Until signed policy documents replace it, the list comes from the config file: a name and a public
//! key file per talent. A frame names its key by key id; the key belongs to exactly one talent, and the
//! envelope's `sender` must be that talent.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use if_protocol::keys::{self, KeyId};
use if_protocol::{ErrorCode, IfError};

use crate::config::TalentEntry;

/// Known talents by key id and by name.
#[derive(Debug, Clone, Default)]
pub struct Talents {
    by_key: HashMap<KeyId, (String, VerifyingKey)>,
    names: HashMap<String, KeyId>,
}

impl Talents {
    /// Loads each talent's public key file.
    pub fn load(entries: &[TalentEntry]) -> Result<Talents, IfError> {
        let mut t = Talents::default();
        for e in entries {
            let key = crate::keyfile::read_public(&e.public_key)?;
            t.add(&e.name, key)?;
        }
        Ok(t)
    }

    /// Adds a talent.
    pub fn add(&mut self, name: &str, key: VerifyingKey) -> Result<(), IfError> {
        let id = keys::key_id(&key);
        if let Some((other, _)) = self.by_key.get(&id) {
            return Err(IfError::format(
                ErrorCode::ConfigInvalid,
                format_args!("talents {other} and {name} share one public key"),
            ));
        }
        self.by_key.insert(id, (name.to_string(), key));
        self.names.insert(name.to_string(), id);
        Ok(())
    }

    /// The talent and key for a key id.
    pub fn by_key(&self, id: &KeyId) -> Option<(&str, &VerifyingKey)> {
        self.by_key.get(id).map(|(n, k)| (n.as_str(), k))
    }

    /// Whether a talent of this name exists.
    pub fn knows(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// Number of talents.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

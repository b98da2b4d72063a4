//! Policy at start: the policy in the log, then the trust root file, then the manifest directory.
//!
//! Each offer is decided by [`Policy`]'s rules; an accepted one is committed with its POLICY record
//! before it takes effect, a refused one is logged with its code, witnessed as a POLICY record carrying
//! the code, and shown on the status topic. A refused file never stops the agent: it starts with what it
//! trusted before.

use std::path::Path;

use if_protocol::IfError;
use if_protocol::policy::{Document, Manifest, Signed, TrustRoot};

use super::manifests::Allowed;
use super::{Change, Policy, file, record};
use crate::witness::store::Store;

/// Where policy comes from at start (`[trust]` of the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// The trust root file.
    pub root: Option<&'a Path>,
    /// The directory of signed manifests.
    pub manifests: Option<&'a Path>,
    /// The allow-list.
    pub allowed: &'a [Allowed],
}

/// Reads the persisted policy and offers the configured root and manifests.
pub fn at_start(store: &mut Store, trust: Sources<'_>, now_ms: u64) -> Result<Policy, IfError> {
    let mut policy = Policy::restore(store.policy()?, trust.allowed.to_vec())?;
    let now_s = now_ms / 1000;
    if let Some(path) = trust.root {
        let offer = read::<TrustRoot>(path).and_then(|r| policy.offer_root(&r, now_s));
        settle(store, &mut policy, &source(path), offer, now_ms)?;
    }
    if let Some(dir) = trust.manifests {
        for path in manifest_files(dir) {
            let offer = read::<Manifest>(&path).and_then(|m| policy.offer_manifest(&m, now_s));
            settle(store, &mut policy, &source(&path), offer, now_ms)?;
        }
    }
    Ok(policy)
}

fn source(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn read<D: Document>(path: &Path) -> Result<Signed<D>, IfError> {
    file::parse_signed(&file::read(path)?, &source(path))
}

/// The `*.toml` files of `dir`, sorted by name; a missing directory is empty.
fn manifest_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::warn!(dir = %dir.display(), "manifest directory cannot be read");
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// Commits an accepted change (then applies it) or witnesses a refusal. Only a failed write is an error.
fn settle(
    store: &mut Store,
    policy: &mut Policy,
    source: &str,
    offer: Result<Option<Change>, IfError>,
    now_ms: u64,
) -> Result<(), IfError> {
    match offer {
        Ok(None) => Ok(()),
        Ok(Some(change)) => {
            store.append(vec![record(Ok(&change), source, now_ms)], None)?;
            tracing::info!(source, "{}", change.summary);
            policy.apply(change);
            Ok(())
        }
        Err(e) => {
            tracing::error!(source, code = %e.code(), "policy document refused: {}", e.detail());
            store.append(vec![record(Err(&e), source, now_ms)], None)?;
            policy.refused(source, &e);
            Ok(())
        }
    }
}

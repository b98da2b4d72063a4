//! Every RFC 6962 inclusion and consistency case in `tests/vectors/rfc6962/` through the project's
//! verifier: accepted exactly when `wantErr` is false.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use if_protocol::witness::Hash;
use if_protocol::witness::proof::{verify_consistency, verify_inclusion};
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/rfc6962")
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "json") {
            out.push(path);
        }
    }
}

/// A hash field; `None` when it is not 32 bytes of base64 (which the typed API cannot even express).
fn hash(v: &Value) -> Option<Hash> {
    B64.decode(v.as_str()?).ok()?.try_into().ok()
}

/// A tree head as raw bytes; heads are compared as bytes, so any length is representable.
fn head(v: &Value) -> Option<Vec<u8>> {
    B64.decode(v.as_str()?).ok()
}

fn proof(v: &Value) -> Option<Vec<Hash>> {
    v.as_array().map_or(Some(Vec::new()), |items| items.iter().map(hash).collect())
}

fn inclusion_ok(case: &Value) -> bool {
    let (Some(leaf), Some(root), Some(proof)) = (hash(&case["leafHash"]), head(&case["root"]), proof(&case["proof"]))
    else {
        return false;
    };
    let (Some(idx), Some(size)) = (case["leafIdx"].as_u64(), case["treeSize"].as_u64()) else { return false };
    verify_inclusion(idx, size, &leaf, &proof, &root).is_ok()
}

fn consistency_ok(case: &Value) -> bool {
    let (Some(r1), Some(r2), Some(proof)) = (head(&case["root1"]), head(&case["root2"]), proof(&case["proof"])) else {
        return false;
    };
    let (Some(s1), Some(s2)) = (case["size1"].as_u64(), case["size2"].as_u64()) else { return false };
    verify_consistency(s1, s2, &r1, &r2, &proof).is_ok()
}

fn run(kind: &str, check: fn(&Value) -> bool) -> (usize, usize) {
    let mut files = Vec::new();
    json_files(&vectors_dir().join(kind), &mut files);
    files.sort();
    let (mut accepted, mut rejected) = (0, 0);
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read vector");
        let case: Value = serde_json::from_str(&text).expect("vector JSON");
        let want_err = case["wantErr"].as_bool().expect("wantErr");
        let ok = check(&case);
        if ok == want_err {
            wrong.push(format!("{} ({}): wantErr={want_err}", file.display(), case["desc"]));
        }
        if ok { accepted += 1 } else { rejected += 1 }
    }
    assert!(wrong.is_empty(), "{} of {} {kind} cases wrong:\n{}", wrong.len(), files.len(), wrong.join("\n"));
    (accepted, rejected)
}

#[test]
fn inclusion_vectors() {
    let (accepted, rejected) = run("inclusion", inclusion_ok);
    assert!(accepted >= 5 && rejected >= 50, "accepted {accepted}, rejected {rejected}: vectors missing?");
}

#[test]
fn consistency_vectors() {
    let (accepted, rejected) = run("consistency", consistency_ok);
    assert!(accepted >= 5 && rejected >= 50, "accepted {accepted}, rejected {rejected}: vectors missing?");
}

#[test]
fn all_vector_files_are_read() {
    let mut files = Vec::new();
    json_files(&vectors_dir(), &mut files);
    assert!(files.len() >= 190, "expected about 196 vector files, found {}", files.len());
}

//! `ifctl witness verify|export|query|checkpoint`: read an agent's witness log file.
//!
//! The file is opened without creating anything; redb repairs a log left by a crash on open. While the
//! agent runs it holds the file, so these commands are for a stopped agent or a copy of its file.

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use if_edge::witness::record::Record;
use if_edge::witness::store::Store;
use if_edge::witness::verify::{Report, verify};
use if_protocol::{ErrorCode, IfError};

/// Checks chain, tree, head and checkpoints; the error names the first bad index.
pub fn verify_db(db: &Path, key: Option<&Path>) -> Result<Report, IfError> {
    let key = key.map(if_edge::keyfile::read_public).transpose()?;
    let mut store = Store::open_existing(db)?;
    verify(&mut store, key.as_ref(), None)
        .map_err(|f| IfError::format(f.error.code(), format_args!("first bad index {}: {}", f.index, f.error.detail())))
}

/// Prints the verification report.
pub fn print_report(r: &Report, json: bool) {
    let root = B64.encode(r.root);
    if json {
        println!(
            "{}",
            serde_json::json!({ "ok": true, "from": r.from, "size": r.size, "root": root, "checkpoints": r.checkpoints, "kinds": r.kinds })
        );
    } else {
        let kinds: Vec<String> = r.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let kept = match r.from {
            0 => String::new(),
            from => format!(" (records {from} on kept; those before are archived)"),
        };
        println!("ok: {} records{kept}, root {root}, {} checkpoint(s) verified", r.size, r.checkpoints);
        println!("records: {}", kinds.join(", "));
    }
}

/// Prints one JSON line per record, with `leaf` the exact bytes hashed as the RFC 6962 leaf.
pub fn export(db: &Path) -> Result<(), IfError> {
    let mut store = Store::open_existing(db)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    store.for_each_leaf(0, |_, leaf| {
        writeln!(out, "{}", json_line(&Record::from_leaf(leaf)?, leaf)).map_err(stdout_error)
    })?;
    out.flush().map_err(stdout_error)
}

/// `witness query --trace-token UUID --db FILE`: every record of one trace (received, executed or
/// failed, rejected, falsified), with why; JSON lines with `json`. Read through the log's trace index.
pub fn query(db: &Path, trace: uuid::Uuid, json: bool) -> Result<(), IfError> {
    let found = Store::open_existing(db)?.snapshot()?.trace(trace, usize::MAX)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if found.pruned_below > 0 {
        let pruned = if_edge::builtin::witness::pruned_json(found.pruned_below);
        writeln!(out, "{}", show_line(&pruned, json)).map_err(stdout_error)?;
    }
    for (record, leaf) in &found.records {
        writeln!(out, "{}", show_line(&json_line(record, leaf), json)).map_err(stdout_error)?;
    }
    out.flush().map_err(stdout_error)
}

/// `witness query --trace-token UUID --archive DIR`: the records of one trace in an archive's entry
/// bundles (`DIR`: the agent's `tlog/{site}/{agent}/`), each with the bundle that holds it. The bundles are
/// read as they are; a tlog-tiles client checks the archive itself against the signed checkpoint.
pub fn query_archive(dir: &Path, trace: uuid::Uuid, json: bool) -> Result<(), IfError> {
    let unreadable = |p: &Path, e: &dyn std::fmt::Display| {
        IfError::format(ErrorCode::ConfigInvalid, format_args!("--archive {}: {e}", p.display()))
    };
    // Every bundle file, the widest of each index (a partial one is the same entries' right edge).
    let mut bundles = std::collections::BTreeMap::<u64, (u64, String)>::new();
    let mut todo = vec![dir.join("tile/entries")];
    while let Some(at) = todo.pop() {
        for entry in std::fs::read_dir(&at).map_err(|e| unreadable(&at, &e))? {
            let entry = entry.map_err(|e| unreadable(&at, &e))?;
            let path = entry.path();
            // The entry's own type: a link is neither walked into nor read.
            let kind = entry.file_type().map_err(|e| unreadable(&path, &e))?;
            if kind.is_dir() {
                todo.push(path);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let name = path.strip_prefix(dir).map(|p| p.to_string_lossy().replace('\\', "/")).unwrap_or_default();
            let Some((index, width)) = if_protocol::witness::tiles::entries_at(&name) else { continue };
            if bundles.get(&index).is_none_or(|(w, _)| *w < width) {
                bundles.insert(index, (width, name));
            }
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (width, name) in bundles.values() {
        let bytes = std::fs::read(dir.join(name)).map_err(|e| unreadable(&dir.join(name), &e))?;
        let at = |e: IfError| IfError::format(e.code(), format_args!("{name}: {}", e.detail()));
        let entries = if_protocol::witness::tiles::unbundle(&bytes).map_err(at)?;
        if entries.len() as u64 != *width {
            return Err(unreadable(&dir.join(name), &format_args!("{} entries, not {width}", entries.len())));
        }
        for leaf in entries {
            let record = Record::from_leaf(leaf).map_err(at)?;
            if record.entry.trace == Some(trace) {
                let mut line = json_line(&record, leaf);
                line["archived"] = serde_json::Value::String(name.clone());
                writeln!(out, "{}", show_line(&line, json)).map_err(stdout_error)?;
            }
        }
    }
    out.flush().map_err(stdout_error)
}

fn stdout_error(e: std::io::Error) -> IfError {
    IfError::format(ErrorCode::SystemError, format_args!("stdout: {e}"))
}

/// A record's JSON form with `leaf`, the exact bytes hashed as its RFC 6962 leaf, in base64.
fn json_line(record: &Record, leaf: &[u8]) -> serde_json::Value {
    let mut line = record.to_json();
    line["leaf"] = serde_json::Value::String(B64.encode(leaf));
    line
}

/// One record of a query: its JSON, or a line of text.
pub fn show_line(line: &serde_json::Value, json: bool) -> String {
    if json {
        return line.to_string();
    }
    if let Some(below) = line["pruned_below"].as_u64() {
        return format!(
            "records #0 to #{} were pruned here after the archive took them ({}); `ifctl witness query \
             --archive DIR` finds this trace's among them",
            below.saturating_sub(1),
            line["archived"].as_str().unwrap_or("")
        );
    }
    let s = |k: &str| line[k].as_str().unwrap_or("").to_string();
    let code = line["code"].as_str().map(|c| format!(" {c}")).unwrap_or_default();
    let detail = s("detail");
    let archived = line["archived"].as_str().map(|b| format!(" (archived in {b})")).unwrap_or_default();
    format!(
        "#{:<6} {:<11} {} {} by {} seq {}{code}: why {:?}{}{archived}",
        line["index"],
        s("kind"),
        s("capability"),
        s("action"),
        s("sender"),
        line["seq"].as_u64().unwrap_or(0),
        s("why"),
        if detail.is_empty() { String::new() } else { format!("; {detail}") }
    )
}

/// The latest signed checkpoint note, verbatim.
pub fn checkpoint(db: &Path) -> Result<String, IfError> {
    let mut store = Store::open_existing(db)?;
    store
        .checkpoints()?
        .pop()
        .map(|(_, note)| note)
        .ok_or_else(|| IfError::with(ErrorCode::InvalidProof, "the log has no checkpoint yet"))
}

/// A checkpoint note as JSON: what its body says, and the note verbatim.
pub fn checkpoint_json(note: &str) -> Result<serde_json::Value, IfError> {
    let cp = if_protocol::witness::checkpoint::Checkpoint::parse_note(note)?;
    Ok(serde_json::json!({ "origin": cp.origin.as_str(), "size": cp.size, "root": B64.encode(cp.root), "note": note }))
}

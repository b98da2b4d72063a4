//! The shape of the source tree, checked: inside each crate the modules form a DAG (imports point only
//! downward), no source file grows past [`LONG`] lines without saying why in its opening comment, and the
//! README's Layout section names only paths that exist.
//!
//! A module may use the items of its own ancestors (a parent module is the face of its children, as
//! `agent/mod.rs` is for `agent/completion.rs`); every other reference between modules counts, and a cycle
//! among them fails the test with the path it takes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lines past which a file must say, in its opening comment, why it stays one file.
const LONG: usize = 500;
/// The words that say so.
const REASON: &str = "One file, though long";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read dir").filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` -> `["a", "b"]`; the crate roots are `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src").with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib" || l == "main") {
        parts.pop();
    }
    parts
}

/// The code of a file without its comments and its test module.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Every path a file names that starts at `crate`, `super` or `self`, with `use` groups spelled out
/// (`crate::a::{b, c::d}` -> `crate::a::b`, `crate::a::c::d`).
fn paths(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let at_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':');
        let start = ["crate::", "super::", "self::"].iter().find(|p| code[i..].starts_with(**p));
        match start {
            Some(_) if at_word => {
                let (found, end) = path_at(code, i);
                out.extend(found);
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

/// The path (or group of paths) that starts at `i`, and where it ends.
fn path_at(code: &str, mut i: usize) -> (Vec<Vec<String>>, usize) {
    let bytes = code.as_bytes();
    let mut segs = Vec::new();
    loop {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if i > start {
            segs.push(code[start..i].to_string());
        }
        if code[i..].starts_with("::{") {
            let mut depth = 0;
            let open = i + 2;
            let mut close = open;
            for (k, c) in code[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            close = open + k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let mut out = Vec::new();
            for item in split_top(&code[open + 1..close]) {
                let item = item.trim();
                if item.is_empty() || item == "self" {
                    continue;
                }
                let (inner, _) = path_at(item, 0);
                for p in inner {
                    out.push(segs.iter().cloned().chain(p).collect());
                }
            }
            return (out, close + 1);
        }
        if code[i..].starts_with("::") {
            i += 2;
            continue;
        }
        return (vec![segs], i);
    }
}

/// Splits a `use` group at its top-level commas.
fn split_top(group: &str) -> Vec<&str> {
    let (mut out, mut depth, mut from) = (Vec::new(), 0, 0);
    for (k, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&group[from..k]);
                from = k + 1;
            }
            _ => {}
        }
    }
    out.push(&group[from..]);
    out
}

/// The module a path from module `from` lands in: the longest known module prefix of it.
fn resolve(modules: &BTreeSet<Vec<String>>, from: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut full: Vec<String> = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("self") => from.to_vec(),
        Some("super") => from.to_vec(),
        _ => return None,
    };
    let mut rest = path;
    while let Some("super") = rest.first().map(String::as_str) {
        full.pop();
        rest = &rest[1..];
    }
    if matches!(rest.first().map(String::as_str), Some("crate" | "self")) {
        rest = &rest[1..];
    }
    full.extend(rest.iter().cloned());
    (0..=full.len()).rev().map(|n| full[..n].to_vec()).find(|m| modules.contains(m))
}

/// The module graph of one crate: module -> the modules it uses (ancestors left out).
fn graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let mut g = BTreeMap::new();
    for f in &files {
        let from = module_of(src, f);
        let text = std::fs::read_to_string(f).expect("read");
        let mut to = BTreeSet::new();
        for p in paths(&code(&text)) {
            if let Some(m) = resolve(&modules, &from, &p).filter(|m| m != &from && !from.starts_with(m)) {
                to.insert(m);
            }
        }
        g.insert(from, to);
    }
    g
}

/// A cycle in `g`, as the modules it passes through, if there is one.
fn cycle(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        m: &Vec<String>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for next in g.get(m).into_iter().flatten() {
            match state.get(next) {
                Some(1) => {
                    let from = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut path: Vec<String> = stack[from..].iter().map(|s| s.join("::")).collect();
                    path.push(next.join("::"));
                    return Some(path);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(g, next, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if !state.contains_key(m)
            && let Some(c) = visit(g, m, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

const CRATES: [&str; 6] = ["protocol/src", "edge/src", "tools/src", "tests/src", "firmware/src", "firmware/board/src"];

#[test]
fn modules_inside_each_crate_import_only_downward() {
    for src in CRATES {
        let g = graph(&root().join(src));
        assert!(g.len() > 3, "{src}: the modules are found");
        if let Some(c) = cycle(&g) {
            panic!("{src}: the modules form a cycle: {}", c.join(" -> "));
        }
    }
}

#[test]
fn the_check_sees_a_cycle_through_use_groups_and_super() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("w")).expect("dir");
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod w;\n").expect("write");
    std::fs::write(src.join("a.rs"), "use crate::w::{x::Thing, y};\n").expect("write");
    std::fs::write(src.join("w/mod.rs"), "pub mod x;\npub mod y;\n").expect("write");
    std::fs::write(src.join("w/x.rs"), "// crate::a in a comment is no import\npub struct Thing;\n").expect("write");
    assert_eq!(cycle(&graph(src)), None);
    std::fs::write(src.join("w/y.rs"), "fn f() -> super::super::a::A { todo!() }\n").expect("write");
    assert_eq!(cycle(&graph(src)).map(|c| c.join(" -> ")), Some("a -> w::y -> a".to_string()));
    std::fs::write(src.join("w/y.rs"), "use super::{x, x::Thing};\n").expect("write");
    std::fs::write(src.join("w/x.rs"), "#[cfg(test)]\nmod tests { use crate::w::y; }\n").expect("write");
    assert_eq!(cycle(&graph(src)), None, "a test module may look anywhere");
    std::fs::write(src.join("w/x.rs"), "pub(crate) use crate::w::y::Y;\n").expect("write");
    assert!(cycle(&graph(src)).is_some(), "siblings that use each other");
}

#[test]
fn a_long_file_says_why_it_stays_one_file() {
    let mut long = Vec::new();
    for src in CRATES {
        let mut files = Vec::new();
        rust_files(&root().join(src), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read");
            let opening: String =
                text.lines().take_while(|l| l.starts_with("//!")).collect::<Vec<_>>().join(" ").replace("//! ", "");
            if text.lines().count() > LONG && !opening.contains(REASON) {
                long.push(format!("{} ({} lines)", f.display(), text.lines().count()));
            }
        }
    }
    assert!(long.is_empty(), "over {LONG} lines with no reason in the opening comment: {long:?}");
}

#[test]
fn the_readme_layout_matches_the_tree() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let layout = readme.split("\n## Layout").nth(1).expect("a Layout section");
    let layout = layout.split("\n## ").next().unwrap_or_default();
    // An indented block, one entry a line: its path first, then what it is.
    let named: Vec<&str> = layout
        .lines()
        .filter(|l| l.starts_with("    ") && !l.starts_with("     "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| p.ends_with('/') || p.contains('.'))
        .collect();
    assert!(named.len() >= 5, "the Layout section names the tree: {named:?}");
    for path in &named {
        assert!(root().join(path).exists(), "README Layout names {path}, which does not exist");
    }
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let members = manifest.split("members = [").nth(1).and_then(|m| m.split(']').next()).expect("members");
    for member in members.split(',').map(|m| m.trim().trim_matches('"')).filter(|m| !m.is_empty()) {
        assert!(named.contains(&format!("{member}/").as_str()), "README Layout does not name the crate {member}/");
    }
}

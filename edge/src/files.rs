//! Reading the small files an agent and `ifctl` are configured with: config, keys, trust roots,
//! manifests, certificates, vault secrets. Each must be a regular file no larger than its kind needs,
//! so a path that names a directory, a device (`/dev/zero`), a FIFO or a symlink loop is a clear
//! configuration error at once, never a read that hangs or grows without end.

use std::io::Read as _;
use std::path::Path;

/// Largest configuration or policy document read.
pub const DOC_MAX: u64 = 1 << 20;
/// Largest key or secret file read.
pub const KEY_MAX: u64 = 64 << 10;

/// The bytes of the regular file `path`, at most `max` of them; the error says what is wrong in words
/// (the caller adds the path and its code).
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // Non-blocking, so opening a FIFO returns at once (and is then refused as not a regular file); a
    // regular file reads the same either way.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "not a regular file" };
        return Err(format!("is {kind}"));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("is larger than {max} bytes"));
    }
    Ok(bytes)
}

/// [`read_limited`] as UTF-8 text.
pub fn read_text(path: &Path, max: u64) -> Result<String, String> {
    String::from_utf8(read_limited(path, max)?).map_err(|_| "is not UTF-8 text".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("a.toml");
        std::fs::write(&f, "x = 1\n").expect("write");
        assert_eq!(read_text(&f, 100).expect("read"), "x = 1\n");
        assert_eq!(read_text(&f, 3).expect_err("too big"), "is larger than 3 bytes");
        assert_eq!(read_text(dir.path(), 100).expect_err("dir"), "is a directory");
        assert_eq!(read_text(Path::new("/dev/zero"), 100).expect_err("device"), "is not a regular file");
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        assert_eq!(read_text(&zero, 100).expect_err("symlink to a device"), "is not a regular file");
        let lp = dir.path().join("loop");
        std::os::unix::fs::symlink(&lp, &lp).expect("symlink");
        assert!(read_text(&lp, 100).expect_err("loop").starts_with("cannot read"));
        assert!(read_text(&dir.path().join("missing"), 100).expect_err("missing").starts_with("cannot read"));
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
        assert_eq!(read_text(&fifo, 100).expect_err("a FIFO, at once"), "is not a regular file");
        std::fs::write(&f, [0xff, 0xfe]).expect("write");
        assert_eq!(read_text(&f, 100).expect_err("binary"), "is not UTF-8 text");
    }
}

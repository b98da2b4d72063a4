//! Redaction: secret values and sensitive fields never leave the agent in logs, replies or the witness.
//!
//! Two nets. Every value read from the vault is registered here, and [`scrub`] replaces any occurrence of a
//! registered value, wherever it appears, with `[REDACTED]`; the agent's log writer passes every line
//! through it. Structured data (a driver's result before it is replied and witnessed) goes through
//! [`redact_json`], which also blanks every value whose key looks sensitive (`api_key`, `secret`,
//! `token`, `password`, `credential`, ...) at any depth, whether or not the value is a known secret.

use std::borrow::Cow;
use std::io::Write;
use std::sync::{PoisonError, RwLock};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Key fragments that mark a field as sensitive, compared case-insensitively.
const SENSITIVE: &[&str] =
    &["api_key", "apikey", "secret", "token", "password", "passwd", "credential", "private_key", "authorization"];

/// Values shorter than this are not scrubbed by value (they would match everywhere); keys still are.
const MIN_SCRUB_LEN: usize = 4;

static VALUES: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret value to be scrubbed from everything the agent writes.
pub fn register(value: &str) {
    if value.len() < MIN_SCRUB_LEN {
        return;
    }
    let mut values = VALUES.write().unwrap_or_else(PoisonError::into_inner);
    if !values.iter().any(|v| v == value) {
        values.push(value.to_string());
    }
}

/// Whether a field of this name holds something secret.
pub fn is_sensitive_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SENSITIVE.iter().any(|s| k.contains(s))
}

/// `text` with every registered secret value replaced.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let values = VALUES.read().unwrap_or_else(PoisonError::into_inner);
    let mut out = Cow::Borrowed(text);
    for v in values.iter() {
        if out.contains(v.as_str()) {
            out = Cow::Owned(out.replace(v.as_str(), REDACTED));
        }
    }
    out
}

/// Blanks sensitive keys and scrubs registered values, at any depth.
pub fn redact_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_sensitive_key(k) {
                    *val = serde_json::Value::String(REDACTED.into());
                } else {
                    redact_json(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        serde_json::Value::String(s) => {
            if let Cow::Owned(clean) = scrub(s) {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// The agent's log writer: each formatted line passes through the redaction before it reaches stderr.
/// Text lines are scrubbed of registered values ([`scrub`]); JSON lines ([`LogStderr::json`]) also lose
/// the values of sensitive field names ([`redact_json_lines`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogStderr {
    json: bool,
}

impl LogStderr {
    /// For the text format.
    pub const fn text() -> Self {
        LogStderr { json: false }
    }

    /// For the JSON format: one event object per line.
    pub const fn json() -> Self {
        LogStderr { json: true }
    }
}

impl Write for LogStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = if self.json { Cow::Owned(redact_json_lines(&text)) } else { scrub(&text) };
        std::io::stderr().write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogStderr {
    type Writer = LogStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Each line of `text` that is a JSON value, redacted ([`redact_json`]); any other line scrubbed as text.
pub fn redact_json_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match serde_json::from_str::<serde_json::Value>(line.trim_end()) {
            Ok(mut event) => {
                redact_json(&mut event);
                out.push_str(&event.to_string());
                out.push('\n');
            }
            Err(_) => out.push_str(&scrub(line)),
        }
    }
    out
}

/// Formats a log field, blanking it when its name is sensitive.
pub fn write_field(
    w: &mut tracing_subscriber::fmt::format::Writer<'_>,
    field: &tracing::field::Field,
    value: &dyn std::fmt::Debug,
) -> std::fmt::Result {
    match field.name() {
        "message" => write!(w, "{value:?}"),
        name if is_sensitive_key(name) => write!(w, "{name}={REDACTED}"),
        name => write!(w, "{name}={value:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_keys_are_blanked_at_any_depth_and_known_values_anywhere() {
        register("hunter2-value");
        let mut v = serde_json::json!({
            "ok": true,
            "API_KEY": "abc",
            "nested": [{ "db_password": "x", "note": "the value hunter2-value leaked" }],
            "tokens": 3,
        });
        redact_json(&mut v);
        assert_eq!(v["API_KEY"], REDACTED);
        assert_eq!(v["nested"][0]["db_password"], REDACTED);
        assert_eq!(v["nested"][0]["note"], "the value [REDACTED] leaked");
        assert_eq!(v["tokens"], REDACTED, "a key containing 'token' is sensitive");
        assert_eq!(v["ok"], true);
        assert_eq!(scrub("a hunter2-value b"), "a [REDACTED] b");
        assert!(matches!(scrub("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_log_lines_lose_sensitive_fields_and_known_values() {
        register("s3cr3t-json-value");
        let line =
            r#"{"level":"INFO","fields":{"message":"saw s3cr3t-json-value","api_token":"xyz","n":3},"target":"t"}"#;
        let out = redact_json_lines(&format!("{line}\nnot json s3cr3t-json-value\n"));
        let mut lines = out.lines();
        let event: serde_json::Value = serde_json::from_str(lines.next().expect("a line")).expect("json");
        assert_eq!(event["fields"]["api_token"], REDACTED);
        assert_eq!(event["fields"]["message"], "saw [REDACTED]");
        assert_eq!(event["fields"]["n"], 3);
        assert_eq!(lines.next(), Some("not json [REDACTED]"));
    }

    #[test]
    fn tiny_values_are_not_scrubbed_by_value() {
        register("ab");
        assert_eq!(scrub("abc"), "abc");
    }
}

//! Where a command's time goes: the time each accepted command reaches each stage of the path, for the
//! path benchmark to break its latency down stage by stage.
//!
//! Off unless `IF_EDGE_STAGES` names a file when the agent starts. Then each accepted command's stage
//! times (Unix microseconds, the clock the benchmark's client reads too) are kept in memory, for at most
//! [`MAX_COMMANDS`] commands, and written to that file as CSV when the agent stops. Off, a stage costs
//! the agent one test of an `Option`. The file holds envelope ids and times, nothing of what a command
//! said.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use if_protocol::{ErrorCode, IfError};

/// The environment variable naming the file.
pub const ENV: &str = "IF_EDGE_STAGES";

/// Most commands whose times are kept; later ones are not recorded.
pub const MAX_COMMANDS: usize = 1 << 20;

/// The stages of an accepted command, in the order it passes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The ingress loop took its burst from the connection.
    Taken = 0,
    /// Its burst was verified, admitted and authorized.
    Decided,
    /// Its RECEIVED record went to the writer (after the previous burst's commit returned).
    Submitted,
    /// Its RECEIVED commit returned.
    Durable,
    /// It was acknowledged and is being handed to its capability.
    Started,
    /// Its capability returned.
    Ran,
    /// Its outcome commit returned.
    Witnessed,
    /// Its reply was handed to the MQTT client.
    Replied,
}

/// The column names, in [`Stage`] order.
pub const COLUMNS: [&str; 8] = ["taken", "decided", "submitted", "durable", "started", "ran", "witnessed", "replied"];

/// The stage times being kept.
#[derive(Debug)]
pub struct Stages {
    path: PathBuf,
    rows: Mutex<HashMap<uuid::Uuid, [u64; 8]>>,
}

impl Stages {
    /// Recording into the file `IF_EDGE_STAGES` names, if it names one.
    pub fn from_env() -> Option<Arc<Stages>> {
        let path = std::env::var_os(ENV).filter(|p| !p.is_empty())?;
        Some(Arc::new(Stages { path: PathBuf::from(path), rows: Mutex::new(HashMap::new()) }))
    }

    /// Unix microseconds now.
    pub fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// Records that each command of `ids` reached `stage` at `at`.
    pub fn mark(&self, ids: impl IntoIterator<Item = uuid::Uuid>, stage: Stage, at: u64) {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            if rows.len() >= MAX_COMMANDS && !rows.contains_key(&id) {
                continue;
            }
            rows.entry(id).or_default()[stage as usize] = at;
        }
    }

    /// Writes every command's times to the file: `id` and a column per stage (0: not reached).
    pub fn write(&self) -> Result<(), IfError> {
        let fail =
            |e: std::io::Error| IfError::format(ErrorCode::SystemError, format_args!("{}: {e}", self.path.display()));
        let rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = std::io::BufWriter::new(std::fs::File::create(&self.path).map_err(fail)?);
        writeln!(out, "id,{}", COLUMNS.join(",")).map_err(fail)?;
        for (id, times) in rows.iter() {
            let times: Vec<String> = times.iter().map(u64::to_string).collect();
            writeln!(out, "{id},{}", times.join(",")).map_err(fail)?;
        }
        out.flush().map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_times_are_written_a_row_per_command_with_unreached_stages_zero() {
        let dir = tempfile::tempdir().expect("dir");
        let stages = Stages { path: dir.path().join("stages.csv"), rows: Mutex::new(HashMap::new()) };
        let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        stages.mark([a, b], Stage::Taken, 10);
        stages.mark([a], Stage::Replied, 90);
        stages.write().expect("write");
        let text = std::fs::read_to_string(dir.path().join("stages.csv")).expect("read");
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.remove(0), "id,taken,decided,submitted,durable,started,ran,witnessed,replied");
        lines.sort_unstable();
        assert_eq!(lines, [format!("{a},10,0,0,0,0,0,0,90"), format!("{b},10,0,0,0,0,0,0,0")]);
    }

    #[test]
    fn an_unwritable_file_is_an_error_naming_it() {
        let stages = Stages { path: PathBuf::from("/nonexistent/dir/stages.csv"), rows: Mutex::new(HashMap::new()) };
        let e = stages.write().expect_err("no such directory");
        assert!(e.to_string().contains("IF_ERR") && e.to_string().contains("/nonexistent/dir/stages.csv"), "{e}");
    }
}

//! `ifctl witness ...`: a witness log file checked, exported and queried, a running agent asked for a
//! trace, and the collector of anchors (`verify-anchors`, the same as `if-collector`).

use std::path::PathBuf;

use clap::Subcommand;
use if_protocol::IfError;

use super::{Cli, Signer};
use crate::{message, settings, witness};

#[derive(Debug, Subcommand)]
pub(crate) enum WitnessCommand {
    /// Check chain, tree and checkpoints; exits non-zero naming the first bad index.
    Verify {
        /// The witness log file.
        #[arg(long)]
        db: PathBuf,
        /// The agent's public key; defaults to the one its latest BOOT record names.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Every record of one trace: received, executed or failed, rejected, falsified, with why.
    Query {
        /// The trace token.
        #[arg(long)]
        trace_token: uuid::Uuid,
        /// Read this witness log file (of a stopped agent, or a copy) instead of asking the running
        /// agent over MQTT.
        #[arg(long)]
        db: Option<PathBuf>,
        /// Search this archive instead (a directory: the agent's `tlog/{site}/{agent}/`), for records
        /// pruned from the agent's log.
        #[arg(long, value_name = "DIR", conflicts_with = "db")]
        archive: Option<PathBuf>,
        #[command(flatten)]
        who: Signer,
        /// Seconds to wait for the agent's answer.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Print every record as a JSON line (`leaf` is the exact RFC 6962 leaf, base64).
    Export {
        /// The witness log file.
        #[arg(long)]
        db: PathBuf,
    },
    /// Verify and collect agents' anchors: signature by the agent's pinned key, origin, consistency with
    /// the last accepted checkpoint; acknowledge accepted ones, archive them, and publish a shrinking or
    /// forked log with both checkpoints on the agent's `security` topic.
    VerifyAnchors(if_collector::Args),
    /// Print the latest signed checkpoint note verbatim.
    Checkpoint {
        /// The witness log file.
        #[arg(long)]
        db: PathBuf,
    },
    /// Compact a stopped agent's witness file: after pruning, give the freed space back to the file system.
    Compact {
        /// The witness log file.
        #[arg(long)]
        db: PathBuf,
    },
    /// Print the signed-note verifier key of an agent's checkpoints (`origin+id+key`), for tlog-tiles
    /// clients that verify its archive.
    Vkey {
        /// The agent's public key (`agent.pub`).
        #[arg(long)]
        key: PathBuf,
        /// Its checkpoints' origin: the first line of any of its checkpoints.
        #[arg(long)]
        origin: String,
    },
}

/// Carries out `ifctl witness ...`.
pub(crate) async fn run(command: &WitnessCommand, cli: &Cli, s: &settings::Settings) -> Result<(), IfError> {
    let json = cli.json;
    match command {
        WitnessCommand::Verify { db, key } => {
            let report = witness::verify_db(db, key.as_deref())?;
            witness::print_report(&report, json);
            Ok(())
        }
        WitnessCommand::Export { db } => witness::export(db),
        WitnessCommand::Query { trace_token, archive: Some(dir), .. } => {
            witness::query_archive(dir, *trace_token, json)
        }
        WitnessCommand::Query { trace_token, db: Some(db), .. } => witness::query(db, *trace_token, json),
        WitnessCommand::Query { trace_token, db: None, who, timeout, .. } => {
            let target = who.to.target(s, *timeout)?;
            let why = format!("query of trace {trace_token}");
            let mut cmd = who.command(cli, s, if_edge::builtin::WitnessQuery::ID, "query", &why)?;
            cmd.args = vec![format!("trace={trace_token}")];
            let reply = message::send_command(&target, &cmd).await?;
            if let Some(e) = &reply.error {
                return Err(IfError::from(e));
            }
            let result: serde_json::Value =
                reply.result.and_then(|r| serde_json::from_str(r.get()).ok()).unwrap_or_default();
            for r in result["records"].as_array().into_iter().flatten() {
                println!("{}", witness::show_line(r, json));
            }
            Ok(())
        }
        WitnessCommand::VerifyAnchors(args) => if_collector::run(args.options(s.tls()?, json)?).await,
        WitnessCommand::Compact { db } => {
            let c = if_edge::witness::prune::compact(db)?;
            let ms = c.took.as_millis();
            match json {
                true => println!("{}", serde_json::json!({ "before": c.before, "after": c.after, "ms": ms })),
                false => println!("compacted {}: {} -> {} bytes in {ms} ms", db.display(), c.before, c.after),
            }
            Ok(())
        }
        WitnessCommand::Vkey { key, origin } => {
            let public = if_edge::keyfile::read_public(key)?;
            let verifier = if_protocol::witness::checkpoint::NoteVerifier::new(origin, public)?;
            println!("{}", verifier.to_vkey());
            Ok(())
        }
        WitnessCommand::Checkpoint { db } => {
            let note = witness::checkpoint(db)?;
            match json {
                true => println!("{}", witness::checkpoint_json(&note)?),
                false => print!("{note}"),
            }
            Ok(())
        }
    }
}

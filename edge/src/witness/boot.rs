//! What a start writes: the BOOT record, and for every RECEIVED a crash left without an outcome an
//! INTERRUPTED record (IF_ERR_500) that settles it, with the reply its sender is owed cached for
//! redeliveries. Nothing interrupted runs again.

use if_protocol::{ErrorCode, IfError};

use super::record::{Entry, Kind};
use super::store::{Append, CachedReply, Interrupted, Pending, ReplyUpdate, Store};

/// Starts a run of `store` at `wall_ms` with BOOT `detail`; `answer` gives the reply for each
/// interrupted command (its RECEIVED index, what it was). Returns the interrupted commands.
pub fn start(
    store: &mut Store,
    wall_ms: u64,
    detail: &str,
    answer: impl Fn(u64, &Pending) -> Vec<u8>,
) -> Result<Vec<Interrupted>, IfError> {
    let (batch, interrupted) = records(wall_ms, detail, &store.pending()?, answer);
    store.boot(&batch)?;
    Ok(interrupted)
}

/// The records of a start with these open RECEIVED records, and what each interrupted command is owed.
pub fn records(
    wall_ms: u64,
    detail: &str,
    pending: &[(u64, Pending)],
    answer: impl Fn(u64, &Pending) -> Vec<u8>,
) -> (Vec<Append>, Vec<Interrupted>) {
    let boot = Entry { wall_ms, detail: detail.to_string(), count: 1, ..Entry::default() };
    let mut batch = vec![Append::record(Kind::Boot, boot)];
    let mut interrupted = Vec::with_capacity(pending.len());
    for (index, p) in pending {
        let reply = answer(*index, p);
        let mut entry = p.entry.clone();
        entry.wall_ms = wall_ms;
        entry.code = Some(ErrorCode::SystemError.number());
        entry.detail = format!("RECEIVED #{index} has no outcome; it is not run again");
        let mut item = Append::record(Kind::Interrupted, entry);
        item.settles = Some(*index);
        item.reply = Some(ReplyUpdate {
            sender: p.sender.clone(),
            seq: p.seq,
            cached: CachedReply { digest: p.digest, reply: reply.clone() },
            keep_from: 0,
        });
        batch.push(item);
        interrupted.push(Interrupted { pending: p.clone(), reply });
    }
    (batch, interrupted)
}

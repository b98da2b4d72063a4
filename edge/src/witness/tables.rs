//! Writing records into the witness log's tables: a record given its place in the log ([`prepare`]),
//! and one transaction's rows for a batch of them ([`write`]), shared by the store and its folding thread.
//! Every commit of the tables saves redb's allocator state ([`begin`]).

use if_protocol::IfError;
use if_protocol::witness::Hash;
use if_protocol::witness::merkle::{CompactTree, Node};
use redb::{Database, ReadableTable as _, ReadableTableMetadata as _, WriteTransaction};

use super::record::Record;
use super::schema::{
    Append, BUDGETS, CHECKPOINTS, HEAD, HeadState, NODES, PENDING, POLICY, RECORDS, REPLAY, REPLIES, STORED_LEVEL,
    TRACES, corrupt, encode, unavailable,
};

/// A record given its place in the log, ready for the tables: the append it came from (its entry as the
/// record holds it), its index, its leaf bytes and the stored tree nodes it completes.
#[derive(Debug)]
pub struct Prepared {
    /// The append, its entry as the record holds it.
    pub item: Append,
    /// The record's index.
    pub index: u64,
    /// Its leaf bytes.
    pub leaf: Vec<u8>,
    /// The stored tree nodes it completes.
    pub nodes: Vec<Node>,
}

/// Records on their way to the tables, with the checkpoint notes signed among them (by tree size).
#[derive(Debug, Default)]
pub struct Batch {
    /// The records, in order.
    pub items: Vec<Prepared>,
    /// The notes.
    pub notes: Vec<(u64, String)>,
}

impl Batch {
    /// Whether it holds nothing to write.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.notes.is_empty()
    }
}

/// Writes `batch` and the head it leads to in one transaction, committed durably.
pub fn commit(db: &Database, batch: &Batch, head: &HeadState) -> Result<(), IfError> {
    let txn = begin(db)?;
    write(&txn, &batch.items, &batch.notes, head)?;
    txn.commit().map_err(|e| unavailable("commit", e))
}

/// Gives each append its place after `head`: its index, its link to the record before, its wall time
/// (never before the log's last) and the run's boot counter; pushes its leaf onto `tree`. The same
/// appends after the same head make the same records, which is how the journal's frames are replayed.
pub fn prepare(
    head: &mut HeadState,
    tree: &mut CompactTree,
    batch: impl IntoIterator<Item = Append>,
) -> Result<Vec<Prepared>, IfError> {
    let batch = batch.into_iter();
    let mut out = Vec::with_capacity(batch.size_hint().0);
    for mut item in batch {
        item.entry.wall_ms = item.entry.wall_ms.max(head.last_wall_ms);
        item.entry.boot = head.boot;
        let record = Record { index: head.size, kind: item.kind, entry: item.entry, prev: head.last_leaf };
        let leaf = record.to_leaf()?;
        let hash = Record::leaf_hash(&leaf);
        let nodes = tree.push_nodes(hash).into_iter().filter(|n| n.level >= STORED_LEVEL).collect();
        item.entry = record.entry;
        head.last_leaf = hash;
        head.last_wall_ms = item.entry.wall_ms;
        head.size += 1;
        out.push(Prepared { item, index: record.index, leaf, nodes });
    }
    Ok(out)
}

/// Writes records, the state that belongs to them, checkpoint notes and the head they lead to, in `txn`.
pub fn write(
    txn: &WriteTransaction,
    batch: &[Prepared],
    notes: &[(u64, String)],
    head: &HeadState,
) -> Result<(), IfError> {
    let mut records = txn.open_table(RECORDS).map_err(|e| unavailable("table", e))?;
    let mut replay = txn.open_table(REPLAY).map_err(|e| unavailable("table", e))?;
    let mut pending = txn.open_table(PENDING).map_err(|e| unavailable("table", e))?;
    let mut replies = txn.open_table(REPLIES).map_err(|e| unavailable("table", e))?;
    let mut index = Index::open(txn)?;
    for p in batch {
        let item = &p.item;
        records.insert(p.index, p.leaf.as_slice()).map_err(|e| unavailable("write", e))?;
        index.add(p.index, &p.nodes, item.entry.trace)?;
        if let Some((sender, window)) = &item.replay {
            replay.insert(sender.as_str(), encode(window)?.as_slice()).map_err(|e| unavailable("write", e))?;
        }
        if let Some(pend) = &item.pending {
            pending.insert(p.index, encode(pend)?.as_slice()).map_err(|e| unavailable("write", e))?;
        }
        if let Some(settled) = item.settles {
            pending.remove(settled).map_err(|e| unavailable("write", e))?;
        }
        if let Some(r) = &item.reply {
            replies
                .insert((r.sender.as_str(), r.seq), encode(&r.cached)?.as_slice())
                .map_err(|e| unavailable("write", e))?;
            replies
                .retain_in((r.sender.as_str(), 0)..(r.sender.as_str(), r.keep_from), |_, _| false)
                .map_err(|e| unavailable("write", e))?;
        }
        if let Some((provider, spent)) = &item.budget {
            let mut budgets = txn.open_table(BUDGETS).map_err(|e| unavailable("table", e))?;
            budgets.insert(provider.as_str(), encode(spent)?.as_slice()).map_err(|e| unavailable("write", e))?;
        }
        if let Some((key, value)) = &item.policy {
            let mut policy = txn.open_table(POLICY).map_err(|e| unavailable("table", e))?;
            policy.insert(key.as_str(), value.as_slice()).map_err(|e| unavailable("write", e))?;
        }
        if let Some(sender) = &item.forget {
            replay.remove(sender.as_str()).map_err(|e| unavailable("write", e))?;
            replies
                .retain_in((sender.as_str(), 0)..=(sender.as_str(), u64::MAX), |_, _| false)
                .map_err(|e| unavailable("write", e))?;
        }
    }
    if !notes.is_empty() {
        let mut cps = txn.open_table(CHECKPOINTS).map_err(|e| unavailable("table", e))?;
        for (size, note) in notes {
            cps.insert(*size, note.as_str()).map_err(|e| unavailable("write", e))?;
        }
    }
    let mut head_table = txn.open_table(HEAD).map_err(|e| unavailable("table", e))?;
    head_table.insert("head", encode(head)?.as_slice()).map_err(|e| unavailable("write", e))?;
    Ok(())
}

/// The tree nodes and trace entries a transaction adds with its records.
struct Index<'t> {
    nodes: redb::Table<'t, (u64, u8), Hash>,
    traces: redb::Table<'t, (u128, u64), ()>,
}

impl<'t> Index<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, IfError> {
        let nodes = txn.open_table(NODES).map_err(|e| unavailable("table", e))?;
        let traces = txn.open_table(TRACES).map_err(|e| unavailable("table", e))?;
        Ok(Index { nodes, traces })
    }

    /// Stores the subtree roots record `index` completed and its trace.
    fn add(&mut self, index: u64, nodes: &[Node], trace: Option<uuid::Uuid>) -> Result<(), IfError> {
        for n in nodes {
            self.nodes.insert((n.last, n.level), n.hash).map_err(|e| unavailable("write", e))?;
        }
        if let Some(trace) = trace {
            self.traces.insert((trace.as_u128(), index), ()).map_err(|e| unavailable("write", e))?;
        }
        Ok(())
    }
}

/// Builds the tree nodes and the trace index of a log written before they were kept, from its records.
pub fn index_existing(txn: &WriteTransaction) -> Result<(), IfError> {
    let records = txn.open_table(RECORDS).map_err(|e| unavailable("table", e))?;
    let mut index = Index::open(txn)?;
    let mut tree = CompactTree::new();
    let count = records.len().map_err(|e| unavailable("read", e))?;
    for row in records.iter().map_err(|e| unavailable("read", e))? {
        let (k, v) = row.map_err(|e| unavailable("read", e))?;
        let record =
            Record::from_leaf(v.value()).map_err(|e| corrupt(format_args!("record {}: {}", k.value(), e.detail())))?;
        let nodes: Vec<Node> =
            tree.push_nodes(Record::leaf_hash(v.value())).into_iter().filter(|n| n.level >= STORED_LEVEL).collect();
        index.add(record.index, &nodes, record.entry.trace)?;
    }
    if count > 0 {
        tracing::info!(records = count, "witness log: tree nodes and trace index built");
    }
    Ok(())
}

/// A write transaction durable when `commit` returns, with redb's allocator state saved in it (quick
/// repair), so that opening the file after a crash or power loss loads that state instead of walking the
/// whole file. Every commit of the tables is one of these; appends wait for the journal's flush instead.
pub fn begin(db: &Database) -> Result<WriteTransaction, IfError> {
    let mut txn = db.begin_write().map_err(|e| unavailable("transaction", e))?;
    txn.set_durability(redb::Durability::Immediate).map_err(|e| unavailable("durability", e))?;
    txn.set_quick_repair(true);
    Ok(txn)
}

//! Group commit: one writer thread owns the log; every append waits for a durable commit.
//!
//! Callers send batches of [`Append`]s and await the result. The writer takes the first request, drains
//! every request queued behind it, and commits all of them as one journal frame and one flush
//! ([`Store::append`]), then wakes every waiter with its own indices. A failed commit fails every request
//! in it; nothing of it is kept. A request is answered only after its commit returned, so an
//! acknowledgement built on it never runs ahead of the disk. Every record passes the redaction net
//! ([`crate::redact`]) on its way to the store.
//!
//! After answering, once the active journal segment holds [`super::store::FOLD_AT`] bytes, or once it has
//! committed nothing for [`FOLD_AFTER`], the writer hands the segment to the store's folding thread
//! ([`Store::hand_off`]) and goes on in the other: a burst pays one flush a commit, the tables catch up
//! beside it, and an append never waits for a fold it did not need. Closing folds everything, here
//! ([`Store::fold`]). Without a tokio runtime to time the idle, it folds after every group instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use if_protocol::{ErrorCode, IfError};
use tokio::sync::{Notify, mpsc, oneshot};

use super::reader::{Reader, Snapshot};
use super::store::{Append, CheckpointSigner, Store};

/// Where a request's indices (or the commit error) go.
type Done = oneshot::Sender<Result<Vec<u64>, IfError>>;

/// Work on the store in the writer's thread, in turn with the appends.
type Job = Box<dyn FnOnce(&mut Store) + Send>;

enum Request {
    Append(Vec<Append>, Done),
    Checkpoint(oneshot::Sender<bool>),
    Use(Job),
    Fold,
    Close(oneshot::Sender<()>),
}

/// Counters of the writer, for status and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records in the log.
    pub size: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Transactions that failed.
    pub failures: AtomicU64,
    /// Folds of the journal into the tables ([`Store::fold`]).
    pub folds: AtomicU64,
}

/// The handle used to append; cheap to clone.
#[derive(Debug, Clone)]
pub struct Witness {
    tx: mpsc::Sender<Request>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Append(b, _) => write!(f, "Append({})", b.len()),
            Request::Checkpoint(_) => write!(f, "Checkpoint"),
            Request::Use(_) => write!(f, "Use"),
            Request::Fold => write!(f, "Fold"),
            Request::Close(_) => write!(f, "Close"),
        }
    }
}

fn gone() -> IfError {
    IfError::with(ErrorCode::WitnessUnavailable, "witness writer has stopped")
}

/// Most appends merged into one transaction.
const MAX_GROUP: usize = 4096;

/// How long the writer commits nothing before it folds the journal into the tables.
pub const FOLD_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

impl Witness {
    /// Starts the writer thread; it ends when every handle is dropped, or at [`Witness::close`].
    pub fn spawn(store: Store, signer: Option<CheckpointSigner>, queue: usize) -> Result<Witness, IfError> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let stats = Arc::new(Stats::default());
        stats.size.store(store.size(), Ordering::Relaxed);
        let thread_stats = stats.clone();
        let idle = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let unfolded = Arc::new(Notify::new());
            runtime.spawn(fold_when_idle(tx.downgrade(), unfolded.clone(), stats.clone()));
            unfolded
        });
        if !store.folded()
            && let Some(unfolded) = &idle
        {
            unfolded.notify_one();
        }
        std::thread::Builder::new()
            .name("witness-writer".into())
            .spawn(move || run(store, signer, rx, &thread_stats, idle.as_deref()))
            .map_err(|e| {
                IfError::format(ErrorCode::SystemError, format_args!("cannot start the witness writer: {e}"))
            })?;
        Ok(Witness { tx, stats })
    }

    /// Appends `batch` durably and returns each record's index.
    pub async fn append(&self, batch: Vec<Append>) -> Result<Vec<u64>, IfError> {
        self.submit(batch).await.await
    }

    /// Queues `batch` for the writer and returns at once with the [`Commit`] to await: the caller may
    /// work on while the records go to the disk. Records queued later by anyone commit after these.
    pub async fn submit(&self, batch: Vec<Append>) -> Commit {
        let (done, wait) = oneshot::channel();
        let queued = self.tx.send(Request::Append(batch, done)).await.is_ok();
        Commit { wait: queued.then_some(wait) }
    }

    /// Signs a checkpoint if records were added since the last one, after every append queued before
    /// this call; returns whether one was written.
    pub async fn checkpoint(&self) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Request::Checkpoint(done)).await.is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }

    /// Stops the writer after everything queued before this call and closes the file: when this returns,
    /// every commit is on disk and the file is free for another process (a verifier, the next run).
    /// Appends after it fail as WITNESS_UNAVAILABLE.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Request::Close(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Runs `f` on the store in the writer's thread, after every append queued before this call: reads
    /// that must see a consistent log, and small writes outside the record stream.
    pub async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, IfError> + Send + 'static,
    ) -> Result<T, IfError> {
        let (done, wait) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            let _ = done.send(f(store));
        });
        self.tx.send(Request::Use(job)).await.map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }

    /// Runs `f` on a snapshot of the log, taken after every append queued before this call, on a
    /// blocking thread beside the writer: a long read (anchor proofs, a witness query) never holds up
    /// a commit.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Snapshot) -> Result<T, IfError> + Send + 'static,
    ) -> Result<T, IfError> {
        self.read_on(Store::reader, f).await
    }

    /// Like [`Witness::read`], on the tables as the folds left them ([`Store::folded_reader`]): for a
    /// reader that polls in the background (the uplink each second, the retention), which a view a fold
    /// behind serves as well, and which must not hold the appends up while a fold commits on the writer.
    pub async fn read_folded<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Snapshot) -> Result<T, IfError> + Send + 'static,
    ) -> Result<T, IfError> {
        self.read_on(Store::folded_reader, f).await
    }

    async fn read_on<T: Send + 'static>(
        &self,
        open: fn(&mut Store) -> Result<Reader, IfError>,
        f: impl FnOnce(&Snapshot) -> Result<T, IfError> + Send + 'static,
    ) -> Result<T, IfError> {
        let reader = self.with_store(open).await?;
        tokio::task::spawn_blocking(move || f(&reader.snapshot()?))
            .await
            .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("witness read: {e}")))?
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// A batch on its way to the disk ([`Witness::submit`]): resolves to each record's index once the
/// batch is durable, or to why nothing of it was kept.
#[derive(Debug)]
pub struct Commit {
    wait: Option<oneshot::Receiver<Result<Vec<u64>, IfError>>>,
}

impl std::future::Future for Commit {
    type Output = Result<Vec<u64>, IfError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let Some(wait) = self.wait.as_mut() else { return std::task::Poll::Ready(Err(gone())) };
        std::pin::Pin::new(wait).poll(cx).map(|r| r.unwrap_or_else(|_| Err(gone())))
    }
}

/// Asks the writer to fold once it has committed nothing for [`FOLD_AFTER`] since it said the journal
/// held something; ends with the writer.
async fn fold_when_idle(writer: mpsc::WeakSender<Request>, unfolded: Arc<Notify>, stats: Arc<Stats>) {
    loop {
        unfolded.notified().await;
        loop {
            let seen = stats.commits.load(Ordering::Relaxed);
            tokio::time::sleep(FOLD_AFTER).await;
            if stats.commits.load(Ordering::Relaxed) == seen {
                break;
            }
        }
        let Some(writer) = writer.upgrade() else { return };
        if writer.send(Request::Fold).await.is_err() {
            return;
        }
    }
}

fn run(
    mut store: Store,
    signer: Option<CheckpointSigner>,
    mut rx: mpsc::Receiver<Request>,
    stats: &Stats,
    idle: Option<&Notify>,
) {
    let mut closed = None;
    while closed.is_none()
        && let Some(first) = rx.blocking_recv()
    {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let mut batch = Vec::new();
        let mut waiters = Vec::new();
        let mut checkpoints = Vec::new();
        let mut jobs = Vec::new();
        let mut fold = false;
        for r in group {
            match r {
                Request::Append(items, done) => {
                    waiters.push((items.len(), done));
                    batch.extend(items.into_iter().map(scrubbed));
                }
                Request::Checkpoint(done) => checkpoints.push(done),
                Request::Use(job) => jobs.push(job),
                Request::Fold => fold = true,
                Request::Close(done) => closed = Some(done),
            }
        }
        let appended = !batch.is_empty();
        if appended {
            let result = store.append(batch, signer.as_ref());
            count(stats, &result, store.size());
            answer(waiters, result);
        }
        if let (false, Some(s)) = (checkpoints.is_empty(), signer.as_ref()) {
            let written = store.checkpoint_now(s).unwrap_or_else(|e| {
                tracing::error!(error = %e, "checkpoint could not be written");
                false
            });
            for done in checkpoints {
                let _ = done.send(written);
            }
        }
        for job in jobs {
            job(&mut store);
        }
        if store.folded() {
            continue;
        }
        // The folding thread takes the active segment once it is due, or once the writer is idle (a fold
        // asked for while appends arrived waits for the next idle: they were the burst going on); either
        // way appends go on in the other segment at once.
        let result = if closed.is_some() || idle.is_none() {
            Some(store.fold())
        } else if (fold && !appended) || store.fold_due() {
            Some(store.hand_off())
        } else {
            None
        };
        match result {
            Some(Ok(())) => _ = stats.folds.fetch_add(1, Ordering::Relaxed),
            // The next append tries again first, and is refused while it fails.
            Some(Err(e)) => tracing::error!(error = %e, "the witness journal could not be folded into the log"),
            None => {}
        }
        if let Some(unfolded) = idle.filter(|_| !store.folded()) {
            unfolded.notify_one();
        }
    }
    if let Some(unfolded) = idle {
        // Wakes the idle timer, which then finds the writer gone.
        unfolded.notify_one();
    }
    drop(store);
    if let Some(done) = closed {
        let _ = done.send(());
    }
}

/// The last net, before anything of the agent's reaches the disk: no known secret value is written.
fn scrubbed(mut item: Append) -> Append {
    for text in [&mut item.entry.detail, &mut item.entry.why] {
        if let std::borrow::Cow::Owned(clean) = crate::redact::scrub(text) {
            *text = clean;
        }
    }
    item
}

fn count(stats: &Stats, result: &Result<Vec<u64>, IfError>, size: u64) {
    match result {
        Ok(_) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.size.store(size, Ordering::Relaxed);
        }
        Err(e) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "witness commit failed; the batch is refused");
        }
    }
}

fn answer(waiters: Vec<(usize, Done)>, result: Result<Vec<u64>, IfError>) {
    match result {
        Ok(indices) => {
            let mut rest = indices.as_slice();
            for (n, done) in waiters {
                let (mine, tail) = rest.split_at(n.min(rest.len()));
                rest = tail;
                let _ = done.send(Ok(mine.to_vec()));
            }
        }
        Err(e) => {
            for (_, done) in waiters {
                let _ = done.send(Err(e.clone()));
            }
        }
    }
}

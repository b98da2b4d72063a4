//! The folding thread: commits one journal segment's records into the tables while the writer goes on
//! appending into the other segment.
//!
//! A fold of a segment's worth of records is one transaction of thousands of rows (13-34 ms on the
//! machine in docs/BENCHMARKS.md); on the writer's own thread every append queued behind it would wait
//! that long. The store hands this thread a [`Batch`] with the head it leads to and a handle on the file,
//! and learns the result from the receiver it gets back; a batch whose commit failed comes back with the
//! error, so that the store can fold it again. The thread drops its handle on the file before it
//! answers: a store that must reopen the file after an error can do so at once.

use std::sync::Arc;
use std::sync::mpsc;

use if_protocol::{ErrorCode, IfError};
use redb::Database;

use super::schema::HeadState;
use super::tables::{Batch, commit};

/// A fold that failed: why, and the batch with its head, to fold again.
pub type Failed = Box<(IfError, Batch, HeadState)>;
/// What a fold came to.
pub type Folded = Result<(), Failed>;

struct Job {
    db: Arc<Database>,
    batch: Batch,
    head: HeadState,
    done: mpsc::Sender<Folded>,
}

/// The handle on the folding thread; the thread ends when it is dropped.
#[derive(Debug)]
pub struct Folder {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Job({} records)", self.batch.items.len())
    }
}

impl Folder {
    /// Starts the thread.
    pub fn spawn() -> Result<Folder, IfError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("witness-fold".into())
            .spawn(move || {
                for Job { db, batch, head, done } in rx {
                    let result = commit(&db, &batch, &head);
                    drop(db);
                    let _ = done.send(result.map_err(|e| Box::new((e, batch, head))));
                }
            })
            .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("cannot start the fold thread: {e}")))?;
        Ok(Folder { jobs })
    }

    /// Starts folding `batch`, which leads to `head`, into `db`; the result comes on the receiver. If the
    /// thread is gone, the batch comes back at once.
    pub fn fold(&self, db: Arc<Database>, batch: Batch, head: HeadState) -> Result<mpsc::Receiver<Folded>, Failed> {
        let (done, answer) = mpsc::channel();
        match self.jobs.send(Job { db, batch, head, done }) {
            Ok(()) => Ok(answer),
            Err(mpsc::SendError(job)) => Err(Box::new((gone(), job.batch, job.head))),
        }
    }
}

/// The error of a fold whose thread stopped.
pub fn gone() -> IfError {
    IfError::with(ErrorCode::WitnessUnavailable, "the witness fold thread has stopped")
}

//! The connection loop every device driver shares: connect, serve until the link fails, wait out the
//! next delay of the backoff schedule, and connect again, for as long as the driver exists.
//!
//! A driver says only how to connect and how to serve one connection ([`Device`]); the supervisor owns
//! the attempts, the schedule and the rule that nothing waits on a dead link: while the device is away,
//! every request that arrives is refused at once with why the last attempt failed.

use std::future::Future;

use if_protocol::IfError;
use tokio::sync::mpsc;

use crate::backoff::Backoff;

/// A request to a driver's connection task, which can be refused while the device is away.
pub trait Refusable {
    /// Answers the request with `why`.
    fn refuse(self, why: IfError);
}

/// One device connection, as the supervisor sees it.
pub trait Device: Send + Sync {
    /// An open connection.
    type Conn: Send;
    /// What the driver's handle sends its connection task.
    type Request: Refusable + Send;

    /// What the logs call it (`vMix on 10.0.0.5:8099`).
    fn describe(&self) -> String;

    /// Opens a connection and does whatever the device needs before it takes requests.
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, IfError>> + Send;

    /// Serves requests on `conn` until it fails; returns why.
    fn serve(
        &self,
        conn: Self::Conn,
        requests: &mut mpsc::Receiver<Self::Request>,
    ) -> impl Future<Output = IfError> + Send;

    /// Called once a connection is up, before it serves.
    fn up(&self) {}

    /// Called once a connection has failed.
    fn down(&self) {}
}

/// Keeps `device` connected until the sending side of `requests` is gone.
pub async fn supervise<D: Device>(device: D, backoff: Backoff, mut requests: mpsc::Receiver<D::Request>) {
    let mut attempt = 0usize;
    loop {
        let why = match device.connect().await {
            Ok(conn) => {
                attempt = 0;
                device.up();
                tracing::info!("{} connected", device.describe());
                let why = device.serve(conn, &mut requests).await;
                device.down();
                tracing::warn!("{} lost: {}", device.describe(), why.detail());
                why
            }
            Err(e) => {
                tracing::warn!("{}: {}", device.describe(), e.detail());
                e
            }
        };
        if !wait_out(&mut requests, &backoff, attempt, &why).await {
            return;
        }
        attempt = attempt.saturating_add(1);
    }
}

/// Waits out attempt `attempt` of `backoff`, refusing every request that arrives meanwhile with `why`.
/// Returns false when the driver is gone.
async fn wait_out<R: Refusable>(
    requests: &mut mpsc::Receiver<R>,
    backoff: &Backoff,
    attempt: usize,
    why: &IfError,
) -> bool {
    let until = tokio::time::Instant::now() + backoff.delay(attempt);
    loop {
        tokio::select! {
            r = requests.recv() => match r {
                Some(r) => r.refuse(why.clone()),
                None => return false,
            },
            () = tokio::time::sleep_until(until) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use if_protocol::ErrorCode;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::sync::oneshot;

    struct Ask(oneshot::Sender<IfError>);
    impl Refusable for Ask {
        fn refuse(self, why: IfError) {
            let _ = self.0.send(why);
        }
    }

    /// A device that never answers the first `fail` connects and then serves until told to drop.
    struct Flaky {
        fail: usize,
        tries: Arc<AtomicUsize>,
        ups: Arc<AtomicUsize>,
    }

    impl Device for Flaky {
        type Conn = ();
        type Request = Ask;
        fn describe(&self) -> String {
            "flaky".into()
        }
        async fn connect(&self) -> Result<(), IfError> {
            let n = self.tries.fetch_add(1, Ordering::SeqCst);
            if n < self.fail {
                return Err(IfError::with(ErrorCode::DeviceUnreachable, "refused"));
            }
            Ok(())
        }
        async fn serve(&self, (): (), requests: &mut mpsc::Receiver<Ask>) -> IfError {
            let _ = requests.recv().await;
            IfError::with(ErrorCode::DeviceUnreachable, "dropped")
        }
        fn up(&self) {
            self.ups.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_while_away_are_refused_at_once_and_the_schedule_is_followed() {
        let (tries, ups) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let device = Flaky { fail: 2, tries: tries.clone(), ups: ups.clone() };
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(supervise(device, Backoff::from_secs(&[1, 10]), rx));
        tokio::task::yield_now().await;
        assert_eq!(tries.load(Ordering::SeqCst), 1);
        let (ask, answer) = oneshot::channel();
        tx.send(Ask(ask)).await.expect("send");
        let why = answer.await.expect("refused while away");
        assert_eq!((why.code(), why.detail()), (ErrorCode::DeviceUnreachable, "refused"));
        tokio::time::sleep(Duration::from_millis(1250)).await;
        assert_eq!(tries.load(Ordering::SeqCst), 2, "one second (jittered) later");
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(tries.load(Ordering::SeqCst), 2, "the next wait is ten seconds");
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!((tries.load(Ordering::SeqCst), ups.load(Ordering::SeqCst)), (3, 1), "connected");
        drop(tx);
        tokio::time::timeout(Duration::from_secs(60), task).await.expect("ends with its driver").expect("join");
    }
}

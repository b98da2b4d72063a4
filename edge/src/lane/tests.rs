//! The lane with an in-process driver whose answers the test scripts, on tokio's paused clock, so rates
//! and waits are exact and no test sleeps for real.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::drivers::HealthFuture;
use crate::policy::authorize::tests::body;

/// What the fake device does with each command, and what it saw.
#[derive(Debug, Default)]
struct Fake {
    /// (action, virtual ms since start) for each apply.
    seen: Mutex<Vec<(String, u64)>>,
    /// The error every apply answers with, if any; `hang` never answers.
    fail: Mutex<Option<ErrorCode>>,
    /// Applies that fail with DEVICE_UNREACHABLE before the device "comes back".
    unreachable_first: AtomicUsize,
    hang: std::sync::atomic::AtomicBool,
    healthy: std::sync::atomic::AtomicBool,
    health_calls: AtomicUsize,
    /// Commands it executes at once (0 reads as 1), and how long each takes (ms, 0 reads as 1).
    room: AtomicUsize,
    takes_ms: AtomicUsize,
    start: Mutex<Option<Instant>>,
}

impl Fake {
    fn ms(&self) -> u64 {
        let start = *self.start.lock().unwrap_or_else(PoisonError::into_inner);
        start.map_or(0, |s| u64::try_from(s.elapsed().as_millis()).unwrap_or(0))
    }

    fn seen(&self) -> Vec<(String, u64)> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Driver for Fake {
    fn plan(&self, body: &EnvelopeBody) -> Plan {
        Plan { sends: vec![body.action.to_string()], problems: Vec::new() }
    }

    fn apply<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(async move {
            self.seen.lock().unwrap_or_else(PoisonError::into_inner).push((body.action.to_string(), self.ms()));
            if self.unreachable_first.load(Ordering::SeqCst) > 0 {
                self.unreachable_first.fetch_sub(1, Ordering::SeqCst);
                return Err(IfError::new(ErrorCode::DeviceUnreachable));
            }
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let takes = self.takes_ms.load(Ordering::SeqCst).max(1);
            tokio::time::sleep(Duration::from_millis(u64::try_from(takes).unwrap_or(1))).await;
            match *self.fail.lock().unwrap_or_else(PoisonError::into_inner) {
                Some(code) => Err(IfError::new(code)),
                None => Ok(serde_json::json!({ "done": body.action.as_str() })),
            }
        })
    }

    fn in_flight(&self) -> usize {
        self.room.load(Ordering::SeqCst)
    }

    fn health(&self) -> HealthFuture<'_> {
        Box::pin(async move {
            self.health_calls.fetch_add(1, Ordering::SeqCst);
            if self.healthy.load(Ordering::SeqCst) { Ok(()) } else { Err(IfError::new(ErrorCode::DeviceUnreachable)) }
        })
    }
}

fn spec(rps: f32, burst: u32, depth: usize) -> LaneSpec {
    LaneSpec {
        id: "if://capability/cam".into(),
        actions: ["move", "stop"].into_iter().map(String::from).collect(),
        emergency: ["stop"].into_iter().map(String::from).collect(),
        ends_queue: ["stop"].into_iter().map(String::from).collect(),
        rps,
        burst,
        backoff: crate::backoff::Backoff::from_secs(&[1, 2, 5]),
        breaker_failures: 3,
        queue_depth: depth,
        timeout: Duration::from_millis(500),
    }
}

fn lane(s: LaneSpec) -> (Arc<Lane>, Arc<Fake>, mpsc::UnboundedReceiver<BreakerEvent>) {
    let fake = Arc::new(Fake::default());
    *fake.start.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(Lane::start(s, fake.clone() as Arc<dyn Driver>, tx)), fake, rx)
}

fn send(lane: &Arc<Lane>, action: &str) -> tokio::task::JoinHandle<Outcome> {
    let lane = lane.clone();
    let b = body("if://capability/cam", action);
    tokio::spawn(async move { lane.execute(&b).await })
}

fn code(o: &Outcome) -> Option<ErrorCode> {
    o.as_ref().err().map(IfError::code)
}

#[tokio::test(start_paused = true)]
async fn the_device_sees_the_burst_then_the_rate_and_the_rest_is_queue_full() {
    let (lane, fake, _events) = lane(spec(10.0, 5, 20));
    let jobs: Vec<_> = (0..30).map(|_| send(&lane, "move")).collect();
    let mut full = 0;
    for j in jobs {
        if code(&j.await.expect("task")) == Some(ErrorCode::QueueFull) {
            full += 1;
        }
    }
    let seen = fake.seen();
    assert_eq!(full, 30 - seen.len(), "every command either reached the device or was refused QUEUE_FULL");
    assert!(full >= 5, "beyond the queue depth commands are refused at once: {full}");
    let at_zero = seen.iter().filter(|(_, t)| *t < 5).count();
    assert_eq!(at_zero, 5, "the burst at once: {seen:?}");
    for w in seen[5..].windows(2) {
        assert!(w[1].1 - w[0].1 >= 99, "then at most 10 a second: {seen:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn failures_open_the_breaker_which_fails_fast_and_probes_once_per_window() {
    let (lane, fake, mut events) = lane(spec(1000.0, 100, 20));
    *fake.fail.lock().unwrap_or_else(PoisonError::into_inner) = Some(ErrorCode::DeviceUnreachable);
    // One command, tried three times (two retries on the schedule): the third failure in a row opens it.
    assert_eq!(code(&send(&lane, "move").await.expect("task")), Some(ErrorCode::DeviceUnreachable));
    let opened = events.recv().await.expect("an event");
    assert_eq!((opened.change.from, opened.change.to), (State::Closed, State::Open));
    assert_eq!(code(&send(&lane, "move").await.expect("task")), Some(ErrorCode::CircuitBreakerOpen));
    assert_eq!(fake.seen().len(), 3, "fail fast: the device saw nothing more");

    // The first probe fails: open again, longer.
    assert_eq!(events.recv().await.map(|e| e.change.to), Some(State::HalfOpen));
    let reopened = events.recv().await.expect("probe result");
    assert_eq!(reopened.change.to, State::Open);
    assert!(reopened.change.wait_ms.unwrap_or(0) >= 1600, "the second wait is longer: {reopened:?}");
    assert_eq!(fake.health_calls.load(Ordering::SeqCst), 1, "exactly one probe per half-open window");

    // The device is back: the next probe closes it and commands flow.
    fake.healthy.store(true, Ordering::SeqCst);
    *fake.fail.lock().unwrap_or_else(PoisonError::into_inner) = None;
    assert_eq!(events.recv().await.map(|e| e.change.to), Some(State::HalfOpen));
    assert_eq!(events.recv().await.map(|e| e.change.to), Some(State::Closed));
    assert_eq!(fake.health_calls.load(Ordering::SeqCst), 2);
    assert!(send(&lane, "move").await.expect("task").is_ok());
    assert_eq!(lane.breaker_state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_device_rejection_is_an_answer_and_does_not_open_the_breaker() {
    let (lane, fake, _events) = lane(spec(1000.0, 100, 20));
    *fake.fail.lock().unwrap_or_else(PoisonError::into_inner) = Some(ErrorCode::DeviceRejected);
    for _ in 0..10 {
        assert_eq!(code(&send(&lane, "move").await.expect("task")), Some(ErrorCode::DeviceRejected));
    }
    assert_eq!(lane.breaker_state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_device_timeout_and_the_command_is_never_sent_again() {
    let (lane, fake, _events) = lane(spec(1000.0, 100, 20));
    fake.hang.store(true, Ordering::SeqCst);
    let out = send(&lane, "move").await.expect("task");
    assert_eq!(code(&out), Some(ErrorCode::DeviceTimeout));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.seen().len(), 1, "sent once, never again");
}

#[tokio::test(start_paused = true)]
async fn a_stop_overtakes_and_ends_the_queued_moves_each_answered_superseded() {
    let (lane, fake, _events) = lane(spec(1.0, 1, 30));
    let moves: Vec<_> = (0..20).map(|_| send(&lane, "move")).collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let at = Instant::now();
    assert!(send(&lane, "stop").await.expect("task").is_ok());
    let mut ended = 0;
    for m in moves {
        let out = m.await.expect("task");
        match code(&out) {
            None => {}
            Some(ErrorCode::Superseded) => {
                ended += 1;
                let text = out.as_ref().err().map(ToString::to_string).unwrap_or_default();
                assert!(text.contains("`stop`") && text.contains("never sent"), "{text}");
            }
            other => panic!("a queued move ends as OK or SUPERSEDED, not {other:?}"),
        }
    }
    assert!(at.elapsed() < Duration::from_millis(20), "answered at once, the one waiting for a token too");
    assert_eq!(ended, 19, "every move not yet sent");
    let seen: Vec<String> = fake.seen().into_iter().map(|(a, _)| a).collect();
    assert_eq!(seen, ["move", "stop"], "the move in progress, then the stop, and no move after it");
    assert!(seen.iter().position(|a| a == "stop").is_some_and(|i| fake.seen()[i].1 < 20), "within a frame");

    // What is sent after the stop runs as usual, at the lane's rate.
    assert!(send(&lane, "move").await.expect("task").is_ok());
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_emergency_that_keeps_the_queue_only_overtakes_it() {
    let mut s = spec(1.0, 1, 30);
    s.ends_queue.clear();
    let (lane, fake, _events) = lane(s);
    let moves: Vec<_> = (0..5).map(|_| send(&lane, "move")).collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(send(&lane, "stop").await.expect("task").is_ok());
    for m in moves {
        assert!(m.await.expect("task").is_ok(), "every move still runs");
    }
    let seen: Vec<String> = fake.seen().into_iter().map(|(a, _)| a).collect();
    assert_eq!(seen.iter().position(|a| a == "stop"), Some(1), "the stop went second: {seen:?}");
    assert_eq!(seen.len(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_stop_ends_a_command_waiting_to_be_tried_again() {
    let (lane, fake, _events) = lane(spec(1000.0, 100, 20));
    fake.unreachable_first.store(1, Ordering::SeqCst);
    let retrying = send(&lane, "move");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(send(&lane, "stop").await.expect("task").is_ok());
    let at = Instant::now();
    assert_eq!(code(&retrying.await.expect("task")), Some(ErrorCode::Superseded), "not tried again after the stop");
    assert!(at.elapsed() < Duration::from_millis(20), "at once, not after the retry wait");
    let seen: Vec<String> = fake.seen().into_iter().map(|(a, _)| a).collect();
    assert_eq!(seen, ["move", "stop"]);
}

#[tokio::test(start_paused = true)]
async fn a_command_that_reached_nothing_is_tried_again_on_the_schedule() {
    let (lane, fake, _events) = lane(spec(1000.0, 100, 20));
    fake.unreachable_first.store(2, Ordering::SeqCst);
    assert!(send(&lane, "move").await.expect("task").is_ok(), "the third try reached the device");
    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen[1].1 - seen[0].1 >= 800 && seen[2].1 - seen[1].1 >= 1600, "waits of 1 s and 2 s, jittered: {seen:?}");

    fake.unreachable_first.store(5, Ordering::SeqCst);
    assert_eq!(
        code(&send(&lane, "move").await.expect("task")),
        Some(ErrorCode::DeviceUnreachable),
        "at most two retries"
    );
    let stop = send(&lane, "stop").await.expect("task");
    assert!(stop.is_err(), "an emergency is tried once");
}

#[tokio::test(start_paused = true)]
async fn a_device_with_two_sockets_is_given_a_second_command_while_the_first_executes_in_order() {
    let (two, fake, _events) = lane(spec(1000.0, 100, 20));
    fake.room.store(2, Ordering::SeqCst);
    fake.takes_ms.store(300, Ordering::SeqCst);
    let jobs: Vec<_> = (0..5).map(|_| send(&two, "move")).collect();
    for j in jobs {
        assert!(j.await.expect("task").is_ok());
    }
    let at: Vec<u64> = fake.seen().into_iter().map(|(_, ms)| ms).collect();
    assert_eq!(at.len(), 5);
    assert!(at[1] < 10, "the second goes while the first executes: {at:?}");
    assert!(at[2] >= 300 && at[3] >= 300 && at[4] >= 600, "never more than two at once: {at:?}");

    // With one socket (the default), each waits for the one before it.
    let (one, fake, _events) = lane(spec(1000.0, 100, 20));
    fake.takes_ms.store(300, Ordering::SeqCst);
    let jobs: Vec<_> = (0..2).map(|_| send(&one, "move")).collect();
    for j in jobs {
        assert!(j.await.expect("task").is_ok());
    }
    assert!(fake.seen()[1].1 >= 300, "{:?}", fake.seen());
}

#[tokio::test(start_paused = true)]
async fn a_stop_ends_what_waits_for_a_socket_and_not_what_executes() {
    let (lane, fake, _events) = lane(spec(1000.0, 100, 20));
    fake.room.store(2, Ordering::SeqCst);
    fake.takes_ms.store(300, Ordering::SeqCst);
    let moves: Vec<_> = (0..4).map(|_| send(&lane, "move")).collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(send(&lane, "stop").await.expect("task").is_ok());
    let codes: Vec<Option<ErrorCode>> = {
        let mut v = Vec::new();
        for m in moves {
            v.push(code(&m.await.expect("task")));
        }
        v
    };
    assert_eq!(codes, [None, None, Some(ErrorCode::Superseded), Some(ErrorCode::Superseded)]);
    let seen: Vec<String> = fake.seen().into_iter().map(|(a, _)| a).collect();
    assert_eq!(seen, ["move", "move", "stop"]);
}

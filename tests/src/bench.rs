//! Figures for the bench binaries: paced publish -> answer latency and percentiles; and logs of any size,
//! made with the store's API.

use std::time::{Duration, Instant};

use crate::probe::Probe;

/// The `p` quantile of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Sends the frames paced at 1k msgs/s and returns the sorted publish -> answer times.
pub fn paced_latency(probe: &Probe, frames: Vec<Vec<u8>>) -> Vec<Duration> {
    paced(probe, frames).0
}

/// Sends the frames paced at 1k msgs/s; returns the sorted publish -> answer times, and when each frame
/// was published and answered (microseconds since the Unix epoch, in frame order; 0 for no answer), to
/// set against a device's record or the agent's stage times.
pub fn paced(probe: &Probe, frames: Vec<Vec<u8>>) -> (Vec<Duration>, Vec<u128>, Vec<u128>) {
    let n = frames.len();
    let mut published = Vec::with_capacity(n);
    let mut answered = vec![0; n];
    let mut sent = Vec::with_capacity(n);
    let mut lat = Vec::with_capacity(n);
    let mut record = |m: crate::probe::Msg, sent: &[Instant], lat: &mut Vec<Duration>| {
        if let Some(i) = m.correlation.as_deref().and_then(|c| c.try_into().ok()).map(u64::from_be_bytes) {
            lat.push(m_time(sent, i as usize));
            if let Some(at) = answered.get_mut(i as usize) {
                *at = unix_us();
            }
        }
    };
    let start = Instant::now();
    for (i, f) in frames.into_iter().enumerate() {
        let due = start + Duration::from_micros(1000 * i as u64);
        // Wait for the due time by blocking on the reply channel, not by spinning: a spinning
        // load generator would take one of the machine's cores from the broker and the agent.
        loop {
            let left = due.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Some(m) = probe.next(left) {
                record(m, &sent, &mut lat);
            }
        }
        sent.push(Instant::now());
        published.push(unix_us());
        probe.request(f, &(i as u64).to_be_bytes());
    }
    while lat.len() < n {
        let Some(m) = probe.next(Duration::from_secs(10)) else { break };
        record(m, &sent, &mut lat);
    }
    lat.sort();
    (lat, published, answered)
}

/// Now, in microseconds since the Unix epoch.
pub fn unix_us() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros())
}

/// Prints `label (n msgs): p50, p99, max`.
pub fn print_latency(label: &str, lat: &[Duration]) {
    if lat.is_empty() {
        println!("{label}: no answers");
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label} ({} msgs): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        ms(percentile(lat, 0.5)),
        ms(percentile(lat, 0.99)),
        ms(lat[lat.len() - 1])
    );
}

/// Time from the send of message `i` to now.
fn m_time(sent: &[Instant], i: usize) -> Duration {
    sent.get(i).map_or(Duration::ZERO, Instant::elapsed)
}

/// Appends synthetic EXECUTED records to `store` until it holds `n`, in batches of 4096, every record
/// with a trace shared by two (RECEIVED and EXECUTED of one command, the worst case for the trace index),
/// signing checkpoints with `signer` as they fall due.
pub fn fill_log(
    store: &mut if_edge::witness::store::Store,
    n: u64,
    signer: &if_edge::witness::store::CheckpointSigner,
) {
    fill_log_sized(store, n, signer, 0);
}

/// [`fill_log`] with `detail` bytes of device answer in every record (an EXECUTED record keeps up to 512).
pub fn fill_log_sized(
    store: &mut if_edge::witness::store::Store,
    n: u64,
    signer: &if_edge::witness::store::CheckpointSigner,
    detail: usize,
) {
    use if_edge::witness::record::{Entry, Kind};
    use if_edge::witness::store::Append;
    let entry = Entry {
        sender: "desk".into(),
        capability: "if://capability/vmix.switcher".into(),
        action: "cut".into(),
        why: "bench".into(),
        count: 1,
        detail: "x".repeat(detail),
        ..Entry::default()
    };
    let mut at = store.size();
    while at < n {
        let k = (n - at).min(4096);
        let batch: Vec<Append> = (at..at + k)
            .map(|i| {
                let trace = uuid::Uuid::from_u128(0x6f1c_2a4e_0000_0000_0000_0000_0000_0000 | u128::from(i / 2));
                Append::record(Kind::Executed, Entry { trace: Some(trace), ..entry.clone() })
            })
            .collect();
        store.append(batch, Some(signer)).expect("append");
        at += k;
    }
}

/// `n` records in `agent`'s log before it first starts, with a checkpoint every 1000 and one at the end,
/// signed by its own key for its origin as the default config has them.
pub fn fill_agent_log(agent: &crate::agent::Agent, n: u64) {
    fill_agent_log_sized(agent, n, 0);
}

/// [`fill_agent_log`] with `detail` bytes of device answer in every record.
pub fn fill_agent_log_sized(agent: &crate::agent::Agent, n: u64, detail: usize) {
    use if_edge::witness::store::{CheckpointSigner, Store};
    let loaded = if_edge::config::Config::load(&agent.config()).expect("config");
    let key = if_edge::keyfile::read_secret(&agent.home().join(&loaded.config.agent.key)).expect("agent key");
    let signer = CheckpointSigner { key, origin: loaded.config.origin(), every: 1000 };
    std::fs::create_dir_all(agent.db().parent().expect("data dir")).expect("data dir");
    let mut store = Store::open(&agent.db(), 4 << 20).expect("open");
    fill_log_sized(&mut store, n, &signer, detail);
    store.checkpoint_now(&signer).expect("checkpoint");
}

//! Figures for the bench binaries: paced publish -> answer latency and percentiles, the floors they are
//! read against (an MQTT echo, the disk's flush) and the goals set on them; and logs of any size, made
//! with the store's API.

use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

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

/// An MQTT echo in place of the agent: answers every command on its response topic, QoS 1, with no
/// verification and no witness. It is the floor the agent's own figures are read against.
pub fn spawn_echo(port: u16, topics: &if_protocol::topics::Topics) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let mut o = MqttOptions::new("echo", "127.0.0.1", port);
    o.set_max_packet_size(Some(256 * 1024)).set_outgoing_inflight_upper_limit(1000);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    let cmd = topics.cmd.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let (client, mut events) = AsyncClient::new(o, 10_000);
        client.subscribe(cmd, QoS::AtLeastOnce).await.expect("subscribe");
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let props = p.properties.unwrap_or_default();
                    let Some(topic) = props.response_topic else { continue };
                    let reply =
                        PublishProperties { correlation_data: props.correlation_data, ..PublishProperties::default() };
                    let _ =
                        client.try_publish_with_properties(topic, QoS::AtLeastOnce, false, p.payload.clone(), reply);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).expect("echo subscribed");
    rt
}

/// The disk's flush latency: a 4 KiB write and `fdatasync`, 500 times, sorted; the floor under each
/// durable commit.
pub fn flush_latency() -> Vec<Duration> {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut f = std::fs::File::create(dir.path().join("flush")).expect("file");
    let page = [0u8; 4096];
    let mut lat: Vec<Duration> = (0..500)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&page).expect("write");
            f.sync_data().expect("fdatasync");
            t.elapsed()
        })
        .collect();
    lat.sort();
    lat
}

/// Prints a latency goal of the form `1.5 x (floor)` beside what was measured, with their ratio.
pub fn print_goal(label: &str, measured: Duration, floor_text: &str, floor: Duration) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let goal = floor.mul_f64(1.5);
    println!(
        "goal: {label} p99 {:.2} ms <= 1.5 x ({floor_text}) = {:.2} ms: {:.2}x the goal, {}",
        ms(measured),
        ms(goal),
        measured.as_secs_f64() / goal.as_secs_f64().max(1e-9),
        if measured <= goal { "met" } else { "not met" }
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

//! The agent's path measured end to end on one machine, in one run on the same broker:
//! raw Mosquitto QoS 1 throughput against throughput through the agent (verify + durable witness),
//! publish -> reply latency at a paced 1k msgs/s, group commit against one commit per record, and the
//! agent's resident memory idle and loaded, with the environment the packaged systemd unit gives it.
//! Then the paced run again with the agent recording each command's stage times (`IF_EDGE_STAGES`,
//! [`if_edge::stages`]), broken down stage by stage.
//!
//! `cargo build --release --workspace --bins && cargo bench -p if-tests --bench agent_path`
//! (`IF_BENCH_AGENT=path/to/if-edge` runs another build of the agent in its place.)

use std::time::{Duration, Instant};

use if_edge::witness::record::{Entry, Kind};
use if_edge::witness::store::{Append, Store};
use if_edge::witness::writer::Witness;
use if_tests::agent::Agent;
use if_tests::bench::{flush_latency, paced_latency, percentile, print_goal, print_latency, spawn_echo};
use if_tests::broker::Broker;
use if_tests::probe::Probe;
use if_tests::talent::Talent;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

const N: usize = 5000;

/// Publisher -> Mosquitto -> subscriber, QoS 1, `n` messages of `size` bytes; messages per second.
fn raw_mosquitto(port: u16, n: usize, size: usize) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    rt.block_on(async move {
        let opts = |id: &str| {
            let mut o = MqttOptions::new(id, "127.0.0.1", port);
            o.set_max_packet_size(Some(256 * 1024)).set_outgoing_inflight_upper_limit(1000);
            let mut net = rumqttc::NetworkOptions::new();
            net.set_tcp_nodelay(true);
            o.set_network_options(net);
            o
        };
        let (sub, mut sub_events) = AsyncClient::new(opts("raw-sub"), 10);
        sub.subscribe("bench/raw", QoS::AtLeastOnce).await.expect("subscribe");
        loop {
            if let Ok(Event::Incoming(Packet::SubAck(_))) = sub_events.poll().await {
                break;
            }
        }
        let (publ, mut pub_events) = AsyncClient::new(opts("raw-pub"), n + 10);
        tokio::spawn(async move { while pub_events.poll().await.is_ok() {} });
        let payload = vec![7u8; size];
        let start = Instant::now();
        for _ in 0..n {
            publ.publish("bench/raw", QoS::AtLeastOnce, false, payload.clone()).await.expect("publish");
        }
        let mut got = 0;
        while got < n {
            if let Ok(Event::Incoming(Packet::Publish(_))) = sub_events.poll().await {
                got += 1;
            }
        }
        n as f64 / start.elapsed().as_secs_f64()
    })
}

fn group_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entry = |i: u64| Entry { wall_ms: i, sender: "desk".into(), seq: Some(i), count: 1, ..Entry::default() };
    let mut store = Store::open(&dir.path().join("single.redb"), 16 << 20).expect("open");
    let n = 500u64;
    let start = Instant::now();
    for i in 0..n {
        store.append(vec![Append::record(Kind::Received, entry(i))], None).expect("append");
    }
    let single = n as f64 / start.elapsed().as_secs_f64();
    drop(store);

    let store = Store::open(&dir.path().join("group.redb"), 16 << 20).expect("open");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    // In the runtime, as in the agent: the writer folds its journal when it goes idle.
    let witness = {
        let _in_runtime = rt.enter();
        Witness::spawn(store, None, 8192).expect("writer")
    };
    let total = 20_000u64;
    let producers = 256u64;
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for p in 0..producers {
            let w = witness.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..total / producers {
                    w.append(vec![Append::record(Kind::Received, entry(p * 1_000_000 + i))]).await.expect("append");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    });
    let grouped = total as f64 / start.elapsed().as_secs_f64();
    let commits = witness.stats().commits.load(std::sync::atomic::Ordering::Relaxed);

    // One append every 500 µs (a RECEIVED and an outcome per command at 1k commands/s), each timed.
    let lat = rt.block_on(async {
        let mut tasks = Vec::new();
        let begin = tokio::time::Instant::now();
        for i in 0..2000u64 {
            tokio::time::sleep_until(begin + Duration::from_micros(500 * i)).await;
            let w = witness.clone();
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                w.append(vec![Append::record(Kind::Received, entry(10_000_000 + i))]).await.expect("append");
                t.elapsed()
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.push(t.await.expect("task"));
        }
        lat
    });
    let mut lat = lat;
    lat.sort();
    println!("witness appends, one commit per record:   {single:>9.0} appends/s");
    println!(
        "witness appends, group commit ({producers} waiters): {grouped:>9.0} appends/s ({commits} commits, {:.1} records/commit)",
        total as f64 / commits as f64
    );
    println!("group commit / single:                     {:>9.1}x", grouped / single);
    print_latency("witness append at 2k appends/s, each awaited", &lat);
}

/// Sends every frame at once (with the probe's response topic) and waits for every answer; msgs/s.
fn throughput(probe: &Probe, frames: Vec<Vec<u8>>) -> f64 {
    let n = frames.len();
    let start = Instant::now();
    for (i, f) in frames.into_iter().enumerate() {
        probe.request(f, &(i as u64).to_be_bytes());
    }
    let got = probe.until_replies(n, Duration::from_secs(120)).len();
    assert_eq!(got, n, "every frame answered");
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("agent_path: bench");
        return;
    }
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    // As the packaged unit runs it (its allocator settings).
    agent.env.extend(Agent::service_environment());
    agent.start();
    let pid = agent.pid().expect("pid");
    std::thread::sleep(Duration::from_secs(1));
    let idle = if_tests::rss_kib(pid).expect("VmRSS");
    let paced = 2000usize;
    let sign = |n: usize| -> Vec<Vec<u8>> { (0..n).map(|_| desk.sign(&desk.next_ping())).collect() };

    let frame_len = sign(1)[0].len();
    let raw = raw_mosquitto(broker.port, N, frame_len);

    let echo_probe = Probe::connect(&broker, &agent.site, "echo");
    let echo = spawn_echo(broker.port, &echo_probe.topics);
    let through_echo = throughput(&echo_probe, sign(N));
    let echo_lat = paced_latency(&echo_probe, sign(paced));
    drop(echo);

    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    let frames = sign(N);
    let cpu = cpu_seconds(pid);
    let through_agent = throughput(&probe, frames);
    let cpu_per_command = (cpu_seconds(pid) - cpu) / N as f64;
    let loaded = if_tests::rss_kib(pid).expect("VmRSS");
    let written = written_bytes(pid);
    let lat = paced_latency(&probe, sign(paced));
    let per_command = written_bytes(pid).saturating_sub(written) as f64 / paced as f64;

    println!("machine: {} cpus", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("raw Mosquitto QoS 1 ({N} x {frame_len} B):   {raw:>9.0} msgs/s");
    println!("MQTT echo, no verification or witness:     {through_echo:>9.0} msgs/s");
    println!("through the agent (verify + witness):      {through_agent:>9.0} msgs/s");
    println!("ratio agent / raw:                         {:>9.2}", through_agent / raw);
    println!("ratio agent / echo:                        {:>9.2}", through_agent / through_echo);
    println!("agent CPU per command in the flood:        {:>9.1} us", cpu_per_command * 1e6);
    print_latency("echo latency at 1k msgs/s", &echo_lat);
    print_latency("agent latency at 1k msgs/s", &lat);
    println!("if-edge RSS: idle {:.1} MiB, after the load {:.1} MiB", idle as f64 / 1024.0, loaded as f64 / 1024.0);
    println!("bytes the agent wrote (files and sockets) per command at 1k msgs/s: {per_command:.0}");
    agent.stop();
    let flush = flush_latency();
    print_latency("4 KiB write + fdatasync, same disk", &flush);
    let (echo_p99, flush_p99) = (percentile(&echo_lat, 0.99), percentile(&flush, 0.99));
    print_goal(
        "agent latency at 1k msgs/s",
        percentile(&lat, 0.99),
        "echo p99 + 2 x fdatasync p99",
        echo_p99 + flush_p99 * 2,
    );
    println!(
        "goal: agent / echo under the flood >= 0.90: {:.2}, {}",
        through_agent / through_echo,
        if through_agent / through_echo >= 0.9 { "met" } else { "not met" }
    );
    stage_breakdown(&broker, &mut agent, &sign(paced));
    group_commit();
}

/// User and system CPU time the process has used, seconds (`/proc/PID/stat`, in the kernel's 100 Hz ticks).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

/// Bytes the process has handed to `write` calls, files and sockets (`wchar` of `/proc/PID/io`).
/// (`write_bytes` counts every page-cache folio a write dirties at its full size, up to megabytes for a
/// few bytes on a kernel with large folios, and says nothing about what reached the disk.)
fn written_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("wchar: ")?.trim().parse().ok()).unwrap_or(0)
}

/// The paced run again, with the agent recording its stage times: p50 and p99 of each stage's share.
fn stage_breakdown(broker: &Broker, agent: &mut Agent, frames: &[Vec<u8>]) {
    let file = agent.home().join("stages.csv");
    agent.env.push((if_edge::stages::ENV.into(), file.display().to_string()));
    agent.start();
    let probe = Probe::connect(broker, &agent.site, &agent.name);
    let (lat, published, answered) = if_tests::bench::paced(&probe, frames.to_vec());
    agent.stop();
    agent.env.retain(|(k, _)| k != if_edge::stages::ENV);
    print_latency("agent latency at 1k msgs/s, stage times on", &lat);
    let text = std::fs::read_to_string(&file).expect("the agent wrote its stage times");
    let times: std::collections::HashMap<String, Vec<u128>> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split(',');
            let id = cols.next()?.to_string();
            Some((id, cols.map(|c| c.parse().unwrap_or(0)).collect()))
        })
        .collect();
    let names = [
        "MQTT in",
        "verify + admit",
        "wait for the commit before",
        "RECEIVED commit",
        "ack + start",
        "capability",
        "outcome commit",
        "sign + publish reply",
        "MQTT out",
    ];
    // Each command's time in each stage, in microseconds.
    let mut commands: Vec<Vec<u64>> = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let id = if_protocol::json::frame_to_json(frame).expect("frame").body.id.to_string();
        let Some(t) = times.get(&id).filter(|t| t.len() == 8 && t.iter().all(|v| *v > 0)) else { continue };
        if answered[i] == 0 {
            continue;
        }
        let points: Vec<u128> = std::iter::once(published[i]).chain(t.iter().copied()).chain([answered[i]]).collect();
        commands.push(points.windows(2).map(|w| w[1].saturating_sub(w[0]) as u64).collect());
    }
    // The slowest 1 % of commands end to end, and the median of each stage among them: where the tail
    // goes, which the stages' own p99s (each of other commands) do not say.
    commands.sort_by_key(|c| c.iter().sum::<u64>());
    let tail = &commands[commands.len() - commands.len().div_ceil(100)..];
    println!(
        "stage breakdown at 1k msgs/s ({} commands with every stage; the slowest {}):",
        commands.len(),
        tail.len()
    );
    for (s, name) in names.iter().enumerate() {
        let sorted = |of: &[Vec<u64>]| {
            let mut d: Vec<Duration> = of.iter().map(|c| Duration::from_micros(c[s])).collect();
            d.sort();
            d
        };
        let (all, slow) = (sorted(&commands), sorted(tail));
        if all.is_empty() {
            continue;
        }
        let ms = |d: &[Duration], q| if_tests::bench::percentile(d, q).as_secs_f64() * 1e3;
        println!(
            "  {name:<28} p50 {:.3} ms, p99 {:.3} ms; in the slowest: median {:.3} ms",
            ms(&all, 0.5),
            ms(&all, 0.99),
            ms(&slow, 0.5)
        );
    }
}

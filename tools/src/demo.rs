//! `ifctl demo`: a whole site on this machine in one command, to see what the agent does and why.
//!
//! It starts an MQTT broker inside this process, the vMix, Videohub and VISCA simulators (the camera on a
//! pseudo-terminal), makes a trust root, signs one manifest per device, starts the agent (the same code
//! as `if-edge run`) and adds a `director` talent with its grants. Then it tells a short story of signed
//! commands, good and bad, each checked against what the agent answered and what the simulated hardware
//! received: a cut, a route salvo, a camera preset, a replay, a forged signature, a hazard without
//! consent, and a device that stops answering, which opens its breaker and later closes it. Last, the
//! agent stops, its witness log is verified and its latest signed checkpoint printed.
//!
//! It succeeds when every step behaved as expected. `--keep-running` leaves the site up for the other
//! verbs and prints how to reach it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use if_edge::reply::Reply;
use if_protocol::topics::{self, Kind};
use if_protocol::{ErrorCode, IfError};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

use crate::message::{self, Target};
use crate::sim::vmix::Files;
use crate::{broker, policy, talent};

const SITE: &str = "demo";
const AGENT: &str = "edge-1";
const VMIX: &str = "if://capability/vmix.switcher";
const HUB: &str = "if://capability/videohub.router";
const CAM: &str = "if://capability/camera.one";

/// What the demo is asked to do.
#[derive(Debug)]
pub struct Options {
    /// Where to keep keys, configuration, logs and records (default: a new directory under the system's
    /// temporary directory, removed at the end unless the site is kept running).
    pub dir: Option<PathBuf>,
    /// Leave everything running after the story, until Ctrl-C.
    pub keep_running: bool,
    /// Tell the story as JSON lines: one per step, then the summary.
    pub json: bool,
}

fn failed(what: &str, e: impl std::fmt::Display) -> IfError {
    IfError::format(ErrorCode::SystemError, format_args!("demo: {what}: {e}"))
}

/// A simulated device: its record of what it received and its fault file.
#[derive(Debug, Clone)]
struct Device {
    files: Files,
}

impl Device {
    fn new(dir: &Path, name: &str) -> Self {
        let files = Files {
            record: Some(dir.join(format!("{name}.received"))),
            fault: Some(dir.join(format!("{name}.fault"))),
        };
        Device { files }
    }

    fn received(&self) -> Vec<String> {
        let path = self.files.record.as_deref().unwrap_or(Path::new(""));
        std::fs::read_to_string(path).unwrap_or_default().lines().map(String::from).collect()
    }

    fn fault(&self, fault: &str) -> Result<(), IfError> {
        let path = self.files.fault.as_deref().unwrap_or(Path::new(""));
        std::fs::write(path, fault).map_err(|e| failed("fault file", e))
    }
}

/// The running site.
struct Site {
    keys: PathBuf,
    target: Target,
    vmix: Device,
    hub: Device,
    camera: Device,
    agent_dir: PathBuf,
    /// The director's next sequence number.
    seq: std::sync::atomic::AtomicU64,
    out: Narrator,
}

/// Runs the demo; an error if a step did not behave as expected or the site could not start.
pub fn run(opts: &Options) -> Result<(), IfError> {
    let (dir, temporary) = match &opts.dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("ifctl-demo-{}", std::process::id())), true),
    };
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(IfError::format(
            ErrorCode::ConfigInvalid,
            format_args!("demo: {} is not empty; the demo makes a new site in an empty directory", dir.display()),
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| failed(&dir.display().to_string(), e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| failed("runtime", e))?;
    let result = runtime.block_on(story(&dir, opts.keep_running, Narrator { json: opts.json }));
    if temporary && !opts.keep_running {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn story(dir: &Path, keep_running: bool, out: Narrator) -> Result<(), IfError> {
    out.say(format_args!("IF edge demo: one agent and simulated studio hardware on this machine\n"));
    let addr = broker::start(0)?;
    let url = format!("mqtt://{addr}");
    let (vmix, hub, camera) = (Device::new(dir, "vmix"), Device::new(dir, "videohub"), Device::new(dir, "camera"));
    let endpoints = start_devices(dir, [&vmix, &hub, &camera]).await?;
    out.say(format_args!("  broker    {url} (inside this process)"));
    out.say(format_args!("  vMix      {}   Videohub {}   camera {}", endpoints[0], endpoints[1], endpoints[2]));
    let (keys, agent_dir) = (dir.join("keys"), dir.join("agent"));
    let config = set_up(dir, &keys, &agent_dir, &url, &endpoints)?;
    let site = Site {
        target: Target {
            broker: url.clone(),
            site: SITE.into(),
            agent: AGENT.into(),
            timeout: Duration::from_secs(10),
            tls: None,
            // Every answer the story shows is checked against the agent's own key.
            key: if_edge::keyfile::read_public(&agent_dir.join("agent.pub"))?,
        },
        keys,
        vmix,
        hub,
        camera,
        agent_dir,
        seq: std::sync::atomic::AtomicU64::new(1),
        out,
    };
    let loaded = if_edge::config::Config::load(&config)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = std::thread::Builder::new()
        .name("agent".into())
        .spawn(move || run_agent(loaded, stopped))
        .map_err(|e| failed("agent thread", e))?;
    out.say(format_args!("  agent     {SITE}/{AGENT}, files in {}\n", site.agent_dir.display()));
    grant_director(&site).await?;

    let steps = steps(&site).await;
    let good = steps.iter().filter(|s| s.ok).count();

    if keep_running {
        print_how_to_reach(&site);
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop.send(());
    tokio::task::spawn_blocking(move || agent.join())
        .await
        .map_err(|e| failed("agent thread", e))?
        .map_err(|_| failed("agent thread", "panicked"))??;
    let verified = verify(&site);
    match &verified {
        Ok(_) if out.json => {
            let summary = serde_json::json!({ "steps": steps.len(), "ok": good, "witness_verified": true });
            println!("{summary}");
        }
        Ok(()) => println!("\ndemo: {good} of {} steps behaved as expected; the witness log verifies", steps.len()),
        Err(e) if out.json => println!("{}", serde_json::json!({ "witness_verified": false, "error": e.to_string() })),
        Err(e) => println!("\ndemo: the witness log did not verify: {e}"),
    }
    verified?;
    if good != steps.len() {
        return Err(failed(
            "story",
            format_args!("{} of {} steps did not behave as expected", steps.len() - good, steps.len()),
        ));
    }
    Ok(())
}

/// Runs the agent on a runtime of its own until `stopped`; dropping the runtime ends every task the agent
/// started, and with them its hold on the witness file.
fn run_agent(loaded: if_edge::config::Loaded, stopped: tokio::sync::oneshot::Receiver<()>) -> Result<(), IfError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| failed("agent runtime", e))?;
    let result = runtime.block_on(if_edge::agent::run(loaded, async {
        let _ = stopped.await;
    }));
    drop(runtime);
    result
}

/// Starts the three simulators; returns their endpoints as manifests name them.
async fn start_devices(dir: &Path, devices: [&Device; 3]) -> Result<[String; 3], IfError> {
    for d in devices {
        d.fault("")?;
    }
    let [vmix_files, hub_files, camera_files] = devices.map(|d| d.files.clone());
    let vmix = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| failed("vMix simulator", e))?;
    let hub = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| failed("Videohub simulator", e))?;
    let endpoint = |l: &tokio::net::TcpListener| l.local_addr().map(|a| format!("tcp://{a}"));
    let (vmix_at, hub_at) =
        (endpoint(&vmix).map_err(|e| failed("vMix", e))?, endpoint(&hub).map_err(|e| failed("Videohub", e))?);
    let link = dir.join("camera.tty");
    let camera = crate::sim::visca::open(&link).map_err(|e| failed("camera simulator", e))?;
    tokio::spawn(crate::sim::vmix::serve(vmix, vmix_files, 4));
    tokio::spawn(crate::sim::videohub::serve(hub, hub_files, 12));
    tokio::spawn(crate::sim::visca::serve(camera, camera_files));
    Ok([vmix_at, hub_at, format!("serial://{}?baud=9600&address=1", link.display())])
}

/// A manifest for the demo's devices: actions as (name, hazards, emergency).
fn manifest(id: &str, driver: &str, endpoint: &str, actions: &[(&str, &str, bool)]) -> String {
    let mut text = format!(
        "id = \"{id}\"\nversion = \"1.0.0\"\ndriver = \"{driver}\"\nendpoint = \"{endpoint}\"\n\
         requires_secrets = []\nscopes = [\"studio:control\"]\nexpires = 4000000000\n\n[limits]\nrps = 20.0\n\
         burst = 10\nbackoff = [1, 2, 5]\nbreaker_failures = 2\nqueue_depth = 32\ntimeout_ms = 500\n"
    );
    for (name, hazards, emergency) in actions {
        text +=
            &format!("\n[[actions]]\nname = \"{name}\"\nhazards = [{hazards}]\ncost = 0\nemergency = {emergency}\n");
    }
    text
}

/// Keys, trust root, signed manifests and the agent's directory; returns the agent's config file.
fn set_up(dir: &Path, keys: &Path, agent_dir: &Path, url: &str, endpoints: &[String; 3]) -> Result<PathBuf, IfError> {
    for name in ["security", "policy", "director", "intruder"] {
        if_edge::keyfile::generate(keys, name)?;
    }
    let root = dir.join("root.toml");
    let spec = policy::RootSpec {
        keys: vec![keys.join("security.key")],
        policy_keys: vec![keys.join("policy.pub")],
        threshold: 1,
        expires_days: 30,
    };
    policy::init_root(&spec, &root)?;
    let written = if_edge::init::init(&if_edge::init::InitRequest {
        dir: agent_dir.to_path_buf(),
        broker: url.to_string(),
        site: SITE.into(),
        agent: AGENT.into(),
        trust_root: Some(root),
        tls: None,
    })?;
    let manifests = [
        (
            "vmix",
            manifest(VMIX, "vmix-tcp", &endpoints[0], &[("cut", "\"on_air\"", false), ("preview_input", "", false)]),
        ),
        ("videohub", manifest(HUB, "videohub-tcp", &endpoints[1], &[("route", "", false), ("salvo", "", false)])),
        (
            "camera",
            manifest(
                CAM,
                "visca-serial",
                &endpoints[2],
                &[("preset_recall", "\"motion\"", false), ("pan_tilt", "\"motion\"", false), ("stop", "", true)],
            ),
        ),
    ];
    let mut allow = Vec::new();
    for (name, text) in manifests {
        let unsigned = dir.join(format!("{name}.manifest.toml"));
        std::fs::write(&unsigned, text).map_err(|e| failed("manifest", e))?;
        let out = agent_dir.join("policy/manifests").join(format!("{name}.toml"));
        let said = policy::sign_manifest(&unsigned, &[keys.join("security.key")], &out)?;
        allow.push(said.json["allow"].to_string());
    }
    let config = std::fs::read_to_string(&written.config).map_err(|e| failed("edge.toml", e))?;
    let config = config.replace("allow = []", &format!("allow = [{}]", allow.join(", ")));
    std::fs::write(&written.config, config).map_err(|e| failed("edge.toml", e))?;
    Ok(written.config)
}

/// Adds the director and grants it the three devices, retrying until the agent is subscribed.
async fn grant_director(site: &Site) -> Result<(), IfError> {
    let policy_key = site.keys.join("policy.key");
    let add = talent::add("director", "director", &site.keys.join("director.pub"))?;
    let quick = Target { timeout: Duration::from_secs(1), ..site.target.clone() };
    let mut added = None;
    for _ in 0..20 {
        let frame = message::sign(&talent::command("talent.add", add.clone(), &policy_key, None, "demo desk"), &quick)?;
        if let Ok(reply) = message::send(&quick, frame).await {
            added = Some(reply);
            break;
        }
    }
    expect_ok(added.ok_or_else(|| failed("agent", "did not answer within 20 s"))?, "talent.add")?;
    let grants: [(&str, &[&str], &[&str]); 3] = [
        (VMIX, &["cut", "preview_input"], &["on_air"]),
        (HUB, &["route", "salvo"], &[]),
        (CAM, &["preset_recall", "pan_tilt", "stop"], &["motion"]),
    ];
    for (capability, actions, hazards) in grants {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let args =
            talent::grant("director", capability, &["studio:control".into()], &own(actions), &own(hazards), None, None);
        let frame =
            message::sign(&talent::command("talent.grant", args, &policy_key, None, "demo grants"), &site.target)?;
        expect_ok(message::send(&site.target, frame).await?, "talent.grant")?;
    }
    Ok(())
}

fn expect_ok(reply: Reply, what: &str) -> Result<(), IfError> {
    match reply.error {
        None => Ok(()),
        Some(e) => Err(failed(what, IfError::from(&e))),
    }
}

/// One step of the story: what was done, whether it behaved as expected, and what happened.
struct Step {
    ok: bool,
}

/// Tells the story: lines for people, or one JSON object per step.
#[derive(Debug, Clone, Copy)]
struct Narrator {
    json: bool,
}

impl Narrator {
    /// A line of the narration (not part of the JSON form).
    fn say(&self, line: std::fmt::Arguments<'_>) {
        if !self.json {
            println!("{line}");
        }
    }

    /// A step: its number, what was done, whether it behaved as expected and what happened.
    fn step(&self, n: usize, title: &str, ok: bool, what: &str) -> Step {
        if self.json {
            println!("{}", serde_json::json!({ "step": n, "title": title, "ok": ok, "what": what }));
        } else {
            println!("{n:>2}. {} {title}", if ok { "ok  " } else { "FAIL" });
            println!("        {what}");
        }
        Step { ok }
    }
}

/// A director's command.
fn command(site: &Site, action: &str, capability: &str, args: &[&str], hazards: &[&str]) -> message::Command {
    message::Command {
        key: site.keys.join("director.key"),
        sender: "director".into(),
        capability: capability.into(),
        action: action.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        why: format!("demo: {action}"),
        trace: None,
        seq: Some(site.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        ttl_s: 30,
        scope: "studio:control".into(),
        hazards: hazards.iter().map(|s| s.to_string()).collect(),
        audience: None,
    }
}

async fn send(site: &Site, cmd: &message::Command) -> Result<Reply, IfError> {
    message::send(&site.target, message::sign(cmd, &site.target)?).await
}

fn code(reply: &Result<Reply, IfError>) -> String {
    match reply {
        Ok(r) => r.error.as_ref().map_or_else(|| "OK".into(), |e| format!("IF_ERR_{:03}", e.code.number())),
        Err(e) => format!("no reply ({e})"),
    }
}

fn said(reply: &Result<Reply, IfError>) -> String {
    match reply {
        Ok(Reply { error: Some(e), .. }) => format!("IF_ERR_{:03} {}: {}", e.code.number(), e.name, e.message),
        Ok(r) => format!("executed, witness record #{}", r.witness.unwrap_or(0)),
        Err(e) => format!("{e}"),
    }
}

async fn steps(site: &Site) -> Vec<Step> {
    let mut steps = Vec::new();

    // 1. A cut, with the on-air hazard declared.
    let cut = command(site, "cut", VMIX, &[], &["on_air"]);
    let cut_frame = message::sign(&cut, &site.target);
    let first = match &cut_frame {
        Ok(f) => message::send(&site.target, f.clone()).await,
        Err(e) => Err(e.clone()),
    };
    let cuts = || site.vmix.received().iter().filter(|l| l.starts_with("FUNCTION Cut")).count();
    let tally: Option<if_protocol::messages::Tally> = retained(&site.target, Kind::Tally).await;
    let program = tally.map_or_else(|| "none".into(), |t| format!("{:?}", t.program));
    steps.push(site.out.step(
        1,
        "the director cuts vMix, declaring the on-air hazard",
        code(&first) == "OK" && cuts() == 1 && program == "[2]",
        &format!("{}; vMix received FUNCTION Cut; tally topic: program {program}", said(&first)),
    ));

    // 2. A salvo: three routes in one block, all or nothing.
    let salvo = send(site, &command(site, "salvo", HUB, &["routes=0:4,1:5,2:6"], &[])).await;
    let block = site.hub.received().into_iter().rev().find(|b| b.starts_with("VIDEO OUTPUT ROUTING:"));
    steps.push(site.out.step(
        2,
        "a route salvo on the Videohub: outputs 0, 1, 2 from inputs 4, 5, 6",
        code(&salvo) == "OK" && block.as_deref() == Some("VIDEO OUTPUT ROUTING: | 0 4 | 1 5 | 2 6"),
        &format!("{}; the router received one block: {}", said(&salvo), block.unwrap_or_default()),
    ));

    // 3. A camera preset over the serial line.
    let preset = send(site, &command(site, "preset_recall", CAM, &["preset=2"], &["motion"])).await;
    let packet = site.camera.received().last().and_then(|l| l.split_once(' ').map(|(_, h)| h.to_string()));
    steps.push(site.out.step(
        3,
        "camera 1 recalls preset 2, declaring motion",
        code(&preset) == "OK" && packet.as_deref() == Some("81 01 04 3F 02 02 FF"),
        &format!("{}; the camera received {}", said(&preset), packet.unwrap_or_default()),
    ));

    // 4. The cut's exact bytes again.
    let again = match &cut_frame {
        Ok(f) => message::send(&site.target, f.clone()).await,
        Err(e) => Err(e.clone()),
    };
    let same =
        matches!((&first, &again), (Ok(a), Ok(b)) if serde_json::to_string(a).ok() == serde_json::to_string(b).ok());
    steps.push(site.out.step(
        4,
        "the same signed cut is sent again (a replay)",
        same && cuts() == 1,
        &format!(
            "answered with the original reply ({}); vMix received {} cut(s): a command never runs twice",
            said(&again),
            cuts()
        ),
    ));

    // 5. A forged signature.
    let forged =
        message::Command { key: site.keys.join("intruder.key"), ..command(site, "cut", VMIX, &[], &["on_air"]) };
    let forged = send(site, &forged).await;
    steps.push(site.out.step(
        5,
        "a cut in the director's name, signed with another key",
        code(&forged) == "IF_ERR_004" && cuts() == 1,
        &format!("refused: {}; nothing reached vMix", said(&forged)),
    ));

    // 6. A hazard without consent.
    let bare = send(site, &command(site, "cut", VMIX, &[], &[])).await;
    steps.push(site.out.step(
        6,
        "a cut that does not declare the on-air hazard",
        code(&bare) == "IF_ERR_205" && cuts() == 1,
        &format!("refused: {}; nothing reached vMix", said(&bare)),
    ));

    // 7. vMix stops answering: two timeouts open the breaker, then commands fail fast.
    let _ = site.vmix.fault("hang");
    let preview = || command(site, "preview_input", VMIX, &["Input=3"], &[]);
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(code(&send(site, &preview()).await));
    }
    let opened =
        codes[0] == "IF_ERR_402" && (codes[1] == "IF_ERR_401" || codes[1] == "IF_ERR_402") && codes[2] == "IF_ERR_303";
    steps.push(site.out.step(
        7,
        "vMix stops answering",
        opened,
        &format!(
            "{}: the first timed out and the driver reconnected; two failures opened the breaker (a BREAKER \
             record, and the status topic shows it); the next command failed fast instead of waiting on a \
             dead device",
            codes.join(", ")
        ),
    ));

    // 8. vMix is back: after the breaker's wait, one probe, and the lane closes again.
    let _ = site.vmix.fault("");
    let mut back = Err(failed("vMix", "not back"));
    for _ in 0..30 {
        back = send(site, &preview()).await;
        if code(&back) == "OK" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    steps.push(site.out.step(
        8,
        "vMix answers again",
        code(&back) == "OK",
        &format!("{}: the breaker sent one probe after its wait, closed, and commands flow again", said(&back)),
    ));
    steps
}

/// The retained message on the agent's `kind` topic, if one comes within 2 s signed by the agent.
async fn retained<T: serde::de::DeserializeOwned>(target: &Target, kind: Kind) -> Option<T> {
    let broker = if_edge::mqtt::BrokerAddr::parse(&target.broker).ok()?;
    let topic = topics::of(&target.site, &target.agent, kind);
    let (client, mut events) =
        AsyncClient::new(MqttOptions::new(format!("demo-{}", uuid::Uuid::new_v4()), broker.host, broker.port), 16);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        match tokio::time::timeout_at(deadline, events.poll()).await.ok()?.ok()? {
            Event::Incoming(Packet::ConnAck(_)) => client.subscribe(topic.clone(), QoS::AtLeastOnce).await.ok()?,
            Event::Incoming(Packet::Publish(p)) => {
                let _ = client.disconnect().await;
                let context = if_protocol::attest::topic_context(&topic);
                let object =
                    if_protocol::attest::verify(&target.key, if_protocol::attest::PUBLISH_DOMAIN, &context, &p.payload)
                        .ok()?;
                return serde_json::from_slice(&object).ok();
            }
            _ => {}
        }
    }
}

fn verify(site: &Site) -> Result<(), IfError> {
    let db = site.agent_dir.join("data/witness.redb");
    let key = site.agent_dir.join("agent.pub");
    // The agent has returned: its witness writer is joined and the file closed.
    let report = crate::witness::verify_db(&db, Some(&key))?;
    let note = crate::witness::checkpoint(&db)?;
    let kinds: Vec<String> = report.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let title = "the agent stopped; its witness log verifies record by record";
    let what =
        format!("{} records ({}), {} signed checkpoint(s) match", report.size, kinds.join(", "), report.checkpoints);
    if site.out.json {
        let checkpoint = crate::witness::checkpoint_json(&note)?;
        println!(
            "{}",
            serde_json::json!({ "step": 9, "title": title, "ok": true, "what": what, "checkpoint": checkpoint })
        );
        return Ok(());
    }
    println!("\n 9. ok   {title}\n        {what}");
    println!("        its latest signed checkpoint (origin, size, root hash, signature):");
    for line in note.lines() {
        println!("        | {line}");
    }
    Ok(())
}

fn print_how_to_reach(site: &Site) {
    let t = &site.target;
    let key = site.keys.join("director.key");
    let fault = site.vmix.files.fault.as_deref().unwrap_or(Path::new(""));
    if site.out.json {
        let site = serde_json::json!({
            "broker": t.broker, "site": t.site, "agent": t.agent, "director_key": key, "vmix_fault_file": fault,
        });
        println!("{}", serde_json::json!({ "running": site }));
        return;
    }
    println!("\nThe site stays up until Ctrl-C. From another shell:");
    println!(
        "  ifctl message send --broker {} --site {} --agent {} --key {} --sender director \\\n    \
         --capability {VMIX} --action cut --hazard on_air --why \"try it\"",
        t.broker,
        t.site,
        t.agent,
        key.display()
    );
    println!("  vMix fault file: {} (hang, refuse, er, ...)", fault.display());
}

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
//! When `qemu-system-arm` and the rack node's firmware are on this machine, the site also has a rack node
//! (the real firmware, emulated): a button on it bound to the cut, and lamps bound to vMix's tally; the
//! story presses the button and watches the lamps. Without them it says that it left that part out.
//!
//! It succeeds when every step behaved as expected. `--keep-running` leaves the site up for the other
//! verbs and prints how to reach it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use if_protocol::{ErrorCode, IfError};
use if_sim::Files;

mod rack;
mod setup;
mod story;

use crate::broker;
use crate::message::Target;
use setup::{grant_director, set_up, start_devices};
use story::steps;

const SITE: &str = "demo";
const AGENT: &str = "edge-1";
const VMIX: &str = "if://capability/vmix.switcher";
const HUB: &str = "if://capability/videohub.router";
const CAM: &str = "if://capability/camera.one";
const RACK: &str = "if://capability/rack.one";
const UMD: &str = "if://capability/umd.wall";

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
    /// The rack node's firmware image (default: the one built beside this program).
    pub firmware: Option<PathBuf>,
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
    umd: Device,
    agent_dir: PathBuf,
    /// The director's next sequence number.
    seq: std::sync::atomic::AtomicU64,
    out: Narrator,
}

/// Runs the demo; an error if a step did not behave as expected or the site could not start.
pub async fn run(opts: &Options) -> Result<(), IfError> {
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
    let image = opts.firmware.clone().or_else(rack::default_image);
    let result = story(&dir, opts.keep_running, image, Narrator { json: opts.json }).await;
    if temporary && !opts.keep_running {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn story(dir: &Path, keep_running: bool, image: Option<PathBuf>, out: Narrator) -> Result<(), IfError> {
    out.say(format_args!("IF edge demo: one agent and simulated studio hardware on this machine\n"));
    let addr = broker::start(0)?;
    let url = format!("mqtt://{addr}");
    let (vmix, hub, camera) = (Device::new(dir, "vmix"), Device::new(dir, "videohub"), Device::new(dir, "camera"));
    let umd = Device::new(dir, "umd");
    let endpoints = start_devices(dir, [&vmix, &hub, &camera, &umd]).await?;
    out.say(format_args!("  broker    {url} (inside this process)"));
    out.say(format_args!("  vMix      {}   Videohub {}   camera {}", endpoints[0], endpoints[1], endpoints[2]));
    out.say(format_args!("  UMDs      a TSL v5 receiver on {}", endpoints[3]));
    let mut rack = match (rack::missing(image.as_deref()), image.as_deref()) {
        (None, Some(image)) => {
            let rack = rack::Rack::start(image).await?;
            out.say(format_args!(
                "  rack node the real firmware under qemu-system-arm (mps2-an386), link {}",
                rack.link
            ));
            Some(rack)
        }
        (why, _) => {
            let why = why.unwrap_or_default();
            if out.json {
                println!("{}", serde_json::json!({ "skipped": "rack node", "why": why }));
            } else {
                println!("  rack node skipped: {why}");
            }
            None
        }
    };
    let (keys, agent_dir) = (dir.join("keys"), dir.join("agent"));
    let config = set_up(dir, &keys, &agent_dir, &url, &endpoints, rack.as_ref().map(|r| r.link.as_str()))?;
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
        umd,
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
    setup::bind_umds(&site).await?;
    if rack.is_some() {
        setup::bind_rack(&site).await?;
    }

    let mut steps = steps(&site).await;
    if let Some(rack) = rack.as_mut() {
        steps.extend(story::rack_steps(&site, rack, steps.len() + 1).await);
    }
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
    drop(rack);
    let verified = verify(&site, steps.len() + 1);
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

fn verify(site: &Site, n: usize) -> Result<(), IfError> {
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
            serde_json::json!({ "step": n, "title": title, "ok": true, "what": what, "checkpoint": checkpoint })
        );
        return Ok(());
    }
    println!("\n{n:>2}. ok   {title}\n        {what}");
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

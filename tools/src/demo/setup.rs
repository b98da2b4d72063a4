//! Setting the demo site up: the simulators, the keys, the trust root and one signed manifest per
//! device, the agent's configuration, the director's grants and the tally displays' bindings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use if_edge::reply::Reply;
use if_protocol::IfError;

use super::{AGENT, CAM, Device, HUB, RACK, SITE, Site, UMD, VMIX, failed};
use crate::message::{self, Target};
use crate::{policy, talent};

/// Starts the four simulators; returns their endpoints as manifests name them.
pub(super) async fn start_devices(dir: &Path, devices: [&Device; 4]) -> Result<[String; 4], IfError> {
    for d in devices {
        d.fault("")?;
    }
    let [vmix_files, hub_files, camera_files, umd_files] = devices.map(|d| d.files.clone());
    let umd = tokio::net::UdpSocket::bind("127.0.0.1:0").await.map_err(|e| failed("TSL receiver", e))?;
    let umd_at = umd.local_addr().map_err(|e| failed("TSL receiver", e))?;
    tokio::spawn(if_sim::tsl::serve(umd, umd_files));
    let vmix = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| failed("vMix simulator", e))?;
    let hub = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| failed("Videohub simulator", e))?;
    let endpoint = |l: &tokio::net::TcpListener| l.local_addr().map(|a| format!("tcp://{a}"));
    let (vmix_at, hub_at) =
        (endpoint(&vmix).map_err(|e| failed("vMix", e))?, endpoint(&hub).map_err(|e| failed("Videohub", e))?);
    let link = dir.join("camera.tty");
    let camera = if_sim::visca::open(&link).map_err(|e| failed("camera simulator", e))?;
    tokio::spawn(if_sim::vmix::serve(vmix, vmix_files, 4));
    tokio::spawn(if_sim::videohub::serve(hub, hub_files, 12));
    tokio::spawn(if_sim::visca::serve(camera, camera_files));
    Ok([
        vmix_at,
        hub_at,
        format!("serial://{}?baud=9600&address=1", link.display()),
        format!("udp://{umd_at}?version=5"),
    ])
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
pub(super) fn set_up(
    dir: &Path,
    keys: &Path,
    agent_dir: &Path,
    url: &str,
    endpoints: &[String; 4],
    rack: Option<&str>,
) -> Result<PathBuf, IfError> {
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
    let rack_manifest = rack.map(|link| {
        let endpoint = format!("serial://{link}?baud=115200");
        let actions = [("lamp", "", false), ("relay", "", false), ("pulse", "", false), ("safe", "", true)];
        (
            "rack",
            manifest(RACK, "rack-node-serial", &endpoint, &actions).replace("timeout_ms = 500", "timeout_ms = 2000"),
        )
    });
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
        ("umd", manifest(UMD, "tsl-umd", &endpoints[3], &[("display", "", false), ("refresh", "", false)])),
    ];
    let mut allow = Vec::new();
    for (name, text) in manifests.into_iter().chain(rack_manifest) {
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
pub(super) async fn grant_director(site: &Site) -> Result<(), IfError> {
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

/// Binds the multiviewer's tally displays 1 and 2 to vMix inputs 1 and 2, reading CAM 1 and CAM 2.
pub(super) async fn bind_umds(site: &Site) -> Result<(), IfError> {
    let policy_key = site.keys.join("policy.key");
    for input in 1..=2u8 {
        let args = vec![
            format!("name=umd{input}"),
            format!("node={UMD}"),
            format!("display={input}"),
            format!("follow={VMIX}"),
            format!("follow_input={input}"),
            format!("label=CAM {input}"),
        ];
        let frame =
            message::sign(&talent::command("binding.add", args, &policy_key, None, "demo bindings"), &site.target)?;
        expect_ok(message::send(&site.target, frame).await?, "binding.add")?;
    }
    Ok(())
}

/// Binds the rack node: button 0 cuts vMix as the director; lamps 0-2 follow vMix inputs 1-3.
pub(super) async fn bind_rack(site: &Site) -> Result<(), IfError> {
    let policy_key = site.keys.join("policy.key");
    let node = format!("node={RACK}");
    let mut bindings = vec![vec![
        "name=rack-cut".to_string(),
        node.clone(),
        "input=0".into(),
        "talent=director".into(),
        format!("capability={VMIX}"),
        "action=cut".into(),
        "scope=studio:control".into(),
        "hazards=on_air".into(),
    ]];
    for lamp in 0..3u8 {
        let input = lamp + 1;
        bindings.push(vec![
            format!("name=camera{input}-tally"),
            node.clone(),
            format!("lamp={lamp}"),
            format!("follow={VMIX}"),
            format!("follow_input={input}"),
        ]);
    }
    for args in bindings {
        let frame =
            message::sign(&talent::command("binding.add", args, &policy_key, None, "demo bindings"), &site.target)?;
        expect_ok(message::send(&site.target, frame).await?, "binding.add")?;
    }
    Ok(())
}

fn expect_ok(reply: Reply, what: &str) -> Result<(), IfError> {
    match reply.error {
        None => Ok(()),
        Some(e) => Err(failed(what, IfError::from(&e))),
    }
}

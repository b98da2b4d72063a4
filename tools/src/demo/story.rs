//! The story the demo tells: signed commands good and bad, each checked against what the agent
//! answered and what the simulated hardware received.

use std::time::Duration;

use if_edge::reply::Reply;
use if_protocol::IfError;
use if_protocol::topics::{self, Kind};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event};

use super::{CAM, HUB, Site, Step, VMIX, failed};
use crate::message::{self, Target};

/// A director's command.
fn command(site: &Site, action: &str, capability: &str, args: &[&str], hazards: &[&str]) -> message::Command {
    let why = format!("demo: {action}");
    let mut cmd = message::Command::new(site.keys.join("director.key"), "director".into(), capability, action, &why);
    cmd.args = args.iter().map(|s| s.to_string()).collect();
    cmd.seq = Some(site.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    cmd.hazards = hazards.iter().map(|s| s.to_string()).collect();
    cmd
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

pub(super) async fn steps(site: &Site) -> Vec<Step> {
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
    // The multiviewer's display 2 follows input 2, now on program: red on the left and in its text.
    let on_air = r#"display 2 screen 0 left red text red right off brightness 3 "CAM 2""#;
    let mut umd = false;
    for _ in 0..30 {
        umd = site.umd.received().iter().any(|l| l == on_air);
        if umd {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    steps.push(site.out.step(
        1,
        "the director cuts vMix, declaring the on-air hazard",
        code(&first) == "OK" && cuts() == 1 && program == "[2]" && umd,
        &format!(
            "{}; vMix received FUNCTION Cut; tally topic: program {program}; the UMD received {}",
            said(&first),
            if umd { "display 2 \"CAM 2\" red (TSL v5)" } else { "nothing for display 2" }
        ),
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

/// The rack node's part of the story, numbered from `n`: a bound button and lamps that follow tally.
pub(super) async fn rack_steps(site: &Site, rack: &mut super::rack::Rack, n: usize) -> Vec<Step> {
    let cuts = || site.vmix.received().iter().filter(|l| l.starts_with("FUNCTION Cut")).count();
    let ready = rack.until(Duration::from_secs(10), |r| r.seen.iter().any(|l| l == "resumed")).await;
    let before = cuts();
    let pressed = rack.press(0).await.is_ok();
    let mut once = false;
    for _ in 0..50 {
        once = cuts() == before + 1;
        if once {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let once = once && cuts() == before + 1;
    let button = site.out.step(
        n,
        "a button on the rack node cuts vMix through a binding, as the director",
        ready && pressed && once,
        &format!(
            "the node (real firmware under QEMU) reported the press; the agent witnessed it (GPI), authorized \
             the bound cut as the director, and vMix received {} cut(s) for one press",
            cuts() - before
        ),
    );
    let tally: Option<if_protocol::messages::Tally> = retained(&site.target, Kind::Tally).await;
    let want: Vec<&str> = (1..=3u32)
        .map(|i| match &tally {
            Some(t) if t.program.contains(&i) => "red",
            Some(t) if t.preview.contains(&i) => "green",
            _ => "off",
        })
        .collect();
    let follows = tally.is_some()
        && rack
            .until(Duration::from_secs(5), |r| (0..3u8).all(|l| r.lamp(l) == want.get(usize::from(l)).copied()))
            .await;
    let shown: Vec<String> = (0..3u8).map(|l| format!("lamp {l} {}", rack.lamp(l).unwrap_or("?"))).collect();
    let lamps = site.out.step(
        n + 1,
        "the rack's lamps follow vMix tally, with no command sent",
        follows,
        &format!("red on program, green on preview: {}", shown.join(", ")),
    );
    vec![button, lamps]
}

/// The retained message on the agent's `kind` topic, if one comes within 2 s signed by the agent.
async fn retained<T: serde::de::DeserializeOwned>(target: &Target, kind: Kind) -> Option<T> {
    let broker = if_edge::mqtt::BrokerAddr::parse(&target.broker).ok()?;
    let topic = topics::of(&target.site, &target.agent, kind);
    let options = broker.client_options(format!("demo-{}", uuid::Uuid::new_v4()), None).ok()?;
    let (client, mut events) = AsyncClient::new(options, 16);
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

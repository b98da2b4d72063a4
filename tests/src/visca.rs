//! What both VISCA drivers are held to, whichever line carries the packets (a serial port or UDP): every
//! action reaches the camera as its packet, a bad argument never leaves the agent, a STOP ends the moves
//! queued before it, a zoom runs beside a preset move in the camera's second socket, and a STOP gets in
//! when both sockets execute. `seen` gives `(unix ms, hex)` of every packet the camera received, in order,
//! from the simulator's own record.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use if_protocol::envelope::{ArgValue, Hazards};

use crate::device::{DeviceRig, code, text};

/// Every action a camera offers.
pub const ACTIONS: [&str; 5] = ["preset_recall", "pan_tilt", "stop", "zoom", "tally"];

/// A command's arguments.
type Args = Vec<(&'static str, ArgValue)>;

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// Each action with arguments at the edges of their ranges reaches the camera as its packet, and the
/// reply names it; then seven bad ones are refused IF_ERR_101 and the camera sees nothing of them.
pub fn every_action_reaches_the_camera(r: &mut DeviceRig, seen: &dyn Fn() -> Vec<(u128, String)>) {
    let int = ArgValue::Int;
    let cases: Vec<(&str, Args, &str)> = vec![
        ("preset_recall", vec![("preset", int(0))], "81 01 04 3F 02 00 FF"),
        ("preset_recall", vec![("preset", int(127))], "81 01 04 3F 02 7F FF"),
        ("stop", vec![], "81 01 06 01 01 01 03 03 FF"),
        ("pan_tilt", vec![("direction", text("up"))], "81 01 06 01 08 08 03 01 FF"),
        ("pan_tilt", vec![("direction", text("down"))], "81 01 06 01 08 08 03 02 FF"),
        ("pan_tilt", vec![("direction", text("left"))], "81 01 06 01 08 08 01 03 FF"),
        ("pan_tilt", vec![("direction", text("right"))], "81 01 06 01 08 08 02 03 FF"),
        ("pan_tilt", vec![("direction", text("upleft"))], "81 01 06 01 08 08 01 01 FF"),
        ("pan_tilt", vec![("direction", text("upright"))], "81 01 06 01 08 08 02 01 FF"),
        ("pan_tilt", vec![("direction", text("downleft"))], "81 01 06 01 08 08 01 02 FF"),
        (
            "pan_tilt",
            vec![("direction", text("downright")), ("pan_speed", int(24)), ("tilt_speed", int(20))],
            "81 01 06 01 18 14 02 02 FF",
        ),
        ("zoom", vec![("direction", text("tele")), ("speed", int(7))], "81 01 04 07 27 FF"),
        ("zoom", vec![("direction", text("wide")), ("speed", int(0))], "81 01 04 07 30 FF"),
        ("zoom", vec![("direction", text("stop"))], "81 01 04 07 00 FF"),
        ("tally", vec![("on", ArgValue::Bool(true))], "81 01 7E 01 0A 00 02 FF"),
        ("tally", vec![("on", ArgValue::Bool(false))], "81 01 7E 01 0A 00 03 FF"),
    ];
    for (action, args, hex) in &cases {
        let reply = r.ask(action, Hazards::NONE, args);
        assert_eq!(code(&reply), "OK", "{action} {args:?}: {reply}");
        assert_eq!(reply["result"]["visca"], *hex, "{action}: the reply names what was sent");
        assert_eq!(reply["result"]["completed"], true, "{action}: answered on completion: {reply}");
        assert_eq!(seen().last().map(|(_, h)| h.as_str()), Some(*hex), "{action}: the camera saw it");
    }
    let before = seen().len();
    let bad: Vec<(&str, Args)> = vec![
        ("preset_recall", vec![("preset", int(128))]),
        ("preset_recall", vec![]),
        ("pan_tilt", vec![("direction", text("sideways"))]),
        ("pan_tilt", vec![("direction", text("up")), ("pan_speed", int(25))]),
        ("pan_tilt", vec![("direction", int(1))]),
        ("zoom", vec![("direction", text("tele")), ("speed", int(8))]),
        ("zoom", vec![]),
    ];
    for (action, args) in &bad {
        let reply = r.ask(action, Hazards::NONE, args);
        assert_eq!(code(&reply), "IF_ERR_101", "{action} {args:?}: {reply}");
    }
    assert_eq!(seen().len(), before, "nothing of a bad command reached the camera");
}

/// Six moves queue behind a lane of 2 a second (burst 1, `stop` an emergency); a STOP goes straight to
/// the camera and ends them: each move not yet sent is answered SUPERSEDED and witnessed FAILED, and
/// none reaches the camera after the STOP. Stops the agent.
pub fn a_stop_ends_the_queued_moves(r: &mut DeviceRig, seen: &dyn Fn() -> Vec<(u128, String)>) {
    let moving = |from: usize| {
        seen()[from.min(seen().len())..].iter().filter(|(_, h)| h.starts_with("81 01 06 01 08 08")).count()
    };
    let queued_from = seen().len();
    let moves: Vec<Vec<u8>> =
        (0..6).map(|_| r.frame("pan_tilt", Hazards::NONE, &[("direction", text("left"))])).collect();
    for (i, f) in moves.into_iter().enumerate() {
        r.probe.request(f, &(10_000 + i as u64).to_be_bytes());
    }
    // The lane has the moves once the camera has seen the first of them.
    assert!(crate::wait_for(Duration::from_secs(5), || (moving(queued_from) >= 1).then_some(())).is_some());
    let stop = r.frame("stop", Hazards::NONE, &[]);
    let sent_at = unix_ms();
    r.probe.request(stop, b"stop");
    let replies = r.probe.until_replies(7, Duration::from_secs(10));
    let reply = replies.iter().find(|m| m.correlation.as_deref() == Some(&b"stop"[..])).expect("the stop's reply");
    assert_eq!(code(&reply.json()), "OK", "{}", reply.json());
    let packets = seen();
    let stop_at = queued_from
        + packets[queued_from..]
            .iter()
            .position(|(_, h)| h == "81 01 06 01 01 01 03 03 FF")
            .expect("the camera saw the stop");
    let moves_before = moving(queued_from) - moving(stop_at);
    let latency = packets[stop_at].0.saturating_sub(sent_at);
    eprintln!("STOP: publish -> camera {latency} ms, {moves_before} move(s) before it");
    assert!(latency < 500, "the stop reached the camera {latency} ms after it was published");
    let ended: Vec<serde_json::Value> = replies.iter().map(|m| m.json()).filter(|j| code(j) == "IF_ERR_305").collect();
    assert_eq!(ended.len(), 6 - moves_before, "every move not yet sent was answered SUPERSEDED: {replies:?}");
    assert!(ended.iter().all(|j| j["error"]["message"].as_str().unwrap_or("").contains("never sent")));
    // Three token periods later the camera still has seen no move after the stop.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(moving(stop_at), 0, "no queued move reached the camera after the stop");
    r.agent.stop();
    let failed = r.agent.export().into_iter().filter(|r| r["kind"] == "FAILED" && r.to_string().contains("IF_ERR_305"));
    assert_eq!(failed.count(), ended.len(), "each ended move is witnessed FAILED with its code");
}

/// A preset move and a zoom, published back to back: the camera gets them in that order (the agent hands
/// commands to the lane in the order it admitted them), and the zoom runs in the camera's second socket
/// and is answered first, instead of waiting behind the move.
pub fn a_zoom_runs_beside_a_preset_move(r: &mut DeviceRig, seen: &dyn Fn() -> Vec<(u128, String)>) {
    let move_to = r.frame("preset_recall", Hazards::NONE, &[("preset", ArgValue::Int(20))]);
    let zoom = r.frame("zoom", Hazards::NONE, &[("direction", text("tele")), ("speed", ArgValue::Int(3))]);
    let before = seen().len();
    r.probe.request(move_to, b"move");
    r.probe.request(zoom, b"zoom");
    let replies = r.probe.until_replies(2, Duration::from_secs(10));
    let order: Vec<&[u8]> = replies.iter().filter_map(|m| m.correlation.as_deref()).collect();
    assert_eq!(order, [&b"zoom"[..], &b"move"[..]], "the zoom finished first, not queued behind the move");
    assert!(replies.iter().all(|m| code(&m.json()) == "OK"), "{replies:?}");
    let sent: Vec<String> = seen()[before..].iter().map(|(_, h)| h.clone()).collect();
    assert_eq!(sent, ["81 01 04 3F 02 14 FF", "81 01 04 07 23 FF"], "the camera got them in the order sent");
}

/// Two preset moves fill the camera's two sockets; then a STOP: the camera is full, so the move running
/// longest is cancelled (answered "command cancelled"), the STOP takes its socket and is answered, and
/// the other move goes on to its end.
pub fn a_stop_cancels_a_move_when_both_sockets_execute(r: &mut DeviceRig, seen: &dyn Fn() -> Vec<(u128, String)>) {
    let before = seen().len();
    for (preset, corr) in [(21, b"move1"), (22, b"move2")] {
        let f = r.frame("preset_recall", Hazards::NONE, &[("preset", ArgValue::Int(preset))]);
        r.probe.request(f, corr);
    }
    let both = || {
        let s = seen();
        let has = |h: &str| s[before..].iter().any(|(_, x)| x == h);
        (has("81 01 04 3F 02 15 FF") && has("81 01 04 3F 02 16 FF")).then_some(())
    };
    assert!(crate::wait_for(Duration::from_secs(5), both).is_some(), "the camera got both moves");
    let stop = r.frame("stop", Hazards::NONE, &[]);
    r.probe.request(stop, b"stop");
    let replies = r.probe.until_replies(3, Duration::from_secs(10));
    let reply =
        |c: &[u8]| replies.iter().find(|m| m.correlation.as_deref() == Some(c)).map(|m| m.json()).unwrap_or_default();
    assert_eq!(code(&reply(b"stop")), "OK", "{replies:?}");
    let first = reply(b"move1");
    assert_eq!(code(&first), "IF_ERR_403", "the move running longest was cancelled: {first}");
    assert!(first["error"]["message"].as_str().unwrap_or("").contains("command cancelled"), "{first}");
    assert_eq!(code(&reply(b"move2")), "OK", "the other move went on");
    let sent: Vec<String> = seen()[before..].iter().map(|(_, h)| h.clone()).collect();
    let at = |h: &str| sent.iter().position(|x| x == h);
    let (cancel, stops) = (at("81 21 FF"), sent.iter().filter(|h| *h == "81 01 06 01 01 01 03 03 FF").count());
    assert!(cancel.is_some() && stops == 2, "the stop, the cancel of socket 1, the stop again: {sent:?}");
}

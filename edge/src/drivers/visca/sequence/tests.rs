//! The rules of `sequence.rs`, each with plain values: no socket, no clock.

use tokio::sync::oneshot;

use super::*;

type Answer = oneshot::Receiver<Result<Vec<u8>, IfError>>;

const RECALL: [u8; 7] = [0x81, 0x01, 0x04, 0x3F, 0x02, 5, 0xFF];
const ZOOM: [u8; 6] = [0x81, 0x01, 0x04, 0x07, 0x27, 0xFF];
const TIMEOUT: Duration = Duration::from_millis(400);

fn request(packet: &[u8], inquiry: bool) -> (Request, Answer) {
    let (answer, rx) = oneshot::channel();
    (Request { packet: packet.to_vec(), inquiry, urgent: false, answer }, rx)
}

fn sent(s: &mut Sequence) -> Vec<(u16, u32, Vec<u8>)> {
    std::iter::from_fn(|| s.transmit())
        .map(|d| {
            let m = header::decode(&d).expect("a message");
            (m.kind, m.seq, m.payload.to_vec())
        })
        .collect()
}

/// Submits a command and takes its datagram; returns where its answer comes.
fn send_one(s: &mut Sequence, packet: &[u8], t: Instant) -> Answer {
    let (req, answer) = request(packet, false);
    s.submit(req, t);
    sent(s);
    answer
}

fn reply(seq: u32, payload: &[u8]) -> Vec<u8> {
    header::encode(REPLY, seq, payload)
}

fn code(rx: &mut Answer) -> Option<ErrorCode> {
    rx.try_recv().ok().and_then(|r| r.err()).map(|e| e.code())
}

#[test]
fn replies_are_matched_by_number_and_two_commands_execute_at_once() {
    let t = Instant::now();
    let mut s = Sequence::new(TIMEOUT);
    let (a, mut ra) = request(&RECALL, false);
    s.submit(a, t);
    assert_eq!(sent(&mut s), [(COMMAND, 1, RECALL.to_vec())]);
    assert!(!s.ready_for(false), "one waits for its ACK at a time");
    s.on_datagram(&reply(1, &[0x90, 0x41, 0xFF]), t);
    assert!(s.ready_for(false), "the second socket is free");
    let (b, mut rb) = request(&ZOOM, false);
    s.submit(b, t);
    assert_eq!(sent(&mut s)[0].1, 2);
    s.on_datagram(&reply(2, &[0x90, 0x42, 0xFF]), t);
    assert!(!s.ready_for(false), "both sockets busy");
    // A completion under a number no command has is nobody's.
    s.on_datagram(&reply(9, &[0x90, 0x51, 0xFF]), t);
    assert!(ra.try_recv().is_err() && rb.try_recv().is_err());
    s.on_datagram(&reply(2, &[0x90, 0x52, 0xFF]), t);
    assert_eq!(rb.try_recv().expect("answered").expect("ok"), [0x90, 0x52, 0xFF], "the zoom, before the recall");
    s.on_datagram(&reply(1, &[0x90, 0x51, 0xFF]), t);
    assert!(ra.try_recv().expect("answered").is_ok());
    // A repeated completion changes nothing.
    s.on_datagram(&reply(1, &[0x90, 0x51, 0xFF]), t);
    assert!(s.ready_for(false));
}

#[test]
fn a_lost_ack_is_sent_again_under_the_same_number_and_the_camera_s_answer_settles_it() {
    let t = Instant::now();
    let w = ack_wait(TIMEOUT);
    let mut s = Sequence::new(TIMEOUT);
    let mut ra = send_one(&mut s, &RECALL, t);
    s.expire(t + w);
    assert_eq!(sent(&mut s), [(COMMAND, 1, RECALL.to_vec())], "the same number again");
    // The camera had it: performed, and its completion still answers it by number.
    s.on_datagram(&header::encode(CONTROL_REPLY, 1, &BAD_SEQUENCE), t + w);
    assert!(ra.try_recv().is_err());
    s.on_datagram(&reply(1, &[0x90, 0x51, 0xFF]), t + w);
    assert_eq!(ra.try_recv().expect("answered").expect("ok"), [0x90, 0x51, 0xFF]);

    // Performed, and no completion comes: it ran, not seen to complete.
    let mut rb = send_one(&mut s, &ZOOM, t);
    s.expire(t + w);
    s.on_datagram(&header::encode(CONTROL_REPLY, 2, &BAD_SEQUENCE), t + w);
    s.expire(t + w + TIMEOUT);
    assert_eq!(rb.try_recv().expect("answered").expect("performed"), Vec::<u8>::new());

    // A completion without any ACK answers the command too.
    let mut rc = send_one(&mut s, &ZOOM, t);
    s.on_datagram(&reply(3, &[0x90, 0x51, 0xFF]), t);
    assert!(rc.try_recv().expect("answered").is_ok());
}

#[test]
fn three_sends_without_an_answer_are_a_timeout() {
    let t = Instant::now();
    let w = ack_wait(TIMEOUT);
    let mut s = Sequence::new(TIMEOUT);
    let (a, mut ra) = request(&RECALL, false);
    s.submit(a, t);
    for i in 1..=3u32 {
        assert_eq!(sent(&mut s).len(), 1, "send {i}");
        s.expire(t + w * i);
    }
    assert_eq!(code(&mut ra), Some(ErrorCode::DeviceTimeout));
    assert!(sent(&mut s).is_empty(), "never a fourth time");
    assert!(s.ready_for(false));
}

#[test]
fn a_camera_that_forgot_the_numbers_is_reset_and_the_command_goes_again() {
    let t = Instant::now();
    let mut s = Sequence::new(TIMEOUT);
    for _ in 0..4 {
        let (a, _ra) = request(&ZOOM, false);
        s.submit(a, t);
        let seq = sent(&mut s)[0].1;
        s.on_datagram(&reply(seq, &[0x90, 0x51, 0xFF]), t);
    }
    // The camera restarted: it knows no number until it is reset.
    let (b, mut rb) = request(&RECALL, false);
    s.submit(b, t);
    assert_eq!(sent(&mut s)[0].1, 5);
    s.on_datagram(&header::encode(CONTROL_REPLY, 5, &BAD_SEQUENCE), t);
    assert_eq!(sent(&mut s), [(CONTROL, 0, RESET.to_vec())]);
    assert!(!s.ready_for(false) && rb.try_recv().is_err());
    s.on_datagram(&header::encode(CONTROL_REPLY, 0, &RESET), t);
    assert_eq!(sent(&mut s), [(COMMAND, 6, RECALL.to_vec())], "again, under a fresh number");
    s.on_datagram(&reply(6, &[0x90, 0x41, 0xFF]), t);
    s.on_datagram(&reply(6, &[0x90, 0x51, 0xFF]), t);
    assert!(rb.try_recv().expect("answered").is_ok());
}

#[test]
fn an_unanswered_reset_loses_the_link_and_the_held_command_was_not_taken() {
    let t = Instant::now();
    let w = ack_wait(TIMEOUT);
    let mut s = Sequence::new(TIMEOUT);
    let mut ra = send_one(&mut s, &RECALL, t);
    s.on_datagram(&header::encode(CONTROL_REPLY, 1, &BAD_SEQUENCE), t);
    for i in 1..=3u32 {
        s.expire(t + w * i);
    }
    assert_eq!(sent(&mut s).iter().filter(|(k, _, _)| *k == CONTROL).count(), 3);
    assert_eq!(code(&mut ra), Some(ErrorCode::DeviceUnreachable));
    assert_eq!(s.failed().map(|e| e.code()), Some(ErrorCode::DeviceUnreachable));
}

#[test]
fn errors_map_to_codes_and_buffer_full_goes_again_under_a_new_number() {
    let t = Instant::now();
    let mut s = Sequence::new(TIMEOUT);
    let mut ra = send_one(&mut s, &RECALL, t);
    s.on_datagram(&reply(1, &[0x90, 0x60, 0x02, 0xFF]), t);
    assert_eq!(code(&mut ra), Some(ErrorCode::DeviceRejected));
    let (b, mut rb) = request(&RECALL, false);
    s.submit(b, t);
    for (i, seq) in [2, 3, 4].into_iter().enumerate() {
        assert_eq!(sent(&mut s)[0].1, seq);
        s.on_datagram(&reply(seq, &[0x90, 0x60, 0x03, 0xFF]), t);
        s.expire(t + FRAME * (u32::try_from(i).unwrap_or(0) + 1));
    }
    assert_eq!(code(&mut rb), Some(ErrorCode::DeviceRejected), "three tries in all");
    let (c, mut rc) = request(&[0x81, 0x09, 0x04, 0x00, 0xFF], true);
    s.submit(c, t);
    assert_eq!(sent(&mut s)[0].0, INQUIRY);
    s.on_datagram(&header::encode(CONTROL_REPLY, 5, &BAD_MESSAGE), t);
    assert_eq!(code(&mut rc), Some(ErrorCode::DeviceRejected));
    // Garbage is no message and changes nothing.
    s.on_datagram(&[0x12, 0x34, 0xFF], t);
    assert!(s.ready_for(false));
}

#[test]
fn a_lost_link_ends_sent_commands_as_unknown_and_unsent_ones_as_unreachable() {
    let t = Instant::now();
    let mut s = Sequence::new(TIMEOUT);
    let (a, mut ra) = request(&RECALL, false);
    s.submit(a, t);
    s.on_datagram(&reply(1, &[0x90, 0x41, 0xFF]), t);
    let (b, mut rb) = request(&ZOOM, false);
    s.submit(b, t);
    s.on_datagram(&reply(2, &[0x90, 0x60, 0x03, 0xFF]), t);
    s.lost(&IfError::with(ErrorCode::DeviceUnreachable, "refused"));
    assert_eq!(code(&mut ra), Some(ErrorCode::DeviceTimeout));
    assert_eq!(code(&mut rb), Some(ErrorCode::DeviceUnreachable));
}

#[test]
fn a_reset_ends_what_executed_under_the_old_numbers_and_none_is_given_twice() {
    let t = Instant::now();
    let mut s = Sequence::new(TIMEOUT);
    let mut ra = send_one(&mut s, &RECALL, t);
    s.on_datagram(&reply(1, &[0x90, 0x41, 0xFF]), t);
    let _rb = send_one(&mut s, &ZOOM, t);
    s.on_datagram(&header::encode(CONTROL_REPLY, 2, &BAD_SEQUENCE), t);
    assert_eq!(code(&mut ra), Some(ErrorCode::DeviceTimeout), "the recall's outcome is unknown now");
    s.on_datagram(&header::encode(CONTROL_REPLY, 0, &RESET), t);
    assert_eq!(sent(&mut s).last().map(|m| m.1), Some(3), "the zoom again, under a number never given");
    // A late completion under the old number 1 is nobody's.
    s.on_datagram(&reply(1, &[0x90, 0x51, 0xFF]), t);
    assert!(!s.ready_for(false), "the zoom still waits for its own answer");
    s.on_datagram(&reply(3, &[0x90, 0x51, 0xFF]), t);
    assert!(s.ready_for(false));
}

#[test]
fn an_emergency_goes_while_both_sockets_execute() {
    let t = Instant::now();
    let mut s = Sequence::new(TIMEOUT);
    let mut answers = Vec::new();
    for seq in 1..=2 {
        let (a, ra) = request(&RECALL, false);
        answers.push(ra);
        s.submit(a, t);
        sent(&mut s);
        s.on_datagram(&reply(seq, &[0x90, 0x40 + u8::try_from(seq).unwrap_or(1), 0xFF]), t);
    }
    assert!(!s.ready_for(false) && s.ready_for(true));
    let stop = [0x81, 0x01, 0x06, 0x01, 0x01, 0x01, 0x03, 0x03, 0xFF];
    let (answer, mut rstop) = oneshot::channel();
    s.submit(Request { packet: stop.to_vec(), inquiry: false, urgent: true, answer }, t);
    assert_eq!(sent(&mut s)[0], (COMMAND, 3, stop.to_vec()));
    // Buffer full: the recall running longest is cancelled, and the stop takes its socket.
    s.on_datagram(&reply(3, &[0x90, 0x60, 0x03, 0xFF]), t);
    assert_eq!(sent(&mut s), [(COMMAND, 4, vec![0x81, 0x21, 0xFF])], "cancel socket 1");
    s.on_datagram(&reply(4, &[0x90, 0x61, 0x04, 0xFF]), t);
    assert_eq!(code(&mut answers[0]), Some(ErrorCode::DeviceRejected), "the recall in socket 1 was cancelled");
    s.expire(t + FRAME);
    assert_eq!(sent(&mut s), [(COMMAND, 5, stop.to_vec())], "the stop again, a frame later");
    s.on_datagram(&reply(5, &[0x90, 0x41, 0xFF]), t + FRAME);
    s.on_datagram(&reply(5, &[0x90, 0x51, 0xFF]), t + FRAME);
    assert!(rstop.try_recv().expect("answered").is_ok());
    assert!(answers[1].try_recv().is_err(), "the other recall still executes");
}

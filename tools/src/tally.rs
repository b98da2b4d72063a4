//! `ifctl tally`: what an agent's signed tally topic says (the retained latest, and every change while
//! listening), each message checked against the agent's pinned key. A tally signed by another key is
//! counted, never shown, and makes the command fail once the genuine one is printed: a panel on the
//! broker cannot make the operator believe a camera is off air.

use std::time::Duration;

use if_protocol::messages::Tally;
use if_protocol::topics::{self, Kind};
use if_protocol::{ErrorCode, IfError};

use crate::message::Target;
use crate::retained::{Checked, check};

/// What the topic said while listening.
#[derive(Debug, Default)]
struct Seen {
    /// The newest genuine tally (by its signed time).
    latest: Option<Tally>,
    forged: usize,
    unreadable: Option<String>,
}

impl Seen {
    fn fold(&mut self, checked: Checked<Tally>) {
        match checked {
            Checked::Genuine(t) if self.latest.as_ref().is_none_or(|old| t.at_ms >= old.at_ms) => self.latest = Some(t),
            Checked::Genuine(_) => {}
            Checked::Forged => self.forged += 1,
            Checked::Unreadable(why) => self.unreadable = Some(why),
        }
    }
}

fn inputs(list: &[u32]) -> String {
    if list.is_empty() {
        return "-".into();
    }
    list.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Listens for `wait`, prints the newest genuine tally, and fails if any message was forged.
pub async fn run(target: &Target, wait: Duration, json: bool) -> Result<(), IfError> {
    let topic = topics::of(&target.site, &target.agent, Kind::Tally);
    let mut seen = Seen::default();
    let (broker, tls, key) = (&target.broker, target.tls.as_ref(), &target.key);
    crate::retained::listen(broker, tls, "tally", topic, wait, |topic, payload| seen.fold(check(key, topic, payload)))
        .await?;
    let agent = format!("{}/{}", target.site, target.agent);
    let age_ms = |t: &Tally| if_edge::clock::Clock::system_ms().saturating_sub(t.at_ms);
    match (&seen.latest, json) {
        (Some(t), true) => {
            let mut v = serde_json::to_value(t).unwrap_or_default();
            v["agent"] = agent.as_str().into();
            v["verified"] = true.into();
            v["age_ms"] = age_ms(t).into();
            println!("{v}");
        }
        (Some(t), false) => println!(
            "{agent}  {}  program {}  preview {}  ({} s ago)",
            t.capability,
            inputs(&t.program),
            inputs(&t.preview),
            age_ms(t) / 1000
        ),
        (None, true) => println!("null"),
        (None, false) => match &seen.unreadable {
            Some(why) => println!("{agent}: signed by its key, but not a tally this ifctl reads: {why}"),
            None => println!("{agent}: no tally published (no switcher reporting tally)"),
        },
    }
    if seen.forged > 0 {
        return Err(IfError::format(
            ErrorCode::InvalidSignature,
            format_args!("{} tally message(s) not signed by {agent}'s pinned key were ignored", seen.forged),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_agents_signature_makes_a_tally_and_the_newest_wins() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let signer = if_edge::attest::Signer::new(key.clone());
        let topic = topics::of("s", "a", Kind::Tally);
        let tally = |digits: &str, at| serde_json::to_vec(&Tally::from_digits("vmix", digits, at)).unwrap_or_default();
        let mut seen = Seen::default();
        seen.fold(check(&key.verifying_key(), &topic, &signer.publication(&topic, tally("120", 2))));
        seen.fold(check(&key.verifying_key(), &topic, &signer.publication(&topic, tally("210", 1))));
        let latest = seen.latest.as_ref().map(|t| (t.program.clone(), t.preview.clone()));
        assert_eq!(latest, Some((vec![1], vec![2])), "a late older tally does not replace the newer");

        let other = if_edge::attest::Signer::new(ed25519_dalek::SigningKey::from_bytes(&[8; 32]));
        seen.fold(check(&key.verifying_key(), &topic, &other.publication(&topic, tally("001", 9))));
        assert_eq!(seen.forged, 1);
        assert_eq!(seen.latest.as_ref().map(|t| t.at_ms), Some(2), "a forgery is never shown");
        let elsewhere = topics::of("s", "b", Kind::Tally);
        let moved = signer.publication(&elsewhere, tally("001", 9));
        assert!(matches!(check::<Tally>(&key.verifying_key(), &topic, &moved), Checked::Forged), "another topic's");
        let newer = signer.publication(&topic, br#"{"lamps":[]}"#.to_vec());
        assert!(matches!(check::<Tally>(&key.verifying_key(), &topic, &newer), Checked::Unreadable(_)));
        assert_eq!(inputs(&[]), "-");
        assert_eq!(inputs(&[1, 3]), "1,3");
    }
}

//! The binding commands, `binding.add` and `binding.remove` (sent to `edge.policy` by a policy key), and
//! the lookups the agent makes when a button is pressed or a tally changes (an `impl Policy` here).
//!
//! | action | arguments |
//! |---|---|
//! | `binding.add` (a button) | `name`, `node` (the rack node's capability), `input`, `talent`, `capability`, `action`, `scope`, `hazards` (comma list, optional), `args` (`key=value` comma list, optional: whole numbers and `true`/`false` are typed, the rest is text) |
//! | `binding.add` (a lamp) | `name`, `node`, `lamp`, `follow` (the switcher's capability), `follow_input` (from 1) |
//! | `binding.add` (a camera's tally lamp) | `name`, `node` (the camera), `camera` (`true`), `follow`, `follow_input` |
//! | `binding.add` (a tally display) | `name`, `node` (the `tsl-umd` output), `display` (its index), `follow`, `follow_input`, `label` (optional) |
//! | `binding.remove` | `name` |
//!
//! A binding names a talent but is not a grant: every press is authorized as that talent when it happens.

use if_protocol::IfError;
use if_protocol::envelope::{ArgValue, Args, EnvelopeBody, Hazards};
use if_protocol::link::{MAX_INPUTS, MAX_LAMPS};
use if_protocol::policy::{Binding, Rule};

use super::commands::{bad, text};

/// What a binding command does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Set {
    /// A binding, replacing an earlier one of the same name.
    Binding(Box<Binding>),
    /// The binding of this name is removed.
    Unbind(if_protocol::envelope::Name),
}

fn number(body: &EnvelopeBody, key: &str, range: std::ops::Range<i64>) -> Result<i64, IfError> {
    match body.args.get(key) {
        Some(ArgValue::Int(v)) if range.contains(v) => Ok(*v),
        _ => Err(bad(format_args!("{}: {key} must be a number {}-{}", body.action, range.start, range.end - 1))),
    }
}

fn token<const N: usize>(what: &str, v: &str) -> Result<heapless::String<N>, IfError> {
    v.try_into().map_err(|_| bad(format_args!("{what} is longer than {N} bytes")))
}

fn capability(body: &EnvelopeBody, key: &str) -> Result<heapless::String<128>, IfError> {
    let id = text(body, key)?;
    if_protocol::envelope::capability_name(id)?;
    token(key, id)
}

/// `key=value,key=value` as typed arguments.
pub fn parse_args(list: &str) -> Result<Args, IfError> {
    let mut args = Args::new();
    for kv in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| bad(format_args!("args: {kv:?} is not key=value")))?;
        let value = ArgValue::typed(v).map_err(|e| bad(format_args!("args: {k}: {}", e.detail())))?;
        args.insert(k.trim(), value)?;
    }
    Ok(args)
}

/// The binding `body` sets or removes.
pub fn decide(body: &EnvelopeBody) -> Result<Set, IfError> {
    let name = text(body, "name")?;
    let name = name.try_into().map_err(|_| bad(format_args!("binding name {name:?} is not a valid name")))?;
    if body.action.as_str() == "binding.remove" {
        return Ok(Set::Unbind(name));
    }
    let node = capability(body, "node")?;
    let camera = body.args.get("camera").is_some();
    let rule = match (body.args.get("input"), body.args.get("lamp"), body.args.get("display")) {
        _ if camera && !matches!(body.args.get("camera"), Some(ArgValue::Bool(true))) => {
            return Err(bad(format_args!("binding.add: camera must be true")));
        }
        (None, None, None) if camera => {
            Rule::Camera { source: capability(body, "follow")?, input: number(body, "follow_input", 1..10_000)? as u32 }
        }
        _ if camera => {
            return Err(bad(format_args!("binding.add: a camera's tally lamp takes no input, lamp or display")));
        }
        (Some(_), None, None) => {
            let talent = text(body, "talent")?;
            let mut hazards = Hazards::NONE;
            let listed = body.args.get("hazards").map_or(Ok(""), |_| text(body, "hazards"))?;
            for h in listed.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                hazards = hazards.union(Hazards::by_name(h).ok_or_else(|| bad(format_args!("unknown hazard {h:?}")))?);
            }
            let args = body.args.get("args").map_or(Ok(""), |_| text(body, "args"))?;
            Rule::Press {
                input: number(body, "input", 0..MAX_INPUTS as i64)? as u8,
                talent: talent.try_into().map_err(|_| bad(format_args!("talent {talent:?} is not a valid name")))?,
                capability: capability(body, "capability")?,
                action: token("action", text(body, "action")?)?,
                args: parse_args(args)?,
                scope: token("scope", text(body, "scope")?)?,
                hazards,
            }
        }
        (None, Some(_), None) => Rule::Tally {
            lamp: number(body, "lamp", 0..MAX_LAMPS as i64)? as u8,
            source: capability(body, "follow")?,
            input: number(body, "follow_input", 1..10_000)? as u32,
        },
        (None, None, Some(_)) => Rule::Umd {
            display: number(body, "display", 0..0xFFFF)? as u16,
            source: capability(body, "follow")?,
            input: number(body, "follow_input", 1..10_000)? as u32,
            // A label of digits ("2") arrives typed as a number: it is still what the display reads.
            label: match body.args.get("label") {
                None => heapless::String::new(),
                Some(ArgValue::Text(t)) => token("label", t.as_str())?,
                Some(ArgValue::Int(i)) => token("label", &i.to_string())?,
                Some(ArgValue::Bool(b)) => token("label", &b.to_string())?,
            },
        },
        _ => {
            return Err(bad(format_args!(
                "binding.add: give one of input (a button), lamp (a lamp), display (a tally display) or camera"
            )));
        }
    };
    Ok(Set::Binding(Box::new(Binding { name, node, rule })))
}

/// One line about a binding, for the witness and for `ifctl binding list`.
pub fn describe(b: &Binding) -> String {
    match &b.rule {
        Rule::Press { input, talent, capability, action, .. } => {
            format!("binding {}: input {input} of {} runs {action} on {capability} as {talent}", b.name, b.node)
        }
        Rule::Tally { lamp, source, input } => {
            format!("binding {}: lamp {lamp} of {} follows input {input} of {source}", b.name, b.node)
        }
        Rule::Camera { source, input } => {
            format!("binding {}: the tally lamp of {} follows input {input} of {source}", b.name, b.node)
        }
        Rule::Umd { display, source, input, label } => {
            format!(
                "binding {}: display {display} of {} follows input {input} of {source} as {label:?}",
                b.name, b.node
            )
        }
    }
}

/// The lookups the agent makes: kept here, beside the commands that make bindings.
impl super::Policy {
    /// How many times the bindings changed since the agent started.
    pub fn bindings_changed(&self) -> u64 {
        self.bindings_changed
    }

    /// Every binding, by name.
    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.bindings.values()
    }

    /// The button bindings of input `input` on rack node `node`.
    pub fn presses(&self, node: &str, input: u8) -> Vec<Binding> {
        self.bindings
            .values()
            .filter(|b| b.node.as_str() == node && matches!(b.rule, Rule::Press { input: i, .. } if i == input))
            .cloned()
            .collect()
    }

    /// The bindings that follow `source`'s tally (lamps, cameras' lamps, tally displays).
    pub fn following(&self, source: &str) -> Vec<Binding> {
        let follows = |r: &Rule| match r {
            Rule::Tally { source: s, .. } | Rule::Camera { source: s, .. } | Rule::Umd { source: s, .. } => {
                s.as_str() == source
            }
            Rule::Press { .. } => false,
        };
        self.bindings.values().filter(|b| follows(&b.rule)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::commands::tests::command;
    use if_protocol::ErrorCode;

    fn t(s: &str) -> ArgValue {
        ArgValue::Text(s.try_into().expect("short"))
    }

    #[test]
    fn a_button_and_a_lamp_binding_are_read_from_their_arguments() {
        let press = command(
            "binding.add",
            &[
                ("name", t("cut-button")),
                ("node", t("if://capability/rack.one")),
                ("input", ArgValue::Int(3)),
                ("talent", t("desk")),
                ("capability", t("if://capability/vmix")),
                ("action", t("cut")),
                ("scope", t("studio:control")),
                ("hazards", t("on_air")),
                ("args", t("Input=2, Duration=500, Mix=true, Name=cam one")),
            ],
        );
        let Ok(Set::Binding(b)) = decide(&press) else { panic!("a binding") };
        let Rule::Press { input, hazards, args, .. } = &b.rule else { panic!("a press") };
        assert_eq!((*input, *hazards), (3, Hazards::ON_AIR));
        assert_eq!(args.get("Input"), Some(&ArgValue::Int(2)));
        assert_eq!(args.get("Mix"), Some(&ArgValue::Bool(true)));
        assert_eq!(args.get("Name"), Some(&t("cam one")));
        assert!(describe(&b).contains("input 3 of if://capability/rack.one runs cut"));

        let lamp = command(
            "binding.add",
            &[
                ("name", t("cam1-tally")),
                ("node", t("if://capability/rack.one")),
                ("lamp", ArgValue::Int(0)),
                ("follow", t("if://capability/vmix")),
                ("follow_input", ArgValue::Int(1)),
            ],
        );
        let Ok(Set::Binding(b)) = decide(&lamp) else { panic!("a binding") };
        assert_eq!(
            b.rule,
            Rule::Tally { lamp: 0, source: "if://capability/vmix".try_into().expect("short"), input: 1 }
        );
        let umd = command(
            "binding.add",
            &[
                ("name", t("cam2-umd")),
                ("node", t("if://capability/umd")),
                ("display", ArgValue::Int(254)),
                ("follow", t("if://capability/vmix")),
                ("follow_input", ArgValue::Int(2)),
                ("label", t("CAM 2 þ")),
            ],
        );
        let Ok(Set::Binding(b)) = decide(&umd) else { panic!("a binding") };
        let Rule::Umd { display, input, label, .. } = &b.rule else { panic!("a display") };
        assert_eq!((*display, *input, label.as_str()), (254, 2, "CAM 2 þ"));
        assert!(describe(&b).contains("display 254 of if://capability/umd follows input 2"), "{}", describe(&b));
        let cam = command(
            "binding.add",
            &[
                ("name", t("cam1-lamp")),
                ("node", t("if://capability/camera.one")),
                ("camera", ArgValue::Bool(true)),
                ("follow", t("if://capability/vmix")),
                ("follow_input", ArgValue::Int(1)),
            ],
        );
        let Ok(Set::Binding(b)) = decide(&cam) else { panic!("a binding") };
        assert!(matches!(b.rule, Rule::Camera { input: 1, .. }), "{b:?}");
        assert!(describe(&b).contains("the tally lamp of if://capability/camera.one follows input 1"));
        let Ok(Set::Unbind(n)) = decide(&command("binding.remove", &[("name", t("cam1-tally"))])) else { panic!() };
        assert_eq!(n.as_str(), "cam1-tally");
    }

    #[test]
    fn malformed_bindings_say_what_is_wrong() {
        let base = [("name", t("b")), ("node", t("if://capability/rack.one"))];
        let with = |extra: &[(&str, ArgValue)]| {
            let mut a = base.to_vec();
            a.extend(extra.iter().cloned());
            command("binding.add", &a)
        };
        let cases = [
            with(&[]),
            with(&[("input", ArgValue::Int(1)), ("lamp", ArgValue::Int(1))]),
            with(&[("lamp", ArgValue::Int(1)), ("display", ArgValue::Int(1))]),
            with(&[("camera", ArgValue::Bool(true)), ("lamp", ArgValue::Int(1))]),
            with(&[("camera", t("yes")), ("follow", t("if://capability/vmix")), ("follow_input", ArgValue::Int(1))]),
            with(&[
                ("display", ArgValue::Int(65_535)),
                ("follow", t("if://capability/vmix")),
                ("follow_input", ArgValue::Int(1)),
            ]),
            with(&[
                ("display", ArgValue::Int(1)),
                ("follow", t("if://capability/vmix")),
                ("follow_input", ArgValue::Int(1)),
                ("label", t("a label far longer than any display shows")),
            ]),
            with(&[("input", ArgValue::Int(16)), ("talent", t("desk"))]),
            with(&[("input", ArgValue::Int(1)), ("talent", t("desk")), ("capability", t("vmix"))]),
            with(&[
                ("lamp", ArgValue::Int(1)),
                ("follow", t("if://capability/vmix")),
                ("follow_input", ArgValue::Int(0)),
            ]),
            with(&[
                ("input", ArgValue::Int(1)),
                ("talent", t("desk")),
                ("capability", t("if://capability/vmix")),
                ("action", t("cut")),
                ("scope", t("s")),
                ("args", t("Input")),
            ]),
        ];
        for c in &cases {
            let e = decide(c).expect_err("refused");
            assert_eq!(e.code(), ErrorCode::InvalidEnvelope, "{e}");
        }
        let nameless = command("binding.add", &[("name", t("not a name!"))]);
        assert_eq!(decide(&nameless).expect_err("refused").code(), ErrorCode::InvalidEnvelope);
    }
}

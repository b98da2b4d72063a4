//! What vMix says about itself, read as plain values: the activators its `SUBSCRIBE ACTS` pushes that
//! are on, and the input titles of its XML. Pure functions, so the reading is tested without a socket.

/// vMix's activators that are on, by name: an input-based one with its input, a state with 1.
pub type Activators = std::collections::BTreeMap<String, u32>;

/// The activators kept: overlays, the other mixes, and the production states. `Input` and
/// `InputPreview` are the tally itself.
fn kept(name: &str) -> bool {
    let mix = |p: &str| name.strip_prefix(p).is_some_and(|n| matches!(n, "2" | "3" | "4"));
    matches!(name, "Overlay1" | "Overlay2" | "Overlay3" | "Overlay4")
        || mix("InputMix")
        || mix("InputPreviewMix")
        || matches!(name, "Recording" | "Streaming" | "External" | "MultiCorder" | "FadeToBlack")
}

/// Applies the text of one `ACTS OK` line (`Overlay1 3 1`, `Recording 0`); whether what is on changed.
pub fn apply_acts(on: &mut Activators, text: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (name, input, value) = match words.as_slice() {
        [name, input, value] => (*name, input.parse::<u32>().ok(), *value),
        [name, value] => (*name, Some(1), *value),
        _ => return false,
    };
    let (Some(input), true) = (input, kept(name)) else { return false };
    let before = on.get(name).copied();
    match value {
        "1" => {
            on.insert(name.to_string(), input);
        }
        "0" if before == Some(input) => {
            on.remove(name);
        }
        _ => {}
    }
    on.get(name).copied() != before
}

/// The most inputs whose titles are kept, and the longest title kept (so that a tally with every title
/// stays far below the broker's packet size).
pub(crate) const MAX_TITLES: usize = 256;
pub(crate) const MAX_TITLE: usize = 64;
/// The longest XML document whose titles are read.
pub(crate) const MAX_XML: usize = 4 * 1024 * 1024;

/// The `title` of each `<input ... number="N" ... title="...">` in vMix's XML, by number. A scan for
/// the two attributes, not a full XML parser: vMix writes them on one element each, entities escaped.
pub fn titles(doc: &str) -> std::collections::BTreeMap<u32, String> {
    let attr = |el: &str, name: &str| -> Option<String> {
        let at = el.find(&format!(" {name}=\""))? + name.len() + 3;
        let end = el[at..].find('"')?;
        Some(unescape(&el[at..at + end]))
    };
    doc.split("<input ")
        .skip(1)
        .filter_map(|el| {
            let el = format!(" {}", &el[..el.find('>').unwrap_or(el.len())]);
            let n = attr(&el, "number")?.parse().ok()?;
            Some((n, attr(&el, "title")?.chars().take(MAX_TITLE).collect()))
        })
        .take(MAX_TITLES)
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activators_follow_acts_lines_and_only_the_kept_ones_count() {
        let mut on = Activators::new();
        assert!(apply_acts(&mut on, "Overlay1 3 1"));
        assert!(apply_acts(&mut on, "Recording 1"));
        assert!(!apply_acts(&mut on, "Recording 1"), "no change");
        assert!(!apply_acts(&mut on, "Overlay1 5 0"), "another input going off leaves overlay 1 on 3");
        assert!(apply_acts(&mut on, "InputMix2 4 1"));
        assert!(!apply_acts(&mut on, "InputVolume 2 0.5"), "not kept");
        assert!(!apply_acts(&mut on, "Input 2 1"), "the tally itself");
        assert!(!apply_acts(&mut on, "Overlay9 1 1") && !apply_acts(&mut on, "garbage") && !apply_acts(&mut on, ""));
        assert_eq!(on, [("InputMix2".into(), 4), ("Overlay1".into(), 3), ("Recording".into(), 1)].into());
        assert!(apply_acts(&mut on, "Overlay1 3 0") && apply_acts(&mut on, "Recording 0"));
        assert_eq!(on.len(), 1);
    }

    #[test]
    fn input_titles_come_from_the_xml_by_number() {
        let doc = r#"<vmix><version>27</version><inputs><input key="a" number="1" type="Capture" title="Cam &amp; Host" shortTitle="C">x</input><input key="b" type="Blank" number="2" title="Blank">y</input><input key="c" title="no number"/></inputs><overlays/></vmix>"#;
        let t = titles(doc);
        assert_eq!(t.get(&1).map(String::as_str), Some("Cam & Host"));
        assert_eq!(t.get(&2).map(String::as_str), Some("Blank"));
        assert_eq!(t.len(), 2, "an input without a number is skipped");
        assert!(titles("").is_empty() && titles("<input number=\"x\" title=\"y\">").is_empty());
        let long = format!("<input number=\"3\" title=\"{}\">", "z".repeat(500));
        assert_eq!(titles(&long)[&3].len(), MAX_TITLE);
    }
}

//! A vMix TCP API simulator (docs/PROTOCOLS.md, "vMix TCP API") on a real socket.
//!
//! It greets with `VERSION OK 27.0.0.49`, answers `FUNCTION`, `TALLY`, `SUBSCRIBE TALLY|ACTS`, `XML` (with
//! input titles `Camera N`, or those `AddInput` and `SetInputName` gave) and `QUIT` line by line, keeps a small switcher state (inputs, program,
//! preview, overlay 1) so that `Cut` and `PreviewInput` change the tally, and sends `TALLY OK ...` and
//! `ACTS OK ...` (`Input`, `InputPreview`, `Overlay1`, `Recording`, `Streaming`) to subscribers on every
//! change. Every line it receives is
//! appended to the record file, for tests to assert on what the "hardware" saw.
//!
//! Faults come from the fault file, read again for every connection and every line, so a test can change
//! them while clients are connected: `refuse` (close at once, also on a connected client's next line),
//! `http` (answer like vMix's web controller),
//! `hang` (read but never answer), `garbage` (answer with noise), `slow` (answer after 2 s), `er` (every
//! FUNCTION fails), `drop` (close the connection instead of answering), `delay MS` (answer after MS).
//! Empty or missing: healthy. Next to the record, `RECORD.timeline` lists what was received (`rx`) and
//! answered (`tx`) in order, with the time in microseconds since the Unix epoch.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, broadcast};

use crate::Files;

#[derive(Debug)]
struct Switcher {
    inputs: usize,
    /// Titles given by `AddInput` or `SetInputName`, by input number; the others read `Camera N`.
    titles: std::collections::BTreeMap<usize, String>,
    program: usize,
    preview: usize,
    /// The input on overlay 1, 0 for none.
    overlay1: usize,
}

impl Switcher {
    fn tally(&self) -> String {
        (1..=self.inputs)
            .map(|i| {
                if i == self.program {
                    '1'
                } else if i == self.preview {
                    '2'
                } else {
                    '0'
                }
            })
            .collect()
    }
}

fn fault(files: &Files) -> String {
    files.fault.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn record(files: &Files, line: &str) {
    if let Some(path) = &files.record {
        append(path, line);
        timeline(files, "rx", line);
    }
}

/// The order of what was received (`rx`) and answered (`tx`), in `RECORD.timeline`, each line as
/// `UNIX_MICROS rx|tx LINE`.
fn timeline(files: &Files, dir: &str, line: &str) {
    if let Some(path) = &files.record {
        let us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
        append(&path.with_extension("timeline"), &format!("{us} {dir} {line}"));
    }
}

fn append(path: &std::path::Path, line: &str) {
    use std::io::Write as _;
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

/// Serves on `listener` until the process ends.
pub async fn serve(listener: TcpListener, files: Files, inputs: usize) -> std::io::Result<()> {
    let state = Arc::new(Mutex::new(Switcher {
        inputs: inputs.max(2),
        titles: Default::default(),
        program: 1,
        preview: 2,
        overlay1: 0,
    }));
    let (changes, _) = broadcast::channel::<String>(64);
    loop {
        let (socket, _) = listener.accept().await?;
        let (state, files, changes) = (state.clone(), files.clone(), changes.clone());
        tokio::spawn(async move {
            let _ = client(socket, state, files, changes).await;
        });
    }
}

async fn client(
    socket: TcpStream,
    state: Arc<Mutex<Switcher>>,
    files: Files,
    changes: broadcast::Sender<String>,
) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    match fault(&files).as_str() {
        "refuse" => return Ok(()),
        "http" => {
            let (_, mut w) = socket.into_split();
            w.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await?;
            return Ok(());
        }
        _ => {}
    }
    let (r, mut w) = socket.into_split();
    // Lines are read (and recorded) as they arrive, apart from answering them, so the record shows a
    // client that sends before the previous answer came.
    let (arrived, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reader_files = files.clone();
    let reader = tokio::spawn(async move {
        let mut input = BufReader::new(r).lines();
        while let Ok(Some(line)) = input.next_line().await {
            let line = line.trim_end().to_string();
            record(&reader_files, &line);
            if arrived.send(line).is_err() {
                return;
            }
        }
    });
    let _reader = AbortOnDrop(reader);
    w.write_all(b"VERSION OK 27.0.0.49\r\n").await?;
    let mut subscribed: Option<broadcast::Receiver<String>> = None;
    let (mut tally_on, mut acts_on) = (false, false);
    loop {
        let line = tokio::select! {
            line = lines.recv() => match line { Some(l) => l, None => return Ok(()) },
            Some(change) = async { match subscribed.as_mut() { Some(rx) => rx.recv().await.ok(), None => std::future::pending().await } } => {
                if (change.starts_with("TALLY ") && tally_on) || (change.starts_with("ACTS ") && acts_on) {
                    w.write_all(format!("{change}\r\n").as_bytes()).await?;
                }
                continue;
            }
        };
        let fault = fault(&files);
        match fault.as_str() {
            "hang" => continue,
            "drop" | "refuse" => return Ok(()),
            "garbage" => {
                w.write_all(b"\x01\x02 ??? 42 !!\r\n").await?;
                continue;
            }
            "slow" => tokio::time::sleep(Duration::from_secs(2)).await,
            f if f.starts_with("delay ") => {
                let ms = f.trim_start_matches("delay ").trim().parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            _ => {}
        }
        let mut words = line.splitn(3, ' ');
        let answer = match (words.next().unwrap_or(""), words.next().unwrap_or("")) {
            ("FUNCTION", _) if fault == "er" => "FUNCTION ER Simulated failure".to_string(),
            ("FUNCTION", name) => {
                let query = words.next().unwrap_or("");
                function(&state, &changes, name, query).await
            }
            ("TALLY", _) => format!("TALLY OK {}", state.lock().await.tally()),
            ("SUBSCRIBE", what @ ("TALLY" | "ACTS")) => {
                if subscribed.is_none() {
                    subscribed = Some(changes.subscribe());
                }
                (tally_on, acts_on) = (tally_on || what == "TALLY", acts_on || what == "ACTS");
                format!("SUBSCRIBE OK {what}")
            }
            ("XML", _) => {
                let xml = {
                    let s = state.lock().await;
                    let inputs: String = (1..=s.inputs)
                        .map(|i| {
                            let title = s.titles.get(&i).cloned().unwrap_or_else(|| format!("Camera {i}"));
                            let title = title.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
                            format!(
                                "<input key=\"{i:08}\" number=\"{i}\" type=\"Capture\" title=\"{title}\" shortTitle=\"Cam {i}\">{title}</input>"
                            )
                        })
                        .collect();
                    format!(
                        "<vmix><version>27.0.0.49</version><inputs>{inputs}</inputs><tally>{}</tally></vmix>",
                        s.tally()
                    )
                };
                w.write_all(format!("XML {}\r\n{xml}\r\n", xml.len() + 2).as_bytes()).await?;
                continue;
            }
            ("QUIT", _) => return Ok(()),
            (cmd, _) => format!("{cmd} ER Unknown command"),
        };
        timeline(&files, "tx", &answer);
        w.write_all(format!("{answer}\r\n").as_bytes()).await?;
    }
}

/// Stops the reader task when the client ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The `Value=` of a query, URL-decoded.
fn value(query: &str) -> Option<String> {
    let raw = query.split('&').find_map(|kv| kv.strip_prefix("Value="))?;
    Some(percent_encoding::percent_decode_str(&raw.replace('+', " ")).decode_utf8_lossy().into_owned())
}

/// Runs one FUNCTION against the switcher state.
async fn function(state: &Mutex<Switcher>, changes: &broadcast::Sender<String>, name: &str, query: &str) -> String {
    let mut s = state.lock().await;
    let input = query.split('&').find_map(|kv| kv.strip_prefix("Input=")).and_then(|v| v.parse::<usize>().ok());
    let before = s.tally();
    let mut acts = Vec::new();
    match name {
        "Cut" | "Fade" => {
            (s.program, s.preview) = (s.preview, s.program);
        }
        "StartRecording" | "StopRecording" => acts.push(format!("Recording {}", u8::from(name == "StartRecording"))),
        "StartStreaming" | "StopStreaming" => acts.push(format!("Streaming {}", u8::from(name == "StartStreaming"))),
        "OverlayInput1In" => match input {
            Some(i) if (1..=s.inputs).contains(&i) => {
                s.overlay1 = i;
                acts.push(format!("Overlay1 {i} 1"));
            }
            _ => return "FUNCTION ER Input not found".to_string(),
        },
        "OverlayInput1Out" if s.overlay1 > 0 => {
            acts.push(format!("Overlay1 {} 0", s.overlay1));
            s.overlay1 = 0;
        }
        "PreviewInput" | "ActiveInput" => match input {
            Some(i) if (1..=s.inputs).contains(&i) => {
                if name == "PreviewInput" {
                    s.preview = i;
                } else {
                    s.program = i;
                }
            }
            _ => return "FUNCTION ER Input not found".to_string(),
        },
        // A new input at the end (`Value=Colour|Slate`: its title after the bar); vMix's tally grows.
        "AddInput" => {
            s.inputs += 1;
            let title = value(query).and_then(|v| v.split_once('|').map(|(_, t)| t.to_string()));
            let n = s.inputs;
            if let Some(t) = title {
                s.titles.insert(n, t);
            }
        }
        // A rename, of which vMix tells no subscriber.
        "SetInputName" => match (input, value(query)) {
            (Some(i), Some(v)) if (1..=s.inputs).contains(&i) => {
                s.titles.insert(i, v);
            }
            _ => return "FUNCTION ER Input not found".to_string(),
        },
        "SetText" | "OverlayInput1Out" => {}
        _ => return format!("FUNCTION ER Function {name} not found"),
    }
    if s.tally() != before {
        let _ = changes.send(format!("TALLY OK {}", s.tally()));
        let (program, preview) = (s.program, s.preview);
        acts.extend([format!("Input {program} 1"), format!("InputPreview {preview} 1")]);
    }
    for a in acts {
        let _ = changes.send(format!("ACTS OK {a}"));
    }
    "FUNCTION OK Completed".to_string()
}

//! A Blackmagic Videohub simulator (docs/PROTOCOLS.md, "Blackmagic Videohub Ethernet protocol") on a real socket.
//!
//! On connect it sends its prelude (preamble, device, labels, locks, routing, `END PRELUDE:`). A
//! `VIDEO OUTPUT ROUTING:` block is answered `ACK` and followed by a routing status block with the changes,
//! or `NAK` when a route names a missing input or output or an output locked by another client (`L`).
//! Several routes in one block apply together or not at all. `PING:` is answered `ACK`. Every block it
//! receives is appended to the record file as one line (`HEADER: line | line`).
//!
//! Faults, read again for every block from the fault file (one per line): `refuse` (close at once, also
//! on a connected client's next block), `hang` (never answer),
//! `nak` (answer NAK to everything), `lock N` (output N is locked by another client), `drop` (close the
//! connection instead of answering), `garbage` (answer with noise), `slow` (answer after 2 s).

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, broadcast};

use crate::Files;

#[derive(Debug)]
struct Router {
    routing: Vec<usize>,
    inputs: usize,
}

fn faults(files: &Files) -> Vec<String> {
    files
        .fault
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
        .unwrap_or_default()
}

fn locked(files: &Files) -> Vec<usize> {
    faults(files).iter().filter_map(|f| f.strip_prefix("lock ").and_then(|n| n.trim().parse().ok())).collect()
}

/// Serves on `listener` until the process ends.
pub async fn serve(listener: TcpListener, files: Files, size: usize) -> std::io::Result<()> {
    let router = Arc::new(Mutex::new(Router { routing: (0..size).collect(), inputs: size }));
    let (changes, _) = broadcast::channel::<String>(64);
    loop {
        let (socket, _) = listener.accept().await?;
        let (router, files, changes) = (router.clone(), files.clone(), changes.clone());
        tokio::spawn(async move {
            let _ = client(socket, router, files, changes).await;
        });
    }
}

async fn prelude(router: &Router, files: &Files) -> String {
    let n = router.routing.len();
    let mut out = String::from("PROTOCOL PREAMBLE:\nVersion: 2.8\n\nVIDEOHUB DEVICE:\nDevice present: true\n");
    out += &format!("Model name: Smart Videohub 12x12\nVideo inputs: {}\nVideo outputs: {n}\n\n", router.inputs);
    out += "INPUT LABELS:\n";
    for i in 0..router.inputs {
        out += &format!("{i} Input {}\n", i + 1);
    }
    out += "\nOUTPUT LABELS:\n";
    for o in 0..n {
        out += &format!("{o} Output {}\n", o + 1);
    }
    let locks = locked(files);
    out += "\nVIDEO OUTPUT LOCKS:\n";
    for o in 0..n {
        out += &format!("{o} {}\n", if locks.contains(&o) { "L" } else { "U" });
    }
    out += "\nVIDEO OUTPUT ROUTING:\n";
    for (o, i) in router.routing.iter().enumerate() {
        out += &format!("{o} {i}\n");
    }
    out + "\nEND PRELUDE:\n\n"
}

fn record(files: &Files, block: &[String]) {
    if let Some(path) = &files.record {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{}", block.join(" | "));
        }
    }
}

async fn client(
    socket: TcpStream,
    router: Arc<Mutex<Router>>,
    files: Files,
    changes: broadcast::Sender<String>,
) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    if faults(&files).iter().any(|f| f == "refuse") {
        return Ok(());
    }
    let (r, mut w) = socket.into_split();
    let mut lines = BufReader::new(r).lines();
    let hello = prelude(&*router.lock().await, &files).await;
    w.write_all(hello.as_bytes()).await?;
    let mut updates = changes.subscribe();
    let mut block: Vec<String> = Vec::new();
    loop {
        let line = tokio::select! {
            l = lines.next_line() => match l? { Some(l) => l, None => return Ok(()) },
            Ok(update) = updates.recv() => { w.write_all(update.as_bytes()).await?; continue; }
        };
        let line = line.trim_end().to_string();
        if !line.is_empty() {
            block.push(line);
            continue;
        }
        if block.is_empty() {
            continue;
        }
        let this = std::mem::take(&mut block);
        record(&files, &this);
        let f = faults(&files);
        if f.iter().any(|x| x == "hang") {
            continue;
        }
        if f.iter().any(|x| x == "drop" || x == "refuse") {
            return Ok(());
        }
        if f.iter().any(|x| x == "garbage") {
            w.write_all(b"\x1b%#?? NOISE\n\x7f\x01\n\n").await?;
            continue;
        }
        if f.iter().any(|x| x == "slow") {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
        let answer = match this[0].as_str() {
            "PING:" => "ACK\n\n".to_string(),
            "VIDEO OUTPUT ROUTING:" if f.iter().any(|x| x == "nak") => "NAK\n\n".to_string(),
            "VIDEO OUTPUT ROUTING:" => route(&router, &files, &this[1..], &changes).await,
            _ => "NAK\n\n".to_string(),
        };
        w.write_all(answer.as_bytes()).await?;
    }
}

/// Applies every route of a block, or none.
async fn route(router: &Mutex<Router>, files: &Files, lines: &[String], changes: &broadcast::Sender<String>) -> String {
    let mut r = router.lock().await;
    let locks = locked(files);
    let mut wanted = Vec::new();
    for l in lines {
        let mut w = l.split_whitespace().map(|x| x.parse::<usize>());
        match (w.next(), w.next()) {
            (Some(Ok(o)), Some(Ok(i))) if o < r.routing.len() && i < r.inputs && !locks.contains(&o) => {
                wanted.push((o, i))
            }
            _ => return "NAK\n\n".to_string(),
        }
    }
    for (o, i) in &wanted {
        r.routing[*o] = *i;
    }
    let mut status = String::from("VIDEO OUTPUT ROUTING:\n");
    for (o, i) in &wanted {
        status += &format!("{o} {i}\n");
    }
    status += "\n";
    let _ = changes.send(status);
    "ACK\n\n".to_string()
}

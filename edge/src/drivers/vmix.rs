//! `vmix-tcp`: the vMix TCP API (docs/PROTOCOLS.md), one request in flight, tally by subscription.
//!
//! One task owns the connection. It checks the greeting (a web-controller port answers HTTP and is
//! reported as "not a vMix TCP API endpoint"), subscribes to tally, reads the input titles from vMix's
//! XML and the current tally (resync) after every connect (the titles again whenever inputs come or go),
//! and then sends one request at a time, as vMix asks: the next goes only after the answer to the
//! previous one. Unsolicited `TALLY OK` lines are tally changes, published through
//! [`DriverContext`](super::DriverContext). A request whose answer does not come in time is
//! DEVICE_TIMEOUT, and the connection is dropped and made again: a late answer must never be taken for
//! the next request's. While the device cannot be reached, requests fail at once with DEVICE_UNREACHABLE
//! and the task reconnects on the manifest's backoff schedule (jittered).
//!
//! Actions map to vMix functions by name: `cut` -> `FUNCTION Cut`, `preview_input` with `Input=3` ->
//! `FUNCTION PreviewInput Input=3`; every argument goes into the query string, URL-encoded.

use super::supervisor::{Device, Refusable, supervise};
use crate::backoff::Backoff;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use if_protocol::envelope::{ArgValue, EnvelopeBody};
use if_protocol::{ErrorCode, IfError};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LinesCodec};

use super::{Driver, HealthFuture};
use super::{DriverContext, Tally};
use state::{Activators, MAX_XML, apply_acts, titles};

mod state;
use crate::capability::OutcomeFuture;
use crate::capability::Plan;

/// The name manifests use.
pub const DRIVER: &str = "vmix-tcp";

/// Longest line accepted from vMix.
const MAX_LINE: usize = 64 * 1024;

struct Request {
    line: String,
    command: &'static str,
    answer: oneshot::Sender<Result<String, IfError>>,
}

impl Refusable for Request {
    fn refuse(self, why: IfError) {
        let _ = self.answer.send(Err(why));
    }
}

/// The driver: a handle on the connection task.
#[derive(Debug)]
pub struct Vmix {
    requests: mpsc::Sender<Request>,
    connected: Arc<AtomicBool>,
    endpoint: String,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

fn unreachable(endpoint: &str, why: impl std::fmt::Display) -> IfError {
    IfError::format(ErrorCode::DeviceUnreachable, format_args!("vMix at {endpoint}: {why}"))
}

impl Vmix {
    /// Starts the connection task for `host:port`.
    pub fn start(addr: String, timeout: Duration, backoff: Backoff, capability: String, ctx: DriverContext) -> Self {
        let (requests, rx) = mpsc::channel(64);
        let connected = Arc::new(AtomicBool::new(false));
        let task = Connection {
            addr: addr.clone(),
            timeout,
            capability,
            ctx,
            connected: connected.clone(),
            labels: Default::default(),
            state: Default::default(),
        };
        tokio::spawn(supervise(task, backoff, rx));
        Vmix { requests, connected, endpoint: addr }
    }

    async fn request(&self, command: &'static str, line: String) -> Result<String, IfError> {
        let (answer, wait) = oneshot::channel();
        self.requests
            .send(Request { line, command, answer })
            .await
            .map_err(|_| unreachable(&self.endpoint, "the connection task stopped"))?;
        wait.await.map_err(|_| unreachable(&self.endpoint, "the connection task stopped"))?
    }
}

/// `preview_input` -> `PreviewInput`.
fn function_name(action: &str) -> String {
    action
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect()
}

/// The `FUNCTION` line of a command.
pub fn function_line(body: &EnvelopeBody) -> String {
    let query: Vec<String> = body
        .args
        .iter()
        .map(|a| {
            let v = match &a.value {
                ArgValue::Bool(b) => b.to_string(),
                ArgValue::Int(i) => i.to_string(),
                ArgValue::Text(t) => t.to_string(),
            };
            format!("{}={}", a.key.as_str(), utf8_percent_encode(&v, NON_ALPHANUMERIC))
        })
        .collect();
    let name = function_name(body.action.as_str());
    if query.is_empty() { format!("FUNCTION {name}") } else { format!("FUNCTION {name} {}", query.join("&")) }
}

impl Driver for Vmix {
    fn plan(&self, body: &EnvelopeBody) -> Plan {
        let mut problems = Vec::new();
        if !self.connected.load(Ordering::Relaxed) {
            problems.push(unreachable(&self.endpoint, "not connected"));
        }
        Plan { sends: vec![function_line(body)], problems }
    }

    fn apply<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(async move {
            let answer = self.request("FUNCTION", function_line(body)).await?;
            Ok(serde_json::json!({ "vmix": answer }))
        })
    }

    fn health(&self) -> HealthFuture<'_> {
        Box::pin(async move { self.request("TALLY", "TALLY".into()).await.map(|_| ()) })
    }
}

/// The connection task.
struct Connection {
    addr: String,
    timeout: Duration,
    capability: String,
    ctx: DriverContext,
    connected: Arc<AtomicBool>,
    /// The input titles from the XML read at connect.
    labels: std::sync::Mutex<std::collections::BTreeMap<u32, String>>,
    /// The last tally digits and the activators that are on.
    state: std::sync::Mutex<(String, Activators)>,
}

impl Device for Connection {
    type Conn = (Reader, OwnedWriteHalf);
    type Request = Request;

    fn describe(&self) -> String {
        format!("vMix {} on {}", self.capability, self.addr)
    }

    async fn connect(&self) -> Result<Self::Conn, IfError> {
        self.open().await
    }

    async fn serve(&self, (r, w): Self::Conn, requests: &mut mpsc::Receiver<Request>) -> IfError {
        self.serve_on(r, w, requests).await
    }

    fn up(&self) {
        self.connected.store(true, Ordering::Relaxed);
    }

    fn down(&self) {
        self.connected.store(false, Ordering::Relaxed);
    }
}

/// One parsed line: `<COMMAND> <OK|ER|length> [text]`.
struct Line<'a> {
    command: &'a str,
    status: &'a str,
    text: &'a str,
}

fn parse(line: &str) -> Line<'_> {
    let mut w = line.splitn(3, ' ');
    Line { command: w.next().unwrap_or(""), status: w.next().unwrap_or(""), text: w.next().unwrap_or("") }
}

impl Connection {
    /// Connects, checks the greeting, subscribes to tally and reads the current tally.
    async fn open(&self) -> Result<(Reader, OwnedWriteHalf), IfError> {
        let stream = super::tcp_connect(&self.addr, self.timeout, |e| unreachable(&self.addr, e)).await?;
        let (r, mut w) = stream.into_split();
        let mut r = FramedRead::new(r, LinesCodec::new_with_max_length(MAX_LINE));
        let greeting = self.read_line(&mut r).await?;
        if greeting.starts_with("HTTP/") {
            return Err(unreachable(
                &self.addr,
                "answers HTTP: not a vMix TCP API endpoint (the web controller port?)",
            ));
        }
        if !greeting.starts_with("VERSION OK") {
            return Err(unreachable(&self.addr, "no vMix greeting: not a vMix TCP API endpoint"));
        }
        // What was on before this connection is unknown now.
        *self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Default::default();
        // The titles first, so that the resync's tally carries them. The document is read by the byte
        // count vMix gives, however long; one over MAX_XML is read past and its titles left unknown.
        w.write_all(b"XML\r\n").await.map_err(|e| unreachable(&self.addr, e))?;
        let titles = loop {
            let line = self.read_line(&mut r).await?;
            let l = parse(&line);
            if l.command != "XML" {
                continue;
            }
            match l.status.parse::<usize>() {
                Ok(n) => break self.read_document(&mut r, n).await?,
                Err(_) => break Default::default(),
            }
        };
        *self.labels.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = titles;
        // A vMix without activator subscriptions answers `SUBSCRIBE ER`: tally alone still works.
        for (line, want) in [("SUBSCRIBE TALLY", "SUBSCRIBE"), ("SUBSCRIBE ACTS", "SUBSCRIBE"), ("TALLY", "TALLY")] {
            w.write_all(format!("{line}\r\n").as_bytes()).await.map_err(|e| unreachable(&self.addr, e))?;
            loop {
                let answer = self.read_line(&mut r).await?;
                let l = parse(&answer);
                if l.command == "TALLY" && l.status == "OK" {
                    self.publish_tally(l.text);
                }
                if l.command == "ACTS" && l.status == "OK" {
                    self.activator(l.text);
                }
                if l.command == want {
                    break;
                }
            }
        }
        Ok((r, w))
    }

    /// The `n` bytes of an XML document after its `XML n` line, as titles (`n` counts its line end).
    async fn read_document(
        &self,
        r: &mut Reader,
        n: usize,
    ) -> Result<std::collections::BTreeMap<u32, String>, IfError> {
        let keep = n <= MAX_XML;
        let buffered = r.read_buffer_mut();
        let first = buffered.split_to(buffered.len().min(n));
        let mut doc = if keep { first.to_vec() } else { Vec::new() };
        let mut left = n - first.len();
        let mut chunk = vec![0u8; 16 * 1024];
        while left > 0 {
            let want = left.min(chunk.len());
            let got = tokio::time::timeout(self.timeout, r.get_mut().read(&mut chunk[..want]))
                .await
                .map_err(|_| unreachable(&self.addr, "the XML did not come"))?
                .map_err(|e| unreachable(&self.addr, e))?;
            if got == 0 {
                return Err(unreachable(&self.addr, "closed by vMix in the middle of its XML"));
            }
            if keep {
                doc.extend_from_slice(&chunk[..got]);
            }
            left -= got;
        }
        Ok(if keep { titles(&String::from_utf8_lossy(&doc)) } else { Default::default() })
    }

    async fn read_line(&self, r: &mut Reader) -> Result<String, IfError> {
        tokio::time::timeout(self.timeout, read_any(r))
            .await
            .map_err(|_| unreachable(&self.addr, "no answer"))?
            .map_err(|e| unreachable(&self.addr, e))
    }

    /// A `TALLY OK` line: published. Returns whether inputs came or went (its length changed).
    fn publish_tally(&self, digits: &str) -> bool {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let resized = !state.0.is_empty() && state.0.len() != digits.len();
        state.0 = digits.to_string();
        self.publish(&state);
        resized
    }

    /// New titles: kept, and published with the last tally.
    fn retitle(&self, titles: std::collections::BTreeMap<u32, String>) {
        *self.labels.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = titles;
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !state.0.is_empty() {
            self.publish(&state);
        }
    }

    /// An `ACTS OK ...` line: published with the last tally when it changes what is on.
    fn activator(&self, text: &str) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if apply_acts(&mut state.1, text) && !state.0.is_empty() {
            self.publish(&state);
        }
    }

    fn publish(&self, state: &(String, Activators)) {
        let labels = self.labels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        self.ctx.tally.post(
            &self.capability,
            Tally { capability: self.capability.clone(), tally: state.0.clone(), labels, activators: state.1.clone() },
        );
    }

    /// Serves requests one at a time until the connection fails; returns why. vMix says nothing when an
    /// input is renamed, but its tally grows or shrinks when inputs come or go: then the titles are read
    /// again, as one more request in turn.
    async fn serve_on(&self, mut r: Reader, mut w: OwnedWriteHalf, requests: &mut mpsc::Receiver<Request>) -> IfError {
        let mut pending: Option<(Request, Instant)> = None;
        let mut titles_due = false;
        let mut reading_titles: Option<Instant> = None;
        loop {
            let deadline = pending.as_ref().map(|(_, d)| *d).or(reading_titles);
            let idle = pending.is_none() && reading_titles.is_none();
            tokio::select! {
                line = read_any(&mut r) => {
                    let line = match line {
                        Ok(l) => l,
                        Err(e) => {
                            if let Some((p, _)) = pending.take() {
                                let _ = p.answer.send(Err(IfError::format(ErrorCode::DeviceTimeout, format_args!("the connection dropped after {:?} was sent; its outcome is unknown", p.line))));
                            }
                            return unreachable(&self.addr, e);
                        }
                    };
                    let l = parse(&line);
                    if l.command == "TALLY" && l.status == "OK" {
                        titles_due |= self.publish_tally(l.text);
                    }
                    // The titles asked for; any other data reply is never asked for, and its lines
                    // match no request and are skipped like any other unsolicited line.
                    if l.command == "XML" && reading_titles.take().is_some() {
                        if let Ok(n) = l.status.parse::<usize>() {
                            match self.read_document(&mut r, n).await {
                                Ok(titles) => self.retitle(titles),
                                Err(e) => return e,
                            }
                        }
                        continue;
                    }
                    if l.command == "ACTS" && l.status == "OK" {
                        self.activator(l.text);
                        continue;
                    }
                    let answers = pending.as_ref().is_some_and(|(p, _)| p.command == l.command);
                    if answers && let Some((p, _)) = pending.take() {
                        let result = match l.status {
                            "OK" => Ok(l.text.to_string()),
                            "ER" => Err(IfError::format(ErrorCode::DeviceRejected, format_args!("vMix: {}", l.text))),
                            other => Ok(format!("{other} {}", l.text)),
                        };
                        let _ = p.answer.send(result);
                    }
                }
                () = std::future::ready(()), if titles_due && idle => {
                    titles_due = false;
                    if let Err(e) = w.write_all(b"XML\r\n").await {
                        return unreachable(&self.addr, e);
                    }
                    reading_titles = Some(Instant::now() + self.timeout);
                }
                req = requests.recv(), if idle => {
                    let Some(req) = req else { return unreachable(&self.addr, "driver stopped") };
                    // Its caller gave up waiting (the lane's timeout): it must not reach the device later.
                    if req.answer.is_closed() {
                        continue;
                    }
                    if let Err(e) = w.write_all(format!("{}\r\n", req.line).as_bytes()).await {
                        let _ = req.answer.send(Err(unreachable(&self.addr, format_args!("could not send: {e}"))));
                        return unreachable(&self.addr, e);
                    }
                    pending = Some((req, Instant::now() + self.timeout));
                }
                () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    if let Some((p, _)) = pending.take() {
                        let _ = p.answer.send(Err(IfError::format(ErrorCode::DeviceTimeout, format_args!("no answer to {:?} within {} ms; not sent again", p.line, self.timeout.as_millis()))));
                    }
                    // A late answer must not be taken for the next request's: start over.
                    return unreachable(&self.addr, "an answer did not come in time; reconnecting");
                }
            }
        }
    }
}

/// Lines from vMix, each at most [`MAX_LINE`] bytes; reading one is cancel-safe.
type Reader = FramedRead<OwnedReadHalf, LinesCodec>;

/// Reads one line, failing on EOF, an over-long line or bytes that are not UTF-8.
async fn read_any(r: &mut Reader) -> Result<String, String> {
    match r.next().await {
        Some(Ok(line)) => Ok(line.trim_end().to_string()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("closed by vMix".into()),
    }
}

#[cfg(test)]
mod tests {
    use if_protocol::envelope::Args;

    use super::*;
    use crate::policy::authorize::tests::body;

    #[test]
    fn actions_become_functions_with_url_encoded_queries() {
        let mut b = body("if://capability/vmix", "set_text");
        let mut a = Args::new();
        a.insert("Input", ArgValue::Int(2)).expect("arg");
        a.insert("Value", ArgValue::Text("Hello & good night".try_into().expect("short"))).expect("arg");
        b.args = a;
        assert_eq!(function_line(&b), "FUNCTION SetText Input=2&Value=Hello%20%26%20good%20night");
        assert_eq!(function_line(&body("if://capability/vmix", "cut")), "FUNCTION Cut");
    }
}

//! `videohub-tcp`: the Blackmagic Videohub Ethernet protocol (docs/PROTOCOLS.md), routes confirmed by status.
//!
//! One task owns the connection. It reads the prelude into a model of the router (sizes, locks, routing)
//! and keeps it current from every status block. A route change is one `VIDEO OUTPUT ROUTING:` block,
//! whatever its size, so a salvo goes to the router as one unit: before sending, every output is checked
//! against the model (a locked output refuses the whole salvo with DEVICE_REJECTED and nothing is sent);
//! after `ACK` the change is done only when status blocks show every route (another client may route at
//! the same time). `NAK` is DEVICE_REJECTED. No confirmation in time is DEVICE_TIMEOUT with what was and
//! was not confirmed, and the connection is made again. Health is `PING:`.
//!
//! Actions: `route` with `output` and `input` (0-based, as the protocol counts), `salvo` with
//! `routes = "OUT:IN,OUT:IN,..."`.

use super::supervisor::{Device, Refusable, supervise};
use crate::backoff::Backoff;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use if_protocol::envelope::{ArgValue, EnvelopeBody};
use if_protocol::{ErrorCode, IfError};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LinesCodec};

use super::{Driver, HealthFuture};
use crate::capability::OutcomeFuture;
use crate::capability::Plan;

/// The name manifests use.
pub const DRIVER: &str = "videohub-tcp";

const MAX_LINE: usize = 4096;
/// Most lines in one block (a 288x288 router's routing table fits); the longest label kept.
const MAX_BLOCK: usize = 1024;
const MAX_LABEL: usize = 64;

type Reader = FramedRead<OwnedReadHalf, LinesCodec>;

/// What the driver knows of the router.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Input count.
    pub inputs: usize,
    /// Routing: the input of each output.
    pub routing: Vec<usize>,
    /// Lock state of each output: `U`, `O` (ours), `L` (another client's).
    pub locks: Vec<char>,
    /// Input labels by index.
    pub input_labels: Vec<String>,
    /// Output labels by index.
    pub output_labels: Vec<String>,
}

/// Sets `labels[index] = text` (cut to [`MAX_LABEL`]), growing the list up to the router's largest size.
fn label(labels: &mut Vec<String>, index: &str, text: &str) {
    if let Ok(i) = index.parse::<usize>()
        && i < MAX_BLOCK
    {
        if labels.len() <= i {
            labels.resize(i + 1, String::new());
        }
        labels[i] = text.chars().take(MAX_LABEL).collect();
    }
}

impl Model {
    /// Applies one block.
    fn apply(&mut self, header: &str, lines: &[String]) {
        for l in lines {
            let (key, value) = l.split_once(' ').unwrap_or((l.as_str(), ""));
            match header {
                "VIDEOHUB DEVICE:" => match key {
                    "Video" if value.starts_with("inputs:") => {
                        self.inputs = value.trim_start_matches("inputs:").trim().parse().unwrap_or(self.inputs);
                    }
                    "Video" if value.starts_with("outputs:") => {
                        // A router's claim of its size is input: bounded like everything else from it.
                        let n = value
                            .trim_start_matches("outputs:")
                            .trim()
                            .parse()
                            .unwrap_or(self.routing.len())
                            .min(MAX_BLOCK);
                        self.routing.resize(n, 0);
                        self.locks.resize(n, 'U');
                    }
                    _ => {}
                },
                "VIDEO OUTPUT ROUTING:" => {
                    if let (Ok(o), Ok(i)) = (key.parse::<usize>(), value.trim().parse::<usize>())
                        && let Some(slot) = self.routing.get_mut(o)
                    {
                        *slot = i;
                    }
                }
                "INPUT LABELS:" => label(&mut self.input_labels, key, value),
                "OUTPUT LABELS:" => label(&mut self.output_labels, key, value),
                "VIDEO OUTPUT LOCKS:" => {
                    if let (Ok(o), Some(c)) = (key.parse::<usize>(), value.trim().chars().next())
                        && let Some(slot) = self.locks.get_mut(o)
                    {
                        *slot = c;
                    }
                }
                _ => {}
            }
        }
    }

    /// Every output's route, with the labels the router gave.
    pub fn routes(&self) -> Vec<if_protocol::messages::Route> {
        let label = |labels: &[String], i: usize| labels.get(i).cloned().unwrap_or_default();
        self.routing
            .iter()
            .enumerate()
            .map(|(o, &i)| if_protocol::messages::Route {
                output: u32::try_from(o).unwrap_or(u32::MAX),
                input: u32::try_from(i).unwrap_or(u32::MAX),
                output_label: label(&self.output_labels, o),
                input_label: label(&self.input_labels, i),
            })
            .collect()
    }

    /// Why `routes` cannot be sent, if a route names a missing port or a locked output.
    fn refuse(&self, routes: &[(usize, usize)]) -> Option<IfError> {
        for (o, i) in routes {
            if *o >= self.routing.len() || *i >= self.inputs {
                return Some(IfError::format(
                    ErrorCode::DeviceRejected,
                    format_args!(
                        "route {o}:{i} is outside the router ({} in, {} out); nothing was sent",
                        self.inputs,
                        self.routing.len()
                    ),
                ));
            }
            if self.locks.get(*o) == Some(&'L') {
                return Some(IfError::format(
                    ErrorCode::DeviceRejected,
                    format_args!("output {o} is locked by another client; nothing of the salvo was sent"),
                ));
            }
        }
        None
    }
}

/// The routes a command asks for.
pub fn routes(body: &EnvelopeBody) -> Result<Vec<(usize, usize)>, IfError> {
    let bad = |why: &str| IfError::format(ErrorCode::InvalidEnvelope, format_args!("{}: {why}", body.action));
    let int = |k: &str| match body.args.get(k) {
        Some(ArgValue::Int(v)) if *v >= 0 => usize::try_from(*v).map_err(|_| bad("number too large")),
        _ => Err(bad(&format!("needs {k} as a number >= 0"))),
    };
    match body.action.as_str() {
        "route" => Ok(vec![(int("output")?, int("input")?)]),
        "salvo" => {
            let Some(ArgValue::Text(text)) = body.args.get("routes") else {
                return Err(bad("needs routes = \"OUT:IN,...\""));
            };
            let list: Result<Vec<(usize, usize)>, IfError> = text
                .split(',')
                .map(|r| {
                    let (o, i) = r.trim().split_once(':').ok_or_else(|| bad("each route reads OUT:IN"))?;
                    Ok((o.parse().map_err(|_| bad("OUT is a number"))?, i.parse().map_err(|_| bad("IN is a number"))?))
                })
                .collect();
            list.and_then(|l| if l.is_empty() { Err(bad("no routes")) } else { Ok(l) })
        }
        other => Err(IfError::format(ErrorCode::ActionNotAllowed, format_args!("videohub has no action {other:?}"))),
    }
}

enum Ask {
    Routes(Vec<(usize, usize)>),
    Ping,
}

struct Request {
    ask: Ask,
    answer: oneshot::Sender<Result<serde_json::Value, IfError>>,
}

impl Refusable for Request {
    fn refuse(self, why: IfError) {
        let _ = self.answer.send(Err(why));
    }
}

/// The driver: a handle on the connection task and its model.
#[derive(Debug)]
pub struct Videohub {
    requests: mpsc::Sender<Request>,
    model: Arc<Mutex<Option<Model>>>,
    endpoint: String,
}

fn unreachable(endpoint: &str, why: impl std::fmt::Display) -> IfError {
    IfError::format(ErrorCode::DeviceUnreachable, format_args!("Videohub at {endpoint}: {why}"))
}

impl Videohub {
    /// Starts the connection task for `host:port`.
    /// Its routing, with labels, is posted to `routing` after the prelude and after every change.
    pub fn start(
        addr: String,
        timeout: Duration,
        backoff: Backoff,
        capability: String,
        routing: Arc<super::Latest<super::Routing>>,
    ) -> Self {
        let (requests, rx) = mpsc::channel(64);
        let model = Arc::new(Mutex::new(None));
        let task = Connection { addr: addr.clone(), timeout, capability, model: model.clone(), routing };
        tokio::spawn(supervise(task, backoff, rx));
        Videohub { requests, model, endpoint: addr }
    }

    async fn ask(&self, ask: Ask) -> Result<serde_json::Value, IfError> {
        let (answer, wait) = oneshot::channel();
        let gone = || unreachable(&self.endpoint, "the connection task stopped");
        self.requests.send(Request { ask, answer }).await.map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }
}

fn block(routes: &[(usize, usize)]) -> String {
    let mut b = String::from("VIDEO OUTPUT ROUTING:\n");
    for (o, i) in routes {
        b += &format!("{o} {i}\n");
    }
    b + "\n"
}

impl Driver for Videohub {
    fn plan(&self, body: &EnvelopeBody) -> Plan {
        let mut plan = Plan::default();
        match routes(body) {
            Ok(r) => {
                plan.sends.push(block(&r));
                match self.model.try_lock().ok().and_then(|m| m.clone()) {
                    Some(m) => plan.problems.extend(m.refuse(&r)),
                    None => plan.problems.push(unreachable(&self.endpoint, "not connected")),
                }
            }
            Err(e) => plan.problems.push(e),
        }
        plan
    }

    fn apply<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(async move { self.ask(Ask::Routes(routes(body)?)).await })
    }

    fn health(&self) -> HealthFuture<'_> {
        Box::pin(async move { self.ask(Ask::Ping).await.map(|_| ()) })
    }
}

struct Connection {
    addr: String,
    timeout: Duration,
    capability: String,
    model: Arc<Mutex<Option<Model>>>,
    routing: Arc<super::Latest<super::Routing>>,
}

impl Device for Connection {
    type Conn = (Reader, OwnedWriteHalf);
    type Request = Request;

    fn describe(&self) -> String {
        format!("Videohub {} on {}", self.capability, self.addr)
    }

    async fn connect(&self) -> Result<Self::Conn, IfError> {
        self.open().await
    }

    async fn serve(&self, (r, w): Self::Conn, requests: &mut mpsc::Receiver<Request>) -> IfError {
        let why = self.serve_on(r, w, requests).await;
        // What the router said is unknown from here until the next prelude.
        *self.model.lock().await = None;
        why
    }
}

/// Reads one block: a header and its lines up to the blank line.
async fn read_block(r: &mut Reader) -> Result<(String, Vec<String>), String> {
    let mut lines = Vec::new();
    loop {
        let line = match r.next().await {
            Some(Ok(l)) => l.trim_end().to_string(),
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed by the router".into()),
        };
        if line.is_empty() {
            if lines.is_empty() {
                continue;
            }
            let header = lines.remove(0);
            return Ok((header, lines));
        }
        if lines.len() == MAX_BLOCK {
            return Err("a block longer than any router sends".into());
        }
        lines.push(line);
    }
}

impl Connection {
    /// Connects and reads the prelude into the model.
    async fn open(&self) -> Result<(Reader, OwnedWriteHalf), IfError> {
        let stream = super::tcp_connect(&self.addr, self.timeout, |e| unreachable(&self.addr, e)).await?;
        let (r, w) = stream.into_split();
        let mut r = FramedRead::new(r, LinesCodec::new_with_max_length(MAX_LINE));
        let mut model = Model::default();
        let mut routed = false;
        loop {
            // Older firmware has no END PRELUDE: a quiet moment after the routing block ends it too.
            let wait = if routed { self.timeout.min(Duration::from_millis(300)) } else { self.timeout };
            match tokio::time::timeout(wait, read_block(&mut r)).await {
                Ok(Ok((header, lines))) => {
                    if header == "END PRELUDE:" {
                        break;
                    }
                    if header == "PROTOCOL PREAMBLE:" && !lines.iter().any(|l| l.starts_with("Version:")) {
                        return Err(unreachable(&self.addr, "not a Videohub: no protocol version in the preamble"));
                    }
                    routed |= header == "VIDEO OUTPUT ROUTING:";
                    model.apply(&header, &lines);
                }
                Ok(Err(e)) => return Err(unreachable(&self.addr, e)),
                Err(_) if routed => break,
                Err(_) => return Err(unreachable(&self.addr, "no prelude: not a Videohub endpoint")),
            }
        }
        self.report(&model);
        *self.model.lock().await = Some(model);
        Ok((r, w))
    }

    /// One request at a time until the connection fails; returns why.
    async fn serve_on(&self, mut r: Reader, mut w: OwnedWriteHalf, requests: &mut mpsc::Receiver<Request>) -> IfError {
        loop {
            tokio::select! {
                b = read_block(&mut r) => match b {
                    Ok((header, lines)) => self.update(&header, &lines).await,
                    Err(e) => return unreachable(&self.addr, e),
                },
                req = requests.recv() => {
                    let Some(req) = req else { return unreachable(&self.addr, "driver stopped") };
                    // Its caller gave up waiting (the lane's timeout): it must not reach the device later.
                    if req.answer.is_closed() {
                        continue;
                    }
                    if let Err(e) = self.handle(req, &mut r, &mut w).await {
                        return e;
                    }
                }
            }
        }
    }

    async fn update(&self, header: &str, lines: &[String]) {
        if let Some(m) = self.model.lock().await.as_mut() {
            let before = (m.routing.clone(), m.input_labels.clone(), m.output_labels.clone());
            m.apply(header, lines);
            if before != (m.routing.clone(), m.input_labels.clone(), m.output_labels.clone()) {
                self.report(m);
            }
        }
    }

    /// Posts the routing as this router's latest.
    fn report(&self, m: &Model) {
        self.routing.post(&self.capability, super::Routing { capability: self.capability.clone(), routes: m.routes() });
    }

    /// Sends one request and waits for its answer (and, for routes, the status that confirms them).
    /// An `Err` means the connection must be made again.
    async fn handle(&self, req: Request, r: &mut Reader, w: &mut OwnedWriteHalf) -> Result<(), IfError> {
        let (text, routes) = match &req.ask {
            Ask::Ping => ("PING:\n\n".to_string(), Vec::new()),
            Ask::Routes(routes) => {
                let refused = self.model.lock().await.as_ref().and_then(|m| m.refuse(routes));
                if let Some(e) = refused {
                    let _ = req.answer.send(Err(e));
                    return Ok(());
                }
                (block(routes), routes.clone())
            }
        };
        if let Err(e) = w.write_all(text.as_bytes()).await {
            let _ = req.answer.send(Err(unreachable(&self.addr, format_args!("could not send: {e}"))));
            return Err(unreachable(&self.addr, e));
        }
        let deadline = Instant::now() + self.timeout;
        let mut acked = false;
        loop {
            if acked && self.confirmed(&routes).await {
                let _ = req.answer.send(Ok(
                    serde_json::json!({ "routed": routes.iter().map(|(o, i)| format!("{o}:{i}")).collect::<Vec<_>>() }),
                ));
                return Ok(());
            }
            let (header, lines) = match tokio::time::timeout_at(deadline, read_block(r)).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    let _ = req.answer.send(Err(IfError::format(
                        ErrorCode::DeviceTimeout,
                        format_args!("the connection dropped after sending; the outcome is unknown ({e})"),
                    )));
                    return Err(unreachable(&self.addr, e));
                }
                Err(_) => {
                    let done = self.confirmed_list(&routes).await;
                    let why = if acked {
                        format!(
                            "ACK came but the status confirmed only {done:?} of {routes:?} in {} ms",
                            self.timeout.as_millis()
                        )
                    } else {
                        format!("no ACK within {} ms; not sent again", self.timeout.as_millis())
                    };
                    let _ = req.answer.send(Err(IfError::format(ErrorCode::DeviceTimeout, format_args!("{why}"))));
                    return Err(unreachable(&self.addr, "an answer did not come in time; reconnecting"));
                }
            };
            match header.as_str() {
                "ACK" if routes.is_empty() => {
                    let _ = req.answer.send(Ok(serde_json::json!({ "ping": "ACK" })));
                    return Ok(());
                }
                "ACK" => acked = true,
                "NAK" => {
                    let _ = req.answer.send(Err(IfError::with(
                        ErrorCode::DeviceRejected,
                        "the router answered NAK; nothing changed",
                    )));
                    return Ok(());
                }
                _ => self.update(&header, &lines).await,
            }
        }
    }

    async fn confirmed_list(&self, routes: &[(usize, usize)]) -> Vec<(usize, usize)> {
        let m = self.model.lock().await;
        routes.iter().copied().filter(|(o, i)| m.as_ref().and_then(|m| m.routing.get(*o)) == Some(i)).collect()
    }

    async fn confirmed(&self, routes: &[(usize, usize)]) -> bool {
        self.confirmed_list(routes).await.len() == routes.len()
    }
}

#[cfg(test)]
mod tests {
    use if_protocol::envelope::Args;

    use super::*;
    use crate::policy::authorize::tests::body;

    #[test]
    fn the_model_follows_the_prelude_and_refuses_locked_or_missing_ports() {
        let mut m = Model::default();
        m.apply("VIDEOHUB DEVICE:", &["Video inputs: 4".into(), "Video outputs: 4".into()]);
        m.apply("VIDEO OUTPUT ROUTING:", &["0 3".into(), "1 2".into()]);
        let mut huge = Model::default();
        huge.apply("VIDEOHUB DEVICE:", &["Video outputs: 4000000000".into()]);
        assert_eq!(huge.routing.len(), MAX_BLOCK, "a claimed size is capped");
        m.apply("VIDEO OUTPUT LOCKS:", &["2 L".into()]);
        m.apply("INPUT LABELS:", &["1 Camera 2".into()]);
        assert_eq!(m.routing, [3, 2, 0, 0]);
        assert_eq!(m.input_labels.get(1).map(String::as_str), Some("Camera 2"));
        assert!(m.refuse(&[(0, 1), (1, 1)]).is_none());
        assert_eq!(m.refuse(&[(0, 1), (2, 1)]).map(|e| e.code()), Some(ErrorCode::DeviceRejected));
        assert!(m.refuse(&[(9, 1)]).is_some());
    }

    #[test]
    fn salvos_parse_or_say_why() {
        let mut b = body("if://capability/hub", "salvo");
        let mut a = Args::new();
        a.insert("routes", ArgValue::Text("0:3, 1:4".try_into().expect("short"))).expect("arg");
        b.args = a;
        assert_eq!(routes(&b).expect("routes"), [(0, 3), (1, 4)]);
        let mut bad = b.clone();
        let mut a = Args::new();
        a.insert("routes", ArgValue::Text("0-3".try_into().expect("short"))).expect("arg");
        bad.args = a;
        assert_eq!(routes(&bad).expect_err("bad").code(), ErrorCode::InvalidEnvelope);
        assert_eq!(block(&[(0, 3), (1, 4)]), "VIDEO OUTPUT ROUTING:\n0 3\n1 4\n\n");
    }
}

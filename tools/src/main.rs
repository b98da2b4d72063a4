//! `ifctl`: the IF edge operator CLI.
//!
//! Every failure prints as `IF_ERR_xxx NAME: message` on stderr (or as JSON with `--json`) and exits with
//! the code's stable exit status (10 + class); usage errors exit 2.

mod broker;
mod capability;
mod cli;
mod collector;
mod connect;
mod demo;
mod message;
mod policy;
mod seq;
mod settings;
mod sim;
mod status;
mod talent;
mod witness;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;

use cli::*;
use if_protocol::error::ErrorReport;
use if_protocol::{ErrorCode, IfError, keys};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = settings::Settings::load(cli.config.as_deref()).and_then(|mut s| {
        // A flag wins over the file.
        for (flag, file) in [
            (&cli.tls_ca, &mut s.tls_ca),
            (&cli.tls_cert, &mut s.tls_cert),
            (&cli.tls_key, &mut s.tls_key),
            (&cli.agent_key, &mut s.agent_key),
            (&cli.agent_keys, &mut s.agent_keys),
        ] {
            if flag.is_some() {
                file.clone_from(flag);
            }
        }
        run(&cli, &s)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json {
                let report = serde_json::to_string(&ErrorReport::from(&e)).unwrap_or_default();
                eprintln!("{report}");
            } else {
                eprintln!("{e}");
            }
            ExitCode::from(e.code().exit_status())
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, IfError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("runtime: {e}")))
}

fn run(cli: &Cli, settings: &settings::Settings) -> Result<(), IfError> {
    match &cli.command {
        Command::Keygen { name, out } => keygen(name, out, cli.json),
        Command::Errors => {
            errors(cli.json);
            Ok(())
        }
        Command::Message { command: MessageCommand::Send(args) } => send(args, cli, settings),
        Command::Witness { command } => witness_cmd(command, settings, cli.json),
        Command::Demo { dir, keep_running } => {
            demo::run(&demo::Options { dir: dir.clone(), keep_running: *keep_running, json: cli.json })
        }
        Command::Status { broker, site, wait_ms } => status_cmd(broker, settings, site, *wait_ms, cli.json),
        Command::Broker { port } => broker::start(*port).map(|addr| {
            if cli.json {
                println!("{}", serde_json::json!({ "broker": format!("mqtt://{addr}") }));
            } else {
                println!("broker listening on mqtt://{addr}");
            }
            loop {
                std::thread::park();
            }
        }),
        Command::Trust { command: TrustCommand::Init(root) } => {
            policy::init_root(&root.spec(), &root.out).map(|w| w.print(cli.json))
        }
        Command::Trust { command: TrustCommand::Rotate { current, current_keys, root } } => {
            policy::rotate_root(current, current_keys, &root.spec(), &root.out).map(|w| w.print(cli.json))
        }
        Command::Talent { command } => talent_cmd(command, cli, settings),
        Command::Sim { device: SimDevice::Vmix { port, record, fault_file, inputs } } => {
            sim::run(sim::Kind::Vmix(*inputs), *port, record.clone(), fault_file.clone(), cli.json)
        }
        Command::Sim { device: SimDevice::Visca { link, record, fault_file } } => {
            sim::run_visca(link.clone(), record.clone(), fault_file.clone(), cli.json)
        }
        Command::Sim { device: SimDevice::Videohub { port, record, fault_file, size } } => {
            sim::run(sim::Kind::Videohub(*size), *port, record.clone(), fault_file.clone(), cli.json)
        }
        Command::Manifest { command: ManifestCommand::Push(a) } | Command::Trust { command: TrustCommand::Push(a) } => {
            push(a, settings)
        }
        Command::Manifest { command: ManifestCommand::Sign { file, keys, out } } => {
            policy::sign_manifest(file, keys, out).map(|w| w.print(cli.json))
        }
        Command::Capability { command: CapabilityCommand::List { to, wait_ms } } => {
            let target = to.target(settings, 10)?;
            runtime()?.block_on(capability::list(&target, Duration::from_millis(*wait_ms), cli.json))
        }
        Command::Capability { command: CapabilityCommand::Apply(a) } => {
            let why = why(cli)?;
            let target = a.who.to.target(settings, a.timeout)?;
            let cmd = message::Command {
                capability: a.id.clone(),
                action: a.action.clone(),
                args: a.args.clone(),
                why,
                trace: cli.trace,
                scope: a.scope.clone(),
                hazards: a.hazards.clone(),
                audience: cli.audience.clone(),
                ..a.who.command(settings)?
            };
            runtime()?.block_on(capability::apply(&target, cmd, cli.mode == Some(Mode::Falsify)))
        }
        Command::Falsify { .. } if matches!(cli.mode, Some(Mode::Run | Mode::Falsify)) => {
            usage("falsify --task checks a cue list with --mode pre-commit (its default)")
        }
        Command::Falsify { task, who, timeout } => {
            let cues = capability::read_cues(task)?;
            let target = who.to.target(settings, *timeout)?;
            let base = who.command(settings)?;
            runtime()?.block_on(capability::falsify_task(&target, &base, &cues, cli.json))
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into memory first: the generator panics on a closed pipe, a write here only errs.
            let mut text = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "ifctl", &mut text);
            std::io::Write::write_all(&mut std::io::stdout(), &text)
                .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("completions: {e}")))
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("man page: {e}")))
        }
    }
}

/// `--why`, which every verb that sends a command needs.
fn why(cli: &Cli) -> Result<String, IfError> {
    match &cli.why {
        Some(w) => Ok(w.clone()),
        None => usage("--why is required: it is witnessed with the command"),
    }
}

/// Ends with clap's usage error (exit status 2).
fn usage<T>(message: &str) -> T {
    <Cli as clap::CommandFactory>::command().error(clap::error::ErrorKind::MissingRequiredArgument, message).exit()
}

fn keygen(name: &str, out: &std::path::Path, json: bool) -> Result<(), IfError> {
    let (paths, public) = if_edge::keyfile::generate(out, name)?;
    let id = hex::encode(keys::key_id(&public));
    if json {
        let v = serde_json::json!({ "secret": paths.secret, "public": paths.public, "key_id": id });
        println!("{v}");
    } else {
        println!("wrote {} (secret key, mode 0600: keep it on this machine)", paths.secret.display());
        println!("wrote {} (public key: give it to the agent's trust configuration)", paths.public.display());
        println!("key id {id}");
    }
    Ok(())
}

fn errors(json: bool) {
    if json {
        let rows: Vec<_> = ErrorCode::ALL
            .iter()
            .map(|c| {
                serde_json::json!({
                    "code": format!("IF_ERR_{:03}", c.number()),
                    "name": c.name(),
                    "message": c.message(),
                    "retryable": c.retryable(),
                    "exit_status": c.exit_status(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    println!("{:<11} {:<24} {:>4} {:<9} message", "code", "name", "exit", "retryable");
    for c in ErrorCode::ALL {
        let retry = if c.retryable() { "yes" } else { "no" };
        println!("IF_ERR_{:03} {:<24} {:>4} {:<9} {}", c.number(), c.name(), c.exit_status(), retry, c.message());
    }
}

fn send(a: &SendArgs, cli: &Cli, s: &settings::Settings) -> Result<(), IfError> {
    let target = a.to.target(s, a.timeout)?;
    if let Some(j) = &a.frame_json {
        return deliver(&target, message::frame_from_json(j)?);
    }
    let cmd = message::Command {
        key: settings::pick(a.key.as_ref(), s.key.as_ref(), "key")?,
        sender: settings::pick(a.sender.as_ref(), s.sender.as_ref(), "sender")?,
        capability: a.capability.clone().unwrap_or_default(),
        action: a.action.clone().unwrap_or_default(),
        args: match cli.mode {
            Some(Mode::Falsify) => {
                a.args.iter().cloned().chain([format!("{}=falsify", if_edge::falsify::MODE_ARG)]).collect()
            }
            _ => a.args.clone(),
        },
        why: why(cli)?,
        trace: cli.trace,
        seq: a.seq,
        ttl_s: a.ttl,
        scope: a.scope.clone(),
        hazards: a.hazards.clone(),
        audience: cli.audience.clone(),
    };
    match &a.save {
        // The saved frame is the one sent: it is never signed again.
        Some(path) => {
            let frame = message::sign(&cmd, &target)?;
            message::save(path, &frame)?;
            deliver(&target, frame)
        }
        None => answer(&target, |t| message::send_command(t, &cmd)),
    }
}

fn talent_cmd(command: &TalentCommand, cli: &Cli, s: &settings::Settings) -> Result<(), IfError> {
    let why = why(cli)?;
    let (conn, action, args) = match command {
        TalentCommand::Add { name, role, pubkey, conn } => (conn, "talent.add", talent::add(name, role, pubkey)?),
        TalentCommand::Grant { name, capability, scopes, actions, hazards, expires, reach, conn } => {
            let reach = match reach {
                Reach::Agent => None,
                Reach::Site => Some("site"),
                Reach::Fleet => Some("fleet"),
            };
            (conn, "talent.grant", talent::grant(name, capability, scopes, actions, hazards, *expires, reach))
        }
        TalentCommand::Revoke { name, conn } => (conn, "talent.revoke", talent::revoke(name)),
        TalentCommand::Reset { name, conn } => (conn, "talent.reset", talent::revoke(name)),
    };
    let target = conn.to.target(s, conn.timeout)?;
    let mut cmd = talent::command(action, args, &conn.key, conn.sender.as_deref(), &why);
    cmd.audience.clone_from(&cli.audience);
    answer(&target, |t| message::send_command(t, &cmd))
}

/// Publishes a signed policy document on the agent's policy topic and prints its answer.
fn push(a: &PushArgs, s: &settings::Settings) -> Result<(), IfError> {
    let text = if_edge::policy::file::read(&a.file)?;
    let target = a.to.target(s, a.timeout)?;
    let topic = if_protocol::topics::Topics::new(&target.site, &target.agent).policy;
    answer(&target, |t| message::request(t, &topic, "policy", text.into_bytes()))
}

/// Publishes `frame`, prints the reply, and turns an error reply into the error.
fn deliver(target: &message::Target, frame: Vec<u8>) -> Result<(), IfError> {
    answer(target, |t| message::send(t, frame))
}

/// Runs one request and prints its reply.
fn answer<'a, F, Fut>(target: &'a message::Target, call: F) -> Result<(), IfError>
where
    F: FnOnce(&'a message::Target) -> Fut,
    Fut: std::future::Future<Output = Result<if_edge::reply::Reply, IfError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("runtime: {e}")))?;
    let reply = runtime.block_on(call(target))?;
    print_reply(&reply)
}

fn print_reply(reply: &if_edge::reply::Reply) -> Result<(), IfError> {
    println!("{}", serde_json::to_string(&reply).unwrap_or_default());
    match &reply.error {
        None => Ok(()),
        Some(report) => Err(IfError::from(report)),
    }
}

fn status_cmd(
    broker: &str,
    settings: &settings::Settings,
    site: &str,
    wait_ms: u64,
    json: bool,
) -> Result<(), IfError> {
    let keys = settings.keys(None, None);
    if keys.is_empty() {
        return Err(IfError::with(
            ErrorCode::ConfigInvalid,
            "no pinned agent keys: a status cannot be told from a forged one without them; give --agent-keys DIR \
             ({site}.{agent}.pub files), or --agent-key FILE with site and agent in ifctl.toml",
        ));
    }
    let pinned = |site: &str, agent: &str| keys.get(site, agent).ok().flatten();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("runtime: {e}")))?;
    let tls = settings.tls()?;
    let statuses =
        runtime.block_on(status::collect(broker, tls.as_ref(), site, Duration::from_millis(wait_ms), &pinned))?;
    status::print(&statuses, json);
    status::forged_error(&statuses)
}

fn witness_cmd(command: &WitnessCommand, settings: &settings::Settings, json: bool) -> Result<(), IfError> {
    match command {
        WitnessCommand::Verify { db, key } => {
            let report = witness::verify_db(db, key.as_deref())?;
            witness::print_report(&report, json);
            Ok(())
        }
        WitnessCommand::Export { db } => witness::export(db),
        WitnessCommand::Query { trace_token, db: Some(db), .. } => witness::query(db, *trace_token, json),
        WitnessCommand::Query { trace_token, db: None, who, timeout } => {
            let target = who.to.target(settings, *timeout)?;
            let cmd = message::Command {
                capability: if_edge::builtin::WitnessQuery::ID.into(),
                action: "query".into(),
                args: vec![format!("trace={trace_token}")],
                why: format!("query of trace {trace_token}"),
                ..who.command(settings)?
            };
            let reply = runtime()?.block_on(message::send_command(&target, &cmd))?;
            if let Some(e) = &reply.error {
                return Err(IfError::from(e));
            }
            let result = reply.result.unwrap_or_default();
            for r in result["records"].as_array().into_iter().flatten() {
                println!("{}", witness::show_line(r, json));
            }
            Ok(())
        }
        WitnessCommand::VerifyAnchors { broker, keys, store, archive, follow, wait_ms, sign_key } => {
            let opts = collector::Options {
                signer: sign_key
                    .as_deref()
                    .map(if_edge::keyfile::read_secret)
                    .transpose()?
                    .map(if_edge::attest::Signer::new),
                broker: broker.clone(),
                tls: settings.tls()?,
                keys: keys.clone(),
                store: store.clone(),
                archive: archive.clone(),
                follow: *follow,
                wait: Duration::from_millis(*wait_ms),
                json,
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("runtime: {e}")))?
                .block_on(collector::run(opts))
        }
        WitnessCommand::Checkpoint { db } => {
            let note = witness::checkpoint(db)?;
            match json {
                true => println!("{}", witness::checkpoint_json(&note)?),
                false => print!("{note}"),
            }
            Ok(())
        }
    }
}

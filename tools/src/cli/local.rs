//! What runs on this machine alone: keys, the error table, shell completions and the man page, and a
//! site to try things on (a broker, device simulators, the demo).

use if_protocol::{ErrorCode, IfError, keys};

use super::Cli;

/// `ifctl keygen`.
pub(crate) fn keygen(name: &str, out: &std::path::Path, json: bool) -> Result<(), IfError> {
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

/// `ifctl errors`.
pub(crate) fn errors(json: bool) {
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

/// `ifctl completions SHELL`.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<(), IfError> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    // Into memory first: the generator panics on a closed pipe, a write here only errs.
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut cmd, "ifctl", &mut text);
    std::io::Write::write_all(&mut std::io::stdout(), &text)
        .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("completions: {e}")))
}

/// `ifctl man`.
pub(crate) fn man() -> Result<(), IfError> {
    let cmd = <Cli as clap::CommandFactory>::command();
    clap_mangen::Man::new(cmd)
        .render(&mut std::io::stdout())
        .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("man page: {e}")))
}

/// `ifctl sim ...`: a device simulator until killed.
pub(crate) async fn sim(device: if_sim::Device, json: bool) -> Result<(), IfError> {
    if_sim::run(device, json).await.map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("simulator: {e}")))
}

/// `ifctl broker`: a small MQTT 5 broker on loopback until killed.
pub(crate) async fn broker(port: u16, json: bool) -> Result<(), IfError> {
    let addr = crate::broker::start(port)?;
    if json {
        println!("{}", serde_json::json!({ "broker": format!("mqtt://{addr}") }));
    } else {
        println!("broker listening on mqtt://{addr}");
    }
    std::future::pending().await
}

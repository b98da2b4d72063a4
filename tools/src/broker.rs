//! An MQTT 5 broker inside `ifctl` (rumqttd), for the demo and for trying the agent out on a machine
//! with no Mosquitto. It listens on loopback only and keeps nothing on disk: a site runs a real broker.

use std::collections::HashMap;
use std::net::SocketAddr;

use if_protocol::{ErrorCode, IfError};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Starts the broker on `127.0.0.1:port` (0: a free port) in a thread of its own; returns its address.
pub fn start(port: u16) -> Result<SocketAddr, IfError> {
    let failed = |e: &dyn std::fmt::Display| IfError::format(ErrorCode::SystemError, format_args!("broker: {e}"));
    // rumqttd binds the address it is given; a free port is found first.
    let listen =
        std::net::TcpListener::bind(("127.0.0.1", port)).and_then(|l| l.local_addr()).map_err(|e| failed(&e))?;
    let server = ServerSettings {
        name: "v5".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 5000,
            max_payload_size: 256 * 1024,
            max_inflight_count: 1024,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: 1024,
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 4,
            ..RouterConfig::default()
        },
        v5: Some(HashMap::from([("v5".to_string(), server)])),
        ..Config::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                eprintln!("broker stopped: {e}");
            }
        })
        .map_err(|e| failed(&e))?;
    // Ready when it accepts.
    for _ in 0..200 {
        if std::net::TcpStream::connect(listen).is_ok() {
            return Ok(listen);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(failed(&format_args!("not listening on {listen}")))
}

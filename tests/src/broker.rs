//! A real Mosquitto, started per test on a free loopback port, that a test can stop and start again.
//!
//! Mosquitto's defaults drop QoS 1 messages under a flood (`max_queued_messages 1000`,
//! `max_inflight_messages 20`); the suites raise both on purpose. Persistence is on, so a restarted
//! broker keeps the agent's session and its queued commands. Started as root (as CI runs), Mosquitto
//! would switch to its own user and could no longer read the test's private directory (its persistence
//! file, and the certificates of a TLS listener): `user root` keeps it as it was started.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian installs the broker.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A running (or stopped) broker.
#[derive(Debug)]
pub struct Broker {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// A TLS listener that requires a client certificate of the CA: (port, CA, server identity).
    tls: Option<(u16, PathBuf, crate::pki::Identity)>,
    /// Run as the box's own broker: the package's drop-in with its loopback listener on this port.
    site: Option<u16>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker on a free port.
    pub fn start() -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = Broker { port: crate::free_port(), tls: None, site: None, dir, child: None };
        b.restart();
        b
    }

    /// Starts a broker with a plain listener and a TLS one that serves `pki`'s server certificate and
    /// accepts only clients with a certificate `pki` signed.
    pub fn start_tls(pki: &crate::pki::Pki) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = Some((crate::free_port(), pki.ca.clone(), pki.server.clone()));
        let mut b = Broker { port: crate::free_port(), tls, site: None, dir, child: None };
        b.restart();
        b
    }

    /// The box's own broker: Debian's main settings (persistence on) and exactly the package's drop-in
    /// (`packaging/mosquitto/if-edge.conf` and its ACL), with free ports in place of 1883 (the studio
    /// listener, [`Broker::url`]) and 1884 (the agent's loopback listener, [`Broker::agent_url`]).
    pub fn start_site() -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = Broker { port: crate::free_port(), tls: None, site: Some(crate::free_port()), dir, child: None };
        b.restart();
        b
    }

    /// The agent's listener of the box's own broker (the studio listener on others).
    pub fn agent_url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.site.unwrap_or(self.port))
    }

    fn site_config(&self, agent_port: u16) -> String {
        let root = crate::workspace().join("packaging");
        let dropin = std::fs::read_to_string(root.join("mosquitto/if-edge.conf")).expect("the drop-in");
        let acl = root.join("mosquitto/if-edge.acl");
        let dropin = dropin
            .replace("listener 1884 127.0.0.1", &format!("listener {agent_port} 127.0.0.1"))
            .replace("listener 1883\n", &format!("listener {} 127.0.0.1\n", self.port))
            .replace("/etc/mosquitto/if-edge.acl", acl.to_str().expect("utf-8"));
        format!(
            "user root\npersistence true\npersistence_location {dir}/\nlog_dest file {dir}/mosquitto.log\n{dropin}",
            dir = self.dir.path().display()
        )
    }

    /// `mqtts://127.0.0.1:PORT` of the TLS listener.
    pub fn tls_url(&self) -> String {
        let port = self.tls.as_ref().map_or(0, |t| t.0);
        format!("mqtts://127.0.0.1:{port}")
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn config(&self) -> PathBuf {
        let path = self.dir.path().join("mosquitto.conf");
        if let Some(agent_port) = self.site {
            std::fs::write(&path, self.site_config(agent_port)).expect("write mosquitto.conf");
            return path;
        }
        let text = format!(
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/\n\
             autosave_interval 1\nmax_queued_messages 100000\nmax_inflight_messages 1000\nmax_packet_size 131072\nset_tcp_nodelay true\n\
             log_dest file {dir}/mosquitto.log\n",
            port = self.port,
            dir = self.dir.path().display()
        );
        let tls = match &self.tls {
            Some((port, ca, server)) => format!(
                "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
                ca.display(),
                server.cert.display(),
                server.key.display()
            ),
            None => String::new(),
        };
        std::fs::write(&path, text + &tls).expect("write mosquitto.conf");
        path
    }

    /// Starts it (again) on the same port and waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(std::path::Path::new(MOSQUITTO).is_file(), "{MOSQUITTO} is missing: tools/test.sh installs it");
        let config = self.config();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let ports = [Some(self.port), self.tls.as_ref().map(|t| t.0), self.site];
        for port in ports.into_iter().flatten() {
            let up = crate::wait_for(Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", port)).ok());
            assert!(up.is_some(), "mosquitto did not start on port {port}");
        }
    }

    /// Stops it with SIGTERM (it saves its sessions) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::signal(&c, "TERM");
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

//! Where a broker is (`mqtt://HOST[:PORT]`, `mqtts://HOST[:PORT]`), and the rumqttc options that reach it.
//!
//! URLs are parsed by the `url` crate, so an IPv6 literal (`mqtt://[::1]:1883`) works. The host is kept
//! bare (`::1`): rumqttc resolves `host:port` by its last colon and checks a TLS certificate against the
//! host as a server name, and both take an IPv6 address without brackets.

use if_protocol::{ErrorCode, IfError};

use crate::tls::Tls;

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or address (an IPv6 address without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `mqtts://`: the connection is TLS.
    pub tls: bool,
}

impl BrokerAddr {
    /// Parses `mqtt://HOST[:PORT]` (1883 by default) or `mqtts://HOST[:PORT]` (TLS, 8883 by default).
    pub fn parse(text: &str) -> Result<BrokerAddr, String> {
        let url = url::Url::parse(text).map_err(|e| match e {
            url::ParseError::InvalidPort => "the port is not a number 1..65535".to_string(),
            url::ParseError::EmptyHost => "needs a host and a port 1..65535".to_string(),
            other => format!("is not a broker URL ({other})"),
        })?;
        let (tls, default_port) = match url.scheme() {
            "mqtt" => (false, 1883),
            "mqtts" => (true, 8883),
            _ => return Err("must start with mqtt:// or mqtts://".into()),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry a user name or password".into());
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err("must be only mqtt://HOST:PORT, with no path".into());
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            _ => return Err("needs a host and a port 1..65535".into()),
        };
        let port = url.port().unwrap_or(default_port);
        if port == 0 {
            return Err("needs a host and a port 1..65535".into());
        }
        Ok(BrokerAddr { host, port, tls })
    }

    /// MQTT 5 options for client `id`: over TLS for `mqtts://`, which needs `tls`, and at most
    /// [`CLIENT_INFLIGHT`] unacknowledged publishes out (a session that needs another bound sets its own).
    pub fn client_options(
        &self,
        id: impl Into<String>,
        tls: Option<&Tls>,
    ) -> Result<rumqttc::v5::MqttOptions, IfError> {
        let mut options = rumqttc::v5::MqttOptions::new(id, self.host.clone(), self.port);
        // rumqttc sizes its in-flight table by this bound up front; unset, it would hold 65,535 slots
        // (13.8 MiB) for every client.
        options.set_outgoing_inflight_upper_limit(CLIENT_INFLIGHT);
        match (self.tls, tls) {
            (true, Some(tls)) => {
                options.set_transport(tls.transport());
            }
            (true, None) => {
                return Err(IfError::format(
                    ErrorCode::ConfigInvalid,
                    format_args!("mqtts://{}:{} needs the broker's CA certificate", self.host, self.port),
                ));
            }
            (false, _) => {}
        }
        Ok(options)
    }
}

/// Unacknowledged publishes a client other than the control session keeps in flight: the uplink's
/// anchors and a tool's requests are few, and a full table only makes `publish` wait its turn.
pub const CLIENT_INFLIGHT: u16 = 64;

/// The options of a tool's connection (ifctl, the collector) to the broker at `url`: keep-alive 10 s and
/// the agent's packet size, over TLS for `mqtts://`. Errors name the flag to fix.
pub fn tool_options(url: &str, id: String, tls: Option<&Tls>) -> Result<rumqttc::v5::MqttOptions, IfError> {
    let addr =
        BrokerAddr::parse(url).map_err(|e| IfError::format(ErrorCode::ConfigInvalid, format_args!("--broker: {e}")))?;
    let mut o = addr
        .client_options(id, tls)
        .map_err(|e| IfError::format(e.code(), format_args!("{} (--tls-ca)", e.detail())))?;
    o.set_keep_alive(std::time::Duration::from_secs(10)).set_max_packet_size(Some(super::MAX_PACKET));
    Ok(o)
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        match self.host.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => write!(f, "{scheme}://[{ip}]:{}", self.port),
            Err(_) => write!(f, "{scheme}://{}:{}", self.host, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_ports_or_say_why() {
        let a = BrokerAddr::parse("mqtt://127.0.0.1:1884").expect("ok");
        assert_eq!(a, BrokerAddr { host: "127.0.0.1".into(), port: 1884, tls: false });
        assert_eq!(BrokerAddr::parse("mqtt://host").expect("ok").port, 1883);
        assert_eq!(BrokerAddr::parse("mqtt://host/").expect("a trailing slash").port, 1883);
        let tls = BrokerAddr::parse("mqtts://fleet.example").expect("ok");
        assert_eq!((tls.port, tls.tls), (8883, true));
        for (bad, why) in [
            ("mqtt://host:0", "1..65535"),
            ("mqtt://:99", "needs a host"),
            ("mqtt://h:99999", "1..65535"),
            ("tcp://h:1883", "mqtt://"),
            ("h:1883", "mqtt://"),
            ("mqtt://u:p@h:1883", "user name"),
            ("mqtt://h:1883/x", "no path"),
            ("mqtt://h:1883?x=1", "no path"),
        ] {
            let e = BrokerAddr::parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn an_ipv6_literal_resolves_and_names_its_tls_server() {
        use std::net::ToSocketAddrs as _;
        let a = BrokerAddr::parse("mqtts://[::1]:8883").expect("ipv6");
        assert_eq!((a.host.as_str(), a.port), ("::1", 8883));
        assert_eq!(a.to_string(), "mqtts://[::1]:8883");
        // rumqttc joins host and port with a colon and resolves that (by its last colon)...
        let joined = format!("{}:{}", a.host, a.port).to_socket_addrs().expect("resolves").next().expect("one");
        assert!(joined.is_ipv6() && joined.port() == 8883);
        // ...and checks the broker's certificate against the host as a server name.
        assert!(rustls::pki_types::ServerName::try_from(a.host.clone()).is_ok());
        assert!(BrokerAddr::parse("mqtt://[::1]").expect("ok").client_options("x", None).is_ok());
        let e = BrokerAddr::parse("mqtts://[::1]").expect("ok").client_options("x", None).expect_err("no CA");
        assert_eq!(e.code(), ErrorCode::ConfigInvalid);
    }
}

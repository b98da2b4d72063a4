//! How every verb reaches a broker: the URL from a flag or `ifctl.toml`, over TLS for `mqtts://` with
//! the CA (and, where the broker asks for one, the client certificate) from `--tls-ca`, `--tls-cert`
//! and `--tls-key` or their `ifctl.toml` keys.

use std::time::Duration;

use if_edge::mqtt::BrokerAddr;
use if_edge::tls::Tls;
use if_protocol::{ErrorCode, IfError};
use rumqttc::v5::MqttOptions;

/// MQTT 5 options for client `id` at `url`, keep-alive 10 s and the agent's packet size.
pub fn options(url: &str, id: String, tls: Option<&Tls>) -> Result<MqttOptions, IfError> {
    let addr =
        BrokerAddr::parse(url).map_err(|e| IfError::format(ErrorCode::ConfigInvalid, format_args!("--broker: {e}")))?;
    let mut o = addr
        .client_options(id, tls)
        .map_err(|e| IfError::format(e.code(), format_args!("{} (--tls-ca)", e.detail())))?;
    o.set_keep_alive(Duration::from_secs(10)).set_max_packet_size(Some(if_edge::mqtt::MAX_PACKET));
    Ok(o)
}

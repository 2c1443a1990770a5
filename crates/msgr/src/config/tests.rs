//! Loading and checking configurations.

use super::*;
use msgr_core::wire::EntityType;

fn parse(s: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(s, "config/test.toml")
}

#[test]
fn empty_file_gives_working_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.transports, vec![Transport::Tcp]);
    assert_eq!(c.workers, 2);
    assert_eq!(c.bind, "127.0.0.1:0".parse().unwrap());
    assert_eq!(c.name, EntityName::new(EntityType::CLIENT, -1));
}

#[test]
fn bad_transport_names_file_key_and_choices() {
    let e = parse("transport = \"udp\"\n").unwrap_err();
    assert_eq!(
            e.to_string(),
            "config/test.toml: key \"transport\": expected one of \"tcp\", \"rdma\", \"mem\", got \"udp\""
        );
}

#[test]
fn unknown_key_is_named_with_its_section() {
    let e = parse("[tcp]\nnodelay = true\nno_delay = false\n").unwrap_err();
    assert_eq!(e.key, "tcp.no_delay", "{e}");
    assert!(e.message.contains("unknown field"), "{e}");
    let e = parse("colour = 3\n").unwrap_err();
    assert_eq!(e.key, "colour", "{e}");
}

#[test]
fn wrong_type_is_named() {
    let e = parse("[tcp]\nnodelay = \"yes\"\n").unwrap_err();
    assert_eq!(e.key, "tcp.nodelay", "{e}");
    let e = parse("workers = 0\n").unwrap_err();
    assert_eq!(e.key, "workers");
    assert!(e.message.contains("1 to 256"));
    let e = parse("[limits]\nmax_connections = 0\n").unwrap_err();
    assert_eq!(e.key, "limits.max_connections");
    assert!(e.message.contains("leave the key out"), "{e}");
}

#[test]
fn policies_by_peer_type_with_throttles() {
    let c = parse(
        "[policy.client]\npreset = \"stateful_server\"\nthrottle_messages = 8\n\
             [policy.default]\npreset = \"lossy_client\"\n",
    )
    .unwrap();
    let p = c.policies.get(EntityType::CLIENT);
    assert!(p.server && !p.lossy);
    assert_eq!(p.throttle_messages, Some(8));
    assert!(c.policies.get(EntityType::OSD).lossy);
    let e = parse("[policy.osd]\npreset = \"lossless\"\n").unwrap_err();
    assert_eq!(e.key, "policy.osd.preset");
    assert!(e.message.contains("\"lossless_peer\""), "{e}");
}

#[test]
fn names_and_rdma_are_checked() {
    assert_eq!(
        parse_entity_name("osd.3"),
        Some(EntityName::new(EntityType::OSD, 3))
    );
    assert_eq!(parse_entity_name("osd.x"), None);
    let e = parse("name = \"disk.0\"\n").unwrap_err();
    assert_eq!(e.key, "name");
    let e = parse("[rdma]\nport = 0\n").unwrap_err();
    assert_eq!(e.key, "rdma.port");
    let c = parse("transport = \"rdma\"\n[rdma]\ndevice = \"mlx5_0\"\n").unwrap();
    assert_eq!(c.rdma.device, "mlx5_0");
    assert_eq!(c.transports, vec![Transport::Rdma]);
}

#[test]
fn crc_data_defaults_on_and_reaches_the_transport() {
    let c = parse("").unwrap();
    assert!(c.protocol.crc_data);
    assert!(c.node_config().crc_data);
    let c = parse("[protocol]\ncrc_data = false\n").unwrap();
    assert!(!c.protocol.crc_data);
    assert!(!c.node_config().crc_data);
    let e = parse("[protocol]\ncrc_data = 0\n").unwrap_err();
    assert_eq!(e.key, "protocol.crc_data", "{e}");
    let e = parse("[protocol]\nms_crc_data = false\n").unwrap_err();
    assert_eq!(e.key, "protocol.ms_crc_data", "{e}");
}

#[test]
fn node_and_rdma_settings_map_common_keys_and_the_rdma_table_common_keys_and_the_rdma_table() {
    let c = parse(
        "name = \"osd.7\"\ntransport = \"rdma\"\nbind = \"10.0.2.15:6801\"\nnonce = 99\n\
             [policy.client]\npreset = \"stateful_server\"\n\
             [limits]\nmax_front = 1000\nmax_data = 2000\nsend_queue_bytes = 4096\n\
             max_connections = 5000\n\
             [timeouts]\nhandshake_ms = 1500\nkeepalive_ms = 0\nidle_ms = 7000\n\
             reconnect_initial_ms = 3\nreconnect_max_ms = 40\n\
             [protocol]\ncrc_data = false\n[fault]\ninject_socket_failures = 50\n\
             [rdma]\ndevice = \"mlx5_1\"\nport = 2\ngid_index = 3\nbuffer_size = 8192\n\
             send_buffers = 2\nrecv_buffers = 4\npoll_us = 25\nread_threshold = 0\n",
    )
    .unwrap();
    let r = c.node_config();
    assert_eq!(r.name, EntityName::new(EntityType::OSD, 7));
    assert_eq!(r.bind, "10.0.2.15:6801".parse().unwrap());
    assert_eq!(r.nonce, Some(99));
    assert!(r.policies.get(EntityType::CLIENT).server);
    assert_eq!((r.limits.max_front, r.limits.max_data), (1000, 2000));
    assert_eq!(r.send_queue_bytes, 4096);
    assert_eq!(r.max_connections, Some(5000));
    assert_eq!(r.handshake_timeout, Duration::from_millis(1500));
    assert_eq!(r.keepalive_interval, None);
    assert_eq!(r.idle_timeout, Some(Duration::from_millis(7000)));
    assert_eq!(r.reconnect_initial, Duration::from_millis(3));
    assert_eq!(r.reconnect_max, Duration::from_millis(40));
    assert!(!r.crc_data);
    assert_eq!(r.inject_failures, 50);
    assert_eq!(r.workers, 2, "the default number of workers");
    assert_eq!(r.busy_poll, Duration::from_micros(25), "rdma.poll_us");
    #[cfg(feature = "rdma")]
    {
        let o = &c.rdma_options().unwrap();
        assert_eq!(o.device.as_deref(), Some("mlx5_1"));
        assert_eq!((o.port, o.gid_index), (2, Some(3)));
        assert_eq!(
            (o.buffer_size, o.send_buffers, o.recv_buffers),
            (8192, 2, 4)
        );
        assert_eq!(o.poll_us, 25);
        assert_eq!(o.read_threshold, 0);
    }
}

#[cfg(feature = "rdma")]
#[test]
fn rdma_buffer_counts_have_the_transports_lower_bounds() {
    let e = parse("[rdma]\nsend_buffers = 1\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "config/test.toml: key \"rdma.send_buffers\": expected a count from 2 to 65536, got 1"
    );
    let e = parse("[rdma]\nrecv_buffers = 3\n").unwrap_err();
    assert_eq!(e.key, "rdma.recv_buffers", "{e}");
    assert!(e.message.contains("from 4 to"), "{e}");
    // Whatever the loader lets through, the transport accepts.
    let c = parse("transport = \"rdma\"\n[rdma]\nsend_buffers = 2\nrecv_buffers = 4\n").unwrap();
    c.rdma_options().unwrap();
    // A value only the transport checks still names the file and key.
    let mut c = c;
    c.rdma.recv_buffers = 3;
    let e = c.rdma_options().unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.key.as_str()),
        ("config/test.toml", "rdma.recv_buffers")
    );
}

#[test]
fn shipped_configs_load() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");
    for f in ["tcp.toml", "rdma.toml", "rdma-tcp.toml"] {
        let c = Config::from_file(format!("{root}/{f}"));
        assert!(c.is_ok(), "{f}: {:?}", c.err());
    }
}

#[test]
fn transports_list_in_order_with_clear_errors() {
    let c = parse("transports = [\"rdma\", \"tcp\"]\n").unwrap();
    assert_eq!(c.transports, vec![Transport::Rdma, Transport::Tcp]);
    let e = parse("transports = [\"rdma\", \"udp\"]\n").unwrap_err();
    assert_eq!(e.key, "transports[1]", "{e}");
    let e = parse("transports = []\n").unwrap_err();
    assert!(e.to_string().contains("at least one"), "{e}");
    let e = parse("transports = [\"tcp\", \"tcp\"]\n").unwrap_err();
    assert!(e.to_string().contains("listed twice"), "{e}");
    let e = parse("transport = \"tcp\"\ntransports = [\"tcp\"]\n").unwrap_err();
    assert_eq!(e.key, "transports", "{e}");
}

/// A daemon's own file with the messenger under `[messenger]`.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Daemon {
    data_dir: String,
    messenger: Config,
}

#[test]
fn embedded_config_loads_with_the_same_keys_and_defaults() {
    let d: Daemon = load_toml(
        "data_dir = \"/srv\"\n\n[messenger]\nname = \"osd.4\"\ntransports = [\"mem\", \"tcp\"]\n\
         [messenger.tcp]\nnodelay = false\n",
        "daemon.toml",
    )
    .unwrap();
    assert_eq!(d.data_dir, "/srv");
    let m = &d.messenger;
    assert_eq!(m.name, EntityName::new(EntityType::OSD, 4));
    assert_eq!(m.transports, vec![Transport::Mem, Transport::Tcp]);
    assert!(!m.tcp.nodelay);
    assert_eq!(m.workers, 2, "defaults as in a file of its own");
    assert_eq!(
        m.origin, "daemon.toml",
        "later errors name the daemon's file"
    );
}

#[test]
fn embedded_config_errors_name_file_key_path_and_line() {
    let load = |text: &str| load_toml::<Daemon>(text, "daemon.toml").unwrap_err();
    // A wrong type: toml gives the line.
    let e = load(
        "data_dir = \"/srv\"\n[messenger]\nname = \"osd.1\"\n[messenger.tcp]\nnodelay = \"yes\"\n",
    );
    assert_eq!(e.key, "messenger.tcp.nodelay", "{e}");
    assert_eq!(e.line, Some(5), "{e}");
    assert!(
        e.to_string()
            .starts_with("daemon.toml:5: key \"messenger.tcp.nodelay\": invalid type"),
        "{e}"
    );
    // An unknown key inside the embedded table.
    let e = load("data_dir = \"/srv\"\n[messenger]\ncolour = 3\n");
    assert_eq!(e.key, "messenger.colour", "{e}");
    assert!(e.message.contains("unknown field"), "{e}");
    // One of msgr's own checks: the key under the daemon's table, the same words.
    let e = load("data_dir = \"/srv\"\n[messenger]\n[messenger.rdma]\nsend_buffers = 1\n");
    assert_eq!(e.key, "messenger.rdma.send_buffers", "{e}");
    assert_eq!(e.message, "expected a count from 2 to 65536, got 1");
    assert!(
        e.to_string().starts_with("daemon.toml:"),
        "names the file: {e}"
    );
    let e = load("data_dir = \"/srv\"\n[messenger]\ntransports = [\"tcp\", \"udp\"]\n");
    assert_eq!(e.key, "messenger.transports[1]", "{e}");
}

#[test]
fn wrong_type_in_a_file_of_its_own_gives_the_line() {
    let e = parse("name = \"osd.1\"\n\n[tcp]\nnodelay = \"yes\"\n").unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("tcp.nodelay", Some(4)), "{e}");
}

#[test]
fn protocol_keys_choose_protocols_modes_and_auth() {
    use msgr_core::auth::{MODE_CRC, MODE_SECURE};
    use msgr_core::protocol::Protocol;
    use msgr_core::session_v2::V2Auth;

    let d = parse("").unwrap();
    assert_eq!(d.protocol.prefer, Protocol::V1);
    assert_eq!(d.protocol.accept, [Protocol::V1, Protocol::V2]);
    let n = d.node_config();
    assert!(n.accept_v1 && n.accept_v2);
    assert!(matches!(n.msgr2.auth, V2Auth::None));
    assert_eq!(n.msgr2.modes, [MODE_CRC]);

    let c =
        parse("[protocol]\nprefer = \"v2\"\naccept = [\"v2\"]\nmodes = [\"secure\", \"crc\"]\n")
            .unwrap();
    let n = c.node_config();
    assert_eq!(n.protocol, Protocol::V2);
    assert!(!n.accept_v1 && n.accept_v2);
    assert_eq!(n.msgr2.modes, [MODE_SECURE, MODE_CRC]);

    for (text, key, says) in [
        (
            "prefer = \"v3\"",
            "protocol.prefer",
            "expected \"v1\" or \"v2\"",
        ),
        (
            "accept = [\"v1\", \"x\"]",
            "protocol.accept[1]",
            "unknown protocol \"x\"",
        ),
        ("accept = []", "protocol.accept", "accepts nobody"),
        (
            "modes = [\"fast\"]",
            "protocol.modes[0]",
            "\"crc\" or \"secure\"",
        ),
        (
            "auth = \"kerberos\"",
            "protocol.auth",
            "\"none\" or \"cephx\"",
        ),
        ("auth = \"cephx\"", "protocol.keyring", "needs the keyring"),
        (
            "keyring = \"/k\"",
            "protocol.keyring",
            "only read with auth = \"cephx\"",
        ),
        (
            "auth = \"cephx\"\nkeyring = \"/nonexistent/keyring\"",
            "protocol.keyring",
            "/nonexistent/keyring",
        ),
    ] {
        let e = parse(&format!("[protocol]\n{text}\n")).unwrap_err();
        assert_eq!(e.key, key, "{text}: {e}");
        assert!(e.to_string().contains(says), "{text}: {e}");
    }
}

#[test]
fn cephx_key_comes_from_the_keyring_by_auth_name() {
    let dir = std::env::temp_dir().join(format!("msgr-keyring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keyring");
    // A throwaway key (16 zero bytes, created 0), in Ceph's keyring format.
    std::fs::write(
        &path,
        "[client.bench]\n\tkey = AQAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAA==\n",
    )
    .unwrap();
    let text = |name: &str| {
        format!(
            "[protocol]\nauth = \"cephx\"\nauth_name = \"{name}\"\nkeyring = \"{}\"\n",
            path.display()
        )
    };
    let c = parse(&text("client.bench")).unwrap();
    assert_eq!(c.protocol.cephx_key.unwrap().secret, [0; 16]);
    assert_eq!(c.node_config().msgr2.entity_id, "bench");
    let e = parse(&text("client.other")).unwrap_err();
    assert_eq!(e.key, "protocol.keyring");
    assert!(e.to_string().contains("client.other"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

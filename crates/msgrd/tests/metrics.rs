//! `msgrd serve --metrics`: the counters, scraped over HTTP while an in-process client sends
//! messages through the echo server, move with the traffic, per messenger and per connection.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use msgr::{
    Config, ConnectionRef, Dispatcher, EntityAddr, EntityName, EntityType, Message, Messenger,
};
use parking_lot::{Condvar, Mutex};

mod common;
use common::{expect_line, serve, Server};

/// `msgrd serve` on free ports: the server, its messenger address and its metrics address.
fn start_server() -> (Server, EntityAddr, String) {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/tcp.toml");
    let args = [
        "--config",
        config,
        "--bind",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ];
    let (server, mut lines) = serve(&args.map(std::ffi::OsStr::new));
    let addr = expect_line(&mut lines, "LISTENING ")
        .parse()
        .expect("an address ping --peer takes");
    let metrics = expect_line(&mut lines, "METRICS ");
    (server, addr, metrics)
}

/// `path` over HTTP/1.1: the status line and the body.
fn get(metrics: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(metrics).expect("the metrics port accepts");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {metrics}\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("a whole reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("headers, then a body");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// Every sample of a scrape: `name{labels}` (as written) to value.
fn scrape(metrics: &str) -> BTreeMap<String, u64> {
    let (status, body) = get(metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("NAME VALUE");
            (k.to_string(), v.parse().expect("an integer"))
        })
        .collect()
}

/// Counts echoes; `wait_for(n)` returns once `n` arrived.
#[derive(Default)]
struct Echoes {
    got: Mutex<u64>,
    arrived: Condvar,
}

impl Dispatcher for Echoes {
    fn ms_dispatch(&self, _conn: &ConnectionRef, _msg: Message) {
        *self.got.lock() += 1;
        self.arrived.notify_all();
    }
}

impl Echoes {
    fn wait_for(&self, n: u64) {
        let mut got = self.got.lock();
        while *got < n {
            let waited = self.arrived.wait_for(&mut got, Duration::from_secs(60));
            assert!(!waited.timed_out(), "{} of {n} echoes after 60 s", *got);
        }
    }
}

#[test]
fn counters_move_with_the_traffic_per_messenger_and_per_connection() {
    let (_server, server_addr, metrics) = start_server();
    let before = scrape(&metrics);
    assert_eq!(before["msgr_messages_in_total"], 0, "{before:?}");
    assert_eq!(before["msgr_accepted_total"], 0);

    let client =
        msgr::from_config(&Config::default_tcp(EntityName::new(EntityType::CLIENT, 1))).unwrap();
    let echoes = Arc::new(Echoes::default());
    client.add_dispatcher(echoes.clone());
    client.start().unwrap();
    let conn = client.connect_to(EntityType::OSD, &server_addr).unwrap();
    let send = |n: u64| {
        for tid in 0..n {
            let msg = Message::new(1, Bytes::from_static(b"metrics")).with_tid(tid);
            conn.send_message(msg).unwrap();
        }
    };
    send(50);
    echoes.wait_for(50);

    // The server counted each message before it echoed it.
    let series = format!("{{peer=\"{}\",transport=\"tcp\"}}", client.my_addr());
    let messages_in = format!("msgr_connection_messages_in_total{series}");
    let first = scrape(&metrics);
    assert_eq!(first["msgr_messages_in_total"], 50, "{first:?}");
    assert_eq!(first["msgr_accepted_total"], 1);
    assert_eq!(first["msgr_open_connections"], 1);
    assert_eq!(first["msgr_links_total{transport=\"tcp\"}"], 1);
    assert_eq!(first.get(&messages_in), Some(&50), "{first:?}");
    assert!(first[&format!("msgr_connection_bytes_in_total{series}")] > 0);

    // Scraped while more messages are on their way: never below the last scrape, never
    // above what was sent.
    send(200);
    let during = scrape(&metrics);
    assert!((50..=250).contains(&during[&messages_in]), "{during:?}");
    echoes.wait_for(250);
    let after = scrape(&metrics);
    assert_eq!(after[&messages_in], 250, "{after:?}");
    assert_eq!(after["msgr_messages_out_total"], 250);
    assert!(
        after["msgr_bytes_out_total"] > first["msgr_bytes_out_total"],
        "{first:?} then {after:?}"
    );
    client.shutdown();
}

#[test]
fn only_get_metrics_is_served() {
    let (_server, _, metrics) = start_server();
    let (status, body) = get(&metrics, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert!(body.contains("/metrics"), "{body}");
}

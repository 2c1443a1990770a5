//! `serve --metrics`: the node's counters, read afresh on every scrape, in the Prometheus text
//! format (OpenMetrics, via `prometheus-client`), answered by a small HTTP responder on its own
//! thread.
//!
//! Series (all `msgr_`-prefixed):
//! - the messenger's totals: `msgr_messages_in_total`, `msgr_accepted_total`,
//!   `msgr_open_connections`, ... (one per `MessengerCounters` field; connection counters summed),
//!   and `msgr_links_total{transport}`;
//! - one series per connection: `msgr_connection_messages_in_total{peer, transport}` ... (one per
//!   `ConnectionCounters` field);
//! - with an RDMA transport, `msgr_rdma_*` (one per `RdmaCounters` field).
//!
//! The names come from the counters' serde field names, so a counter added to those structs
//! shows up here without an edit.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use msgr::{Built, Connection, Messenger, Node};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// `MessengerCounters` fields that are levels, not running totals.
const MESSENGER_GAUGES: &[&str] = &["open_connections"];
/// `RdmaCounters` fields that are levels over live links, not running totals.
#[cfg(feature = "rdma")]
const RDMA_GAUGES: &[&str] = &[
    "send_buffers_in_use",
    "send_buffers_free",
    "recv_buffers_held",
    "links_waiting_for_credits",
    "live_links",
    "exposed_regions",
];

/// A connection's series labels: `peer` (its entity address) and `transport`.
type PeerLabels = [(&'static str, String); 2];

/// Reads a node's counters on each scrape.
#[derive(Debug)]
struct NodeCollector {
    node: Node,
    /// The RDMA transport, when the node listens on it.
    #[cfg(feature = "rdma")]
    rdma: Option<Arc<msgr_rdma::RdmaTransport>>,
}

/// The plain-number fields of a serializable counters struct, by field name.
fn fields(counters: &impl Serialize) -> Vec<(String, u64)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(counters) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| v.as_u64().map(|n| (k, n)))
        .collect()
}

/// One unlabelled series.
fn encode_one(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
    gauge: bool,
) -> Result<(), std::fmt::Error> {
    if gauge {
        let g = ConstGauge::new(value as i64);
        g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
    } else {
        let c = ConstCounter::new(value);
        c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
    }
}

impl Collector for NodeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.node.counters();
        for (name, value) in fields(&totals.connections) {
            let help =
                format!("ConnectionCounters::{name}, summed over the messenger's connections");
            encode_one(&mut enc, &name, &help, value, false)?;
        }
        for (name, value) in fields(&totals) {
            let help = format!("MessengerCounters::{name}");
            let gauge = MESSENGER_GAUGES.contains(&name.as_str());
            encode_one(&mut enc, &name, &help, value, gauge)?;
        }
        let links = ConstCounter::new(0u64);
        let mut family = enc.encode_descriptor(
            "links",
            "Links that came up, by transport (MessengerCounters::links_by_transport)",
            None,
            links.metric_type(),
        )?;
        for (transport, n) in &totals.links_by_transport {
            let labels = [("transport", *transport)];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }

        // Per connection: one descriptor per counter, then one series per connection.
        let conns: Vec<(PeerLabels, Vec<(String, u64)>)> = self
            .node
            .connections()
            .iter()
            .map(|c| {
                let labels = [
                    ("peer", c.peer_addr().to_string()),
                    ("transport", c.transport().unwrap_or("none").to_string()),
                ];
                (labels, fields(&c.counters()))
            })
            .collect();
        if let Some((_, first)) = conns.first() {
            for (i, (name, _)) in first.iter().enumerate() {
                let help = format!("ConnectionCounters::{name} of one connection");
                let name = format!("connection_{name}");
                let mut family = enc.encode_descriptor(&name, &help, None, links.metric_type())?;
                for (labels, values) in &conns {
                    ConstCounter::new(values[i].1).encode(family.encode_family(labels)?)?;
                }
            }
        }

        #[cfg(feature = "rdma")]
        if let Some(rdma) = &self.rdma {
            for (name, value) in fields(&rdma.counters()) {
                let help = format!("RdmaCounters::{name}, over the RDMA transport's links");
                let gauge = RDMA_GAUGES.contains(&name.as_str());
                encode_one(&mut enc, &format!("rdma_{name}"), &help, value, gauge)?;
            }
        }
        Ok(())
    }
}

/// The metrics of a started node, as a registry (prefix `msgr`).
pub(crate) fn registry(built: &Built) -> Registry {
    let node = built.node.clone();
    let collector = NodeCollector {
        // Only a transport that could listen has counters worth serving.
        #[cfg(feature = "rdma")]
        rdma: built
            .rdma
            .clone()
            .filter(|_| node.transports().contains(&"rdma")),
        node,
    };
    let mut r = Registry::with_prefix("msgr");
    r.register_collector(Box::new(collector));
    r
}

/// Answer `GET /metrics` on `addr` from a thread of its own; returns the bound address.
pub(crate) fn serve_metrics(addr: SocketAddr, registry: Registry) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("--metrics {addr}: cannot listen ({e}); pick a free port, or 0 for any"),
        )
    })?;
    let bound = listener.local_addr()?;
    let registry = Arc::new(registry);
    std::thread::Builder::new()
        .name("msgrd-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &registry) {
                    tracing::debug!(error = %e, "metrics request failed");
                }
            }
        })?;
    Ok(bound)
}

/// One HTTP/1.x request, one response, then close (no keep-alive).
fn answer(stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    // A client that stalls must not hold the (only) responder thread for long.
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut words = request.split_whitespace();
    let (status, content_type, body) = match (words.next(), words.next()) {
        (Some("GET"), Some("/metrics")) => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Err(_) => (
                    "500 Internal Server Error",
                    "text/plain",
                    "cannot encode the metrics\n".into(),
                ),
            }
        }
        (Some("GET"), _) => ("404 Not Found", "text/plain", "try GET /metrics\n".into()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET /metrics is served\n".into(),
        ),
    };
    let mut out = &stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

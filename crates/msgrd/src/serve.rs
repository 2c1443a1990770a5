//! `msgrd serve`: the echo server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use msgr::{ConnectionRef, Dispatcher, EntityName, Message, Messenger};
use msgr_core::session::SessionError;

use crate::common::{format_addr, load_config, log_event, print_counters};
use crate::metrics::{registry, serve_metrics};
use crate::proto::{encode_count, MSG_STREAM, MSG_STREAM_END};
use crate::AnyError;

struct Echo;

impl Dispatcher for Echo {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        let reply = if msg.msg_type == MSG_STREAM {
            return;
        } else if msg.msg_type == MSG_STREAM_END {
            Message::new(MSG_STREAM_END, encode_count(msg.seq)).with_tid(msg.tid)
        } else {
            Message {
                seq: 0,
                src: EntityName::default(),
                ..msg
            }
        };
        if let Err(e) = conn.send_message(reply) {
            tracing::warn!(peer = %conn.peer_addr(), error = %e, "cannot echo");
        }
    }
    fn ms_handle_connect(&self, conn: &ConnectionRef) {
        log_event("connected", conn);
    }
    fn ms_handle_accept(&self, conn: &ConnectionRef) {
        log_event("accepted", conn);
    }
    fn ms_handle_reset(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        tracing::info!(peer = %conn.peer_addr(), undelivered = undelivered.len(), "session reset");
    }
    fn ms_handle_remote_reset(&self, conn: &ConnectionRef) {
        log_event("peer reset the session", conn);
    }
    fn ms_handle_remote_reset_undelivered(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        // An echo server has nothing to resend: the peer that reset will not wait for them.
        tracing::info!(peer = %conn.peer_addr(), dropped = undelivered.len(), "echoes dropped by the peer's reset");
    }
    fn ms_handle_fault(&self, conn: &ConnectionRef, error: &SessionError) {
        tracing::info!(peer = %conn.peer_addr(), %error, "link fault");
    }
}

pub(crate) fn serve(
    path: &PathBuf,
    no_crc_data: bool,
    metrics: Option<SocketAddr>,
) -> Result<(), AnyError> {
    let cfg = load_config(path, no_crc_data)?;
    let built = msgr::build(&cfg)?;
    let m = built.node.clone();
    m.add_dispatcher(Arc::new(Echo));
    m.start()?;
    let metrics = match metrics {
        Some(addr) => Some(serve_metrics(addr, registry(&built))?),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "LISTENING {}", format_addr(&m.my_addr()))?;
        if let Some(addr) = metrics {
            writeln!(out, "METRICS {addr}")?;
        }
        out.flush()?;
    }
    tracing::info!(name = %m.my_name(), addr = %m.my_addr(), transports = ?m.transports(), crc_data = cfg.protocol.crc_data, "serving (echo)");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("signal received: shutting down");
    m.shutdown();
    print_counters("serve", &m.counters());
    Ok(())
}

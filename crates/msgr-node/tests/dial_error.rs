//! A transport's dial error reaches the application typed: `ms_handle_fault` gets
//! `SessionError::Transport { transport, source }`, and `source` downcasts to the transport's
//! own error (as msgr-rdma's `RdmaError::Memlock` does when a link's buffers cannot be
//! registered).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use msgr_core::api::{ConnectionRef, Dispatcher, Messenger};
use msgr_core::message::Message;
use msgr_core::policy::Policy;
use msgr_core::session::SessionError;
use msgr_core::wire::{EntityAddr, EntityName, EntityType};
use msgr_node::{
    DialError, DialId, Dialing, Node, NodeConfig, Registration, Transport, TransportError,
    TransportEvent,
};
use parking_lot::{Condvar, Mutex};

/// The transport's own error type.
#[derive(Debug, thiserror::Error)]
#[error("cannot register 4194304 bytes: raise ulimit -l")]
struct OutOfLockedMemory;

/// Listens anywhere; every dial fails with [`OutOfLockedMemory`].
struct FailingTransport;

impl Transport for FailingTransport {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn listen(&self, addr: SocketAddr) -> Result<SocketAddr, TransportError> {
        Ok(addr)
    }
    fn register(&self, _reg: &Registration<'_>) -> std::io::Result<()> {
        Ok(())
    }
    fn poll(&self, _accepting: bool, _out: &mut Vec<TransportEvent>) {}
    fn dial(&self, _peer: SocketAddr, _dial: DialId) -> Result<Dialing, DialError> {
        Err(DialError::unreachable(OutOfLockedMemory.to_string()).with_source(OutOfLockedMemory))
    }
}

/// The first fault reported.
#[derive(Default)]
struct Faults {
    first: Mutex<Option<SessionError>>,
    seen: Condvar,
}

impl Dispatcher for Faults {
    fn ms_dispatch(&self, _conn: &ConnectionRef, _msg: Message) {}
    fn ms_handle_fault(&self, _conn: &ConnectionRef, error: &SessionError) {
        self.first.lock().get_or_insert_with(|| error.clone());
        self.seen.notify_all();
    }
    fn ms_handle_reset(&self, _conn: &ConnectionRef, _undelivered: Vec<Message>) {
        self.seen.notify_all();
    }
}

#[test]
fn a_dial_error_reaches_ms_handle_fault_as_the_transports_type() {
    let cfg = NodeConfig::new(
        EntityName::new(EntityType::CLIENT, 1),
        "127.0.0.1:6999".parse().unwrap(),
    );
    let node = Node::new(cfg, vec![Arc::new(FailingTransport)]);
    node.set_policy(EntityType::OSD, Policy::lossless_peer());
    let faults = Arc::new(Faults::default());
    node.add_dispatcher(faults.clone());
    node.start().unwrap();
    let peer = EntityAddr::new("127.0.0.1:7000".parse().unwrap(), 1);
    node.connect_to(EntityType::OSD, &peer).unwrap();

    let mut first = faults.first.lock();
    while first.is_none() {
        let waited = faults.seen.wait_for(&mut first, Duration::from_secs(30));
        assert!(!waited.timed_out(), "no fault reported in 30 s");
    }
    let error = first.take().unwrap();
    drop(first);
    match &error {
        SessionError::Transport {
            transport, source, ..
        } => {
            assert_eq!(*transport, "fake");
            assert!(
                source.downcast_ref::<OutOfLockedMemory>().is_some(),
                "{source:?}"
            );
        }
        other => panic!("expected SessionError::Transport, got {other:?}"),
    }
    assert!(error.to_string().contains("raise ulimit -l"), "{error}");
    node.shutdown();
}

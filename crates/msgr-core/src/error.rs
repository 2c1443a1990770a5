//! [`MessengerError`]: what the messenger API returns, each variant with what to do about it.

use std::time::Duration;

use crate::session::SessionError;

/// A transport's own error, boxed so the application can downcast it to the transport's type
/// (e.g. `msgr_rdma::RdmaError`) and match on it.
pub type TransportError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the messenger API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessengerError {
    /// The listening socket could not be bound (address in use, not local, no permission).
    /// Free the port or change `bind` in the config.
    #[error("cannot bind {addr}: {source} (is another daemon using the port? change `bind` in the config)")]
    Bind {
        /// The address asked for.
        addr: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A transport failed to start (e.g. RDMA: no device, locked-memory limit). `source` is the
    /// transport's own error type: downcast it (`source.downcast_ref::<msgr_rdma::RdmaError>()`)
    /// to match on it; its message says what to do.
    #[error("{transport} transport: {source}")]
    Transport {
        /// The transport's name ("tcp", "rdma", "mem").
        transport: &'static str,
        /// The transport's error.
        #[source]
        source: TransportError,
    },
    /// None of the node's transports could listen; each one's error is listed, in the node's
    /// order of preference (empty: none is configured). Fix the first one you want to use.
    #[error("{}", no_transport(addr, errors))]
    NoTransport {
        /// The address asked for.
        addr: String,
        /// Each transport's name and error.
        errors: Vec<(&'static str, TransportError)>,
    },
    /// `connect` was given an address it cannot dial. Pass the peer's address as it advertises
    /// it (`IP:PORT/NONCE`), or use `connect_to` for our own address.
    #[error("cannot connect to {addr}: {reason}")]
    BadPeerAddress {
        /// The address given.
        addr: String,
        /// Why it cannot be dialed.
        reason: &'static str,
    },
    /// `start` met a messenger that is started already (e.g. an adapter that must add the
    /// first dispatcher was handed a started node): hand over one that is not started.
    #[error("the messenger is started already: start it once, after add_dispatcher()")]
    AlreadyStarted,
    /// The messenger was used before `start`: call `start()` first.
    #[error("messenger is not started: call start() first")]
    NotStarted,
    /// The messenger is shutting down or shut down: build a new one to go on.
    #[error("messenger is shut down")]
    ShutDown,
    /// `start` without a dispatcher: call `add_dispatcher()` first.
    #[error("no dispatcher registered: call add_dispatcher() before start()")]
    NoDispatcher,
    /// The connection is closed for good: get a new one with `connect_to()`.
    #[error("connection to {peer} is closed ({reason}); get a new one with connect_to()")]
    ConnectionClosed {
        /// The peer's address.
        peer: String,
        /// Why it closed.
        reason: String,
    },
    /// The connection's send queue is over `send_queue_bytes`: retry later, wait with
    /// `send_message_timeout`, or raise the limit.
    #[error("send queue to {peer} is full ({queued_bytes} bytes queued, limit {limit}); retry later or raise `send_queue_bytes`")]
    QueueFull {
        /// The peer's address.
        peer: String,
        /// Bytes queued now.
        queued_bytes: u64,
        /// The limit (`send_queue_bytes`).
        limit: u64,
    },
    /// No send queue space came within the timeout given (the duration): the peer is slow or
    /// gone; retry later, or raise `send_queue_bytes`.
    #[error("timed out after {0:?} waiting for send queue space")]
    SendTimeout(Duration),
    /// The session failed (protocol error, peer refused us ...): see the session error.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// An operating-system call failed (creating a poller or a worker thread): see the error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

fn no_transport(addr: &str, errors: &[(&'static str, TransportError)]) -> String {
    if errors.is_empty() {
        return "no transport configured: list at least one in `transports`".into();
    }
    let each: Vec<String> = errors.iter().map(|(t, e)| format!("{t}: {e}")).collect();
    format!("no transport can listen on {addr}: {}", each.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("no device")]
    struct NoDevice;

    #[test]
    fn transport_source_downcasts_to_the_transports_type() {
        let e = MessengerError::Transport {
            transport: "rdma",
            source: Box::new(NoDevice),
        };
        assert_eq!(e.to_string(), "rdma transport: no device");
        let source = std::error::Error::source(&e).unwrap();
        assert!(source.downcast_ref::<NoDevice>().is_some());
    }

    #[test]
    fn no_transport_lists_each_error_or_says_none_is_configured() {
        let e = MessengerError::NoTransport {
            addr: "10.0.0.1:6800".into(),
            errors: vec![("rdma", Box::new(NoDevice)), ("tcp", "in use".into())],
        };
        assert_eq!(
            e.to_string(),
            "no transport can listen on 10.0.0.1:6800: rdma: no device; tcp: in use"
        );
        let none = MessengerError::NoTransport {
            addr: String::new(),
            errors: Vec::new(),
        };
        assert!(none
            .to_string()
            .contains("list at least one in `transports`"));
    }
}

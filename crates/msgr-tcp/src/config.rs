//! Settings of a TCP messenger (the `msgr` facade fills them from a TOML file).

use std::net::SocketAddr;
use std::time::Duration;

use msgr_core::policy::PolicySet;
use msgr_core::wire::{DecodeLimits, EntityName};

/// Everything a [`crate::TcpMessenger`] needs. [`TcpConfig::new`] gives working defaults.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    pub name: EntityName,
    /// Address to listen on; port 0 picks a free one (see `Messenger::my_addr` after start).
    pub bind: SocketAddr,
    /// Our nonce (part of our identity, peers verify it); None: a random one at start.
    pub nonce: Option<u32>,
    /// Worker threads, each with its own poller (at least 1).
    pub workers: usize,
    pub policies: PolicySet,
    pub limits: DecodeLimits,
    /// Peers that do not finish the handshake in this time are disconnected.
    pub handshake_timeout: Duration,
    /// Send a keepalive this often on an open link (None: never).
    pub keepalive_interval: Option<Duration>,
    /// Fault a link that received nothing for this long (None: never).
    pub idle_timeout: Option<Duration>,
    /// Reconnect backoff: first retry delay after a failed attempt, and the cap.
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// Payload bytes a connection accepts before `send_message` returns `QueueFull`.
    pub send_queue_bytes: u64,
    /// Checksum the data section of sent messages (Ceph `ms_crc_data`); see
    /// `SessionConfig::crc_data`.
    pub crc_data: bool,
    /// TCP_NODELAY on every socket.
    pub nodelay: bool,
    /// SO_SNDBUF / SO_RCVBUF (None: the kernel's default, auto-tuned).
    pub send_buffer: Option<usize>,
    pub recv_buffer: Option<usize>,
    /// After activity, workers poll without sleeping for this long before blocking (zero: never).
    /// Lowers round-trip latency at the cost of CPU while traffic flows.
    pub busy_poll: Duration,
    /// Shut a socket down on about one in N reads or writes (0: never). For tests.
    pub inject_socket_failures: u64,
    /// How long `shutdown` lets workers write what is queued before failing it.
    pub shutdown_flush: Duration,
}

impl TcpConfig {
    pub fn new(name: EntityName, bind: SocketAddr) -> Self {
        TcpConfig {
            name,
            bind,
            nonce: None,
            workers: 2,
            policies: PolicySet::default(),
            limits: DecodeLimits::default(),
            handshake_timeout: Duration::from_secs(30),
            keepalive_interval: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(900)),
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(15),
            send_queue_bytes: 256 << 20,
            crc_data: true,
            nodelay: true,
            send_buffer: None,
            recv_buffer: None,
            busy_poll: Duration::ZERO,
            inject_socket_failures: 0,
            shutdown_flush: Duration::from_secs(2),
        }
    }
}

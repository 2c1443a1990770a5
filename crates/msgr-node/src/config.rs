//! [`NodeConfig`]: the settings of a node that do not depend on the transport.

use std::net::SocketAddr;
use std::time::Duration;

use msgr_core::auth::MODE_CRC;
use msgr_core::policy::PolicySet;
use msgr_core::protocol::Protocol;
use msgr_core::session_v2::V2Auth;
use msgr_core::wire::{DecodeLimits, EntityName};

use crate::clock::Clock;

/// Everything a [`crate::Node`] needs besides its transports. [`NodeConfig::new`] gives working
/// defaults; the `msgr` facade fills it from a TOML file.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Our entity name (`osd.3`).
    pub name: EntityName,
    /// Address to listen on (every transport listens on the same IP and port, see the crate
    /// docs); port 0 picks a free one (see `Messenger::my_addr` after start).
    pub bind: SocketAddr,
    /// Our nonce (part of our identity, peers verify it); None: a random one.
    pub nonce: Option<u32>,
    /// The protocol `connect` speaks to a peer (see also [`crate::Node::connect_with`]).
    pub protocol: Protocol,
    /// Accept peers speaking msgr1.
    pub accept_v1: bool,
    /// Accept peers speaking msgr2. With both accepted, each accepted link's protocol is read
    /// from the peer's banner (clients of both write theirs first), so one port serves both.
    /// With neither, msgr1 is accepted (a node always answers something on its port).
    pub accept_v2: bool,
    /// How msgr2 is spoken (dialed and accepted).
    pub msgr2: Msgr2Config,
    /// Worker threads, each with its own poller (at least 1).
    pub workers: usize,
    /// The session policy for each peer type.
    pub policies: PolicySet,
    /// Largest message sections accepted from peers (checked before allocating).
    pub limits: DecodeLimits,
    /// Peers that do not finish the handshake in this time are disconnected.
    pub handshake_timeout: Duration,
    /// Send a keepalive this often on an open link (None: never).
    pub keepalive_interval: Option<Duration>,
    /// Fault a link that received nothing for this long (None: never).
    pub idle_timeout: Option<Duration>,
    /// Reconnect backoff: first retry delay after a failed attempt, and the cap.
    pub reconnect_initial: Duration,
    /// Reconnect backoff: the longest delay between attempts (the delay doubles up to it).
    pub reconnect_max: Duration,
    /// Payload bytes a connection accepts before `send_message` returns `QueueFull`.
    pub send_queue_bytes: u64,
    /// Checksum the data section of sent messages (Ceph `ms_crc_data`).
    pub crc_data: bool,
    /// After activity, workers poll without sleeping for this long (zero: never): lower
    /// latency for CPU. Links that can (RDMA completion queues) are polled directly.
    pub busy_poll: Duration,
    /// Break a link (as a network fault would) on about one in N drives of it (0: never).
    /// Ceph's `ms_inject_socket_failures`; for tests.
    pub inject_failures: u64,
    /// Links (accepted and dialed) held at once; a peer connecting beyond this is closed at
    /// once and counted (`MessengerCounters::shed`). None: no limit but the descriptor limit
    /// (the TCP transport answers new peers the same way when it runs out of descriptors).
    pub max_connections: Option<usize>,
    /// Seed of the fault injection (with the worker index); None: from the nonce.
    pub seed: Option<u64>,
    /// How long `shutdown` lets workers write what is queued before failing it.
    pub shutdown_flush: Duration,
    /// The time source (a virtual one for simulations).
    pub clock: Clock,
    /// True: `start` spawns the worker threads. False: nothing runs until the application
    /// calls [`crate::Node::step`] (deterministic simulation on one thread).
    pub threads: bool,
}

impl NodeConfig {
    /// Defaults for `name` listening on `bind`: dials msgr1, accepts msgr1 and msgr2 (auth
    /// none, crc mode), 2 workers, default policies and limits, 30 s
    /// handshake timeout, 10 s keepalive, 900 s idle timeout, reconnect 200 ms doubling to
    /// 15 s, 256 MiB send queue per connection, data crcs on, no busy-polling, no fault
    /// injection, no connection limit, 2 s shutdown flush, threads on, the system clock.
    pub fn new(name: EntityName, bind: SocketAddr) -> Self {
        NodeConfig {
            name,
            bind,
            nonce: None,
            protocol: Protocol::V1,
            accept_v1: true,
            accept_v2: true,
            msgr2: Msgr2Config::default(),
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
            busy_poll: Duration::ZERO,
            inject_failures: 0,
            max_connections: None,
            seed: None,
            shutdown_flush: Duration::from_secs(2),
            clock: Clock::System,
            threads: true,
        }
    }
}

/// How a node speaks msgr2.
#[derive(Clone, Debug)]
pub struct Msgr2Config {
    /// Authentication: `None` (auth none), or cephx with our key (client side, to monitors).
    pub auth: V2Auth,
    /// The id half of our auth name (`admin` for `client.admin`).
    pub entity_id: String,
    /// Connection modes we offer or accept, preferred first (`msgr_core::auth::MODE_CRC`,
    /// `MODE_SECURE`).
    pub modes: Vec<u32>,
}

impl Default for Msgr2Config {
    /// Auth none, crc mode, entity id `admin`.
    fn default() -> Self {
        Msgr2Config {
            auth: V2Auth::None,
            entity_id: "admin".to_string(),
            modes: vec![MODE_CRC],
        }
    }
}

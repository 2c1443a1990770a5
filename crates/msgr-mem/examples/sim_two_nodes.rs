//! A deterministic two-node test of your own dispatcher, on one thread, in virtual time.
//!
//! Two nodes over a simulated mem network (seeded delays, an occasional dropped link), stepped
//! by hand: `threads = false`, one shared `VirtualClock`, fixed nonces and seeds. The client
//! sends pings to the server, whose dispatcher answers each with a pong. The same seed always
//! gives the same run (the printed trace hash), however fast the machine.
//!
//! ```text
//! cargo run -p msgr-mem --example sim_two_nodes [seed]
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use msgr_core::api::{ConnectionRef, Dispatcher, Messenger};
use msgr_core::message::Message;
use msgr_core::policy::{Policy, PolicySet};
use msgr_core::session::SessionError;
use msgr_core::wire::{EntityName, EntityType};
use msgr_mem::{run_for, MemNetwork, MemTransport, SimConfig};
use msgr_node::{Clock, Node, NodeConfig, VirtualClock};

const PING: u16 = 1;
const PONG: u16 = 2;

/// The dispatcher under test: answers pings, counts pongs, and notes what happened (with the
/// virtual time) so the run can be compared between two executions.
struct PingPong {
    clock: Arc<VirtualClock>,
    start: Instant,
    log: Mutex<Vec<String>>,
}

impl PingPong {
    fn note(&self, what: String) {
        let t = self.clock.now() - self.start;
        self.log.lock().push(format!("{t:?} {what}"));
    }
}

impl Dispatcher for PingPong {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        self.note(format!(
            "{} {} from {:?}",
            msg.msg_type,
            msg.tid,
            conn.peer_name()
        ));
        if msg.msg_type == PING {
            let pong = Message::new(PONG, msg.front.clone()).with_tid(msg.tid);
            // The connection is lossless: a pong survives link faults.
            conn.send_message(pong).expect("reply");
        }
    }
    fn ms_handle_fault(&self, _conn: &ConnectionRef, error: &SessionError) {
        self.note(format!("fault: {error}"));
    }
}

/// A node stepped by hand over `net`, on `clock`.
fn node(
    i: u16,
    kind: EntityType,
    policy: Policy,
    clock: &Arc<VirtualClock>,
    net: &Arc<MemNetwork>,
) -> (Node, Arc<PingPong>) {
    let bind = SocketAddr::from(([10, 0, 0, i as u8], 6800));
    let mut cfg = NodeConfig::new(EntityName::new(kind, i64::from(i)), bind);
    cfg.nonce = Some(1000 + u32::from(i));
    cfg.seed = Some(u64::from(i));
    cfg.workers = 1;
    cfg.threads = false;
    cfg.clock = Clock::Virtual(clock.clone());
    cfg.policies = PolicySet::new(policy);
    cfg.reconnect_initial = Duration::from_millis(10);
    let node = Node::new(cfg, vec![MemTransport::new(net.clone())]);
    let d = Arc::new(PingPong {
        clock: clock.clone(),
        start: clock.now(),
        log: Mutex::new(Vec::new()),
    });
    node.add_dispatcher(d.clone());
    node.start().expect("start");
    (node, d)
}

fn run(seed: u64) -> (usize, u64) {
    let clock = VirtualClock::new();
    let net = MemNetwork::simulated(
        Clock::Virtual(clock.clone()),
        SimConfig {
            seed,
            min_delay: Duration::from_micros(50),
            max_delay: Duration::from_millis(5),
            kill_one_in: 25,
        },
    );
    let (server, s) = node(1, EntityType::OSD, Policy::stateful_server(), &clock, &net);
    let (client, c) = node(
        2,
        EntityType::CLIENT,
        Policy::lossless_client(),
        &clock,
        &net,
    );
    let nodes = [server.clone(), client.clone()];

    let conn = client
        .connect_to(EntityType::OSD, &server.my_addr())
        .expect("connect");
    for tid in 1..=20 {
        conn.send_message(Message::new(PING, vec![tid as u8]).with_tid(tid))
            .expect("send");
        // Let 10 ms of virtual time pass between pings.
        run_for(&nodes, &net, &clock, Duration::from_millis(10));
    }
    run_for(&nodes, &net, &clock, Duration::from_secs(2));

    let pongs = c.log.lock().iter().filter(|l| l.contains(" 2 ")).count();
    client.shutdown();
    server.shutdown();
    // A trace hash: equal for equal runs.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for line in s.log.lock().iter().chain(c.log.lock().iter()) {
        for b in line.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    println!(
        "seed {seed}: {pongs} pongs, {} links dropped by the network, trace {h:016x}",
        net.stats().kills
    );
    (pongs, h)
}

fn main() {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let first = run(seed);
    let again = run(seed);
    assert_eq!(first.0, 20, "every ping answered exactly once");
    assert_eq!(first, again, "the same seed replays exactly");
    println!("replayed seed {seed} exactly");
}

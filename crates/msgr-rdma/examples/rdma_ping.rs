//! Round-trip latency and one-way streaming between two RDMA messengers, to compare with
//! `ib_send_lat` / `ib_send_bw` on the same device in the same VM boot.
//!
//!   RDMA_IP=10.0.2.15 rdma_ping [poll_us]
//!
//! `poll_us`: the nodes' busy-poll window in microseconds (0: sleep on the completion channels).
//! The ping-pong runs entirely on the two nodes' worker threads (the client's dispatcher sends
//! the next request when a reply arrives), as perftest's two processes do; the main thread only
//! waits.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use msgr_core::api::{ConnectionRef, Dispatcher, Messenger};
use msgr_core::message::Message;
use msgr_core::wire::{EntityName, EntityType};
use msgr_rdma::{RdmaConfig, RdmaMessenger, RdmaOptions};

/// Echoes type-1 messages, counts the rest.
struct Server {
    bytes: AtomicU64,
    done: (Mutex<u64>, Condvar),
}
impl Dispatcher for Server {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        if msg.msg_type == 1 {
            let _ = conn.send_message(Message::new(2, msg.front.clone()));
            return;
        }
        let b = self
            .bytes
            .fetch_add(msg.payload_len() as u64, Ordering::Relaxed)
            + msg.payload_len() as u64;
        let (m, cv) = &self.done;
        *m.lock().unwrap() = b;
        cv.notify_all();
    }
}

/// Sends the next request from the reply's dispatch until `rounds` replies came back.
struct Client {
    rounds: u64,
    count: AtomicU64,
    stamps: Mutex<Vec<Instant>>,
    done: (Mutex<bool>, Condvar),
}
impl Dispatcher for Client {
    fn ms_dispatch(&self, conn: &ConnectionRef, _msg: Message) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        self.stamps.lock().unwrap().push(Instant::now());
        if n < self.rounds {
            let _ = conn.send_message(Message::new(1, vec![0u8; 64]));
        } else {
            let (m, cv) = &self.done;
            *m.lock().unwrap() = true;
            cv.notify_all();
        }
    }
}

fn main() {
    let ip: std::net::IpAddr = std::env::var("RDMA_IP")
        .expect("set RDMA_IP")
        .parse()
        .unwrap();
    let poll_us: u64 = std::env::args().nth(1).map_or(0, |a| a.parse().unwrap());
    let mk = |kind, num| {
        let mut c = RdmaConfig::new(EntityName { kind, num }, SocketAddr::new(ip, 0));
        c.rdma = RdmaOptions::default();
        c.node.busy_poll = Duration::from_micros(poll_us);
        c.node.keepalive_interval = None;
        RdmaMessenger::new(c)
    };
    let sd = Arc::new(Server {
        bytes: AtomicU64::new(0),
        done: (Mutex::new(0), Condvar::new()),
    });
    let rounds = 2000u64;
    let cd = Arc::new(Client {
        rounds,
        count: AtomicU64::new(0),
        stamps: Mutex::new(Vec::new()),
        done: (Mutex::new(false), Condvar::new()),
    });
    let server = mk(EntityType::OSD, 0);
    server.add_dispatcher(sd.clone());
    server.start().unwrap();
    let client = mk(EntityType::CLIENT, 1);
    client.add_dispatcher(cd.clone());
    client.start().unwrap();
    let conn = client
        .connect_to(EntityType::OSD, &server.my_addr())
        .unwrap();

    let t0 = Instant::now();
    conn.send_message(Message::new(1, vec![0u8; 64])).unwrap();
    {
        let (m, cv) = &cd.done;
        let mut g = m.lock().unwrap();
        while !*g {
            g = cv.wait(g).unwrap();
        }
    }
    let stamps = cd.stamps.lock().unwrap().clone();
    let mut rtts: Vec<Duration> = stamps.windows(2).map(|w| w[1] - w[0]).skip(100).collect();
    rtts.sort();
    let total = stamps.last().unwrap().duration_since(t0);
    println!(
        "msgr-rdma 64B ping-pong x {rounds} (poll_us={poll_us}): round trip median {:.2} us, avg {:.2} us -> one-way (ib_send_lat's unit) median {:.2} us, avg {:.2} us",
        rtts[rtts.len() / 2].as_secs_f64() * 1e6,
        total.as_secs_f64() * 1e6 / rounds as f64,
        rtts[rtts.len() / 2].as_secs_f64() * 1e6 / 2.0,
        total.as_secs_f64() * 1e6 / rounds as f64 / 2.0,
    );

    for (size, count) in [(65536usize, 1000u64), (1 << 20, 64)]
        .into_iter()
        .filter(|_| std::env::var_os("NO_STREAM").is_none())
    {
        let base = sd.bytes.load(Ordering::Relaxed);
        let want = base + size as u64 * count;
        let payload = bytes::Bytes::from(vec![7u8; size]);
        let t = Instant::now();
        for _ in 0..count {
            conn.send_message(Message::new(3, "").with_data(payload.clone()))
                .unwrap();
        }
        let (m, cv) = &sd.done;
        let mut g = m.lock().unwrap();
        while *g < want {
            g = cv.wait(g).unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "msgr-rdma stream {size} B x {count} (poll_us={poll_us}): {:.2} MB/s",
            (size as u64 * count) as f64 / secs / 1e6
        );
    }
    println!("client rdma counters: {:?}", client.rdma_counters());
    client.shutdown();
    server.shutdown();
}

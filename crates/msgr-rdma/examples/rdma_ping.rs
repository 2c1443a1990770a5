//! Round-trip latency and one-way streaming between two RDMA messengers in one process, to
//! compare with `ib_send_lat` / `ib_send_bw` on the same device in the same VM boot.
//!
//!   rdma_ping [poll_us]     (needs RDMA_IP: the IP of the netdev under the RDMA device)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use msgr_core::api::{ConnectionRef, Dispatcher, Messenger};
use msgr_core::message::Message;
use msgr_core::wire::{EntityName, EntityType};
use msgr_rdma::{RdmaConfig, RdmaMessenger, RdmaOptions};

struct Server {
    bytes: AtomicU64,
    msgs: AtomicU64,
}
impl Dispatcher for Server {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        self.bytes.fetch_add(msg.payload_len() as u64, Ordering::Relaxed);
        self.msgs.fetch_add(1, Ordering::Relaxed);
        if msg.msg_type == 1 {
            let _ = conn.send_message(Message::new(2, msg.front.clone()));
        }
    }
}
struct Client {
    replies: AtomicU64,
}
impl Dispatcher for Client {
    fn ms_dispatch(&self, _conn: &ConnectionRef, _msg: Message) {
        self.replies.fetch_add(1, Ordering::Release);
    }
}

fn main() {
    let ip: std::net::IpAddr = std::env::var("RDMA_IP").expect("set RDMA_IP").parse().unwrap();
    let poll_us: u64 = std::env::args().nth(1).map_or(0, |a| a.parse().unwrap());
    let opts = RdmaOptions {
        poll_us,
        ..Default::default()
    };
    let mk = |kind, num| {
        let mut c = RdmaConfig::new(EntityName { kind, num }, SocketAddr::new(ip, 0));
        c.rdma = opts.clone();
        c.keepalive_interval = None;
        RdmaMessenger::new(c)
    };
    let sd = Arc::new(Server {
        bytes: AtomicU64::new(0),
        msgs: AtomicU64::new(0),
    });
    let cd = Arc::new(Client {
        replies: AtomicU64::new(0),
    });
    let server = mk(EntityType::OSD, 0);
    server.add_dispatcher(sd.clone());
    server.start().unwrap();
    let client = mk(EntityType::CLIENT, 1);
    client.add_dispatcher(cd.clone());
    client.start().unwrap();
    let conn = client.connect_to(EntityType::OSD, &server.my_addr()).unwrap();

    // 64 B round trips (one outstanding)
    let rounds = 2000u64;
    let mut lat = Vec::with_capacity(rounds as usize);
    for i in 0..rounds + 100 {
        let t = Instant::now();
        conn.send_message(Message::new(1, vec![0u8; 64])).unwrap();
        while cd.replies.load(Ordering::Acquire) < i + 1 {
            std::hint::spin_loop();
        }
        if i >= 100 {
            lat.push(t.elapsed());
        }
    }
    lat.sort();
    let avg = lat.iter().sum::<Duration>() / lat.len() as u32;
    println!(
        "msgr-rdma 64B round trip (poll_us={poll_us}): median {:.2} us, avg {:.2} us, one-way median {:.2} us",
        lat[lat.len() / 2].as_secs_f64() * 1e6,
        avg.as_secs_f64() * 1e6,
        lat[lat.len() / 2].as_secs_f64() * 1e6 / 2.0
    );

    for (size, count) in [(65536usize, 2000u64), (1 << 20, 200)] {
        let base_b = sd.bytes.load(Ordering::Relaxed);
        let payload = bytes::Bytes::from(vec![7u8; size]);
        let t = Instant::now();
        for _ in 0..count {
            conn.send_message(Message::new(3, "").with_data(payload.clone())).unwrap();
        }
        let want = base_b + size as u64 * count;
        while sd.bytes.load(Ordering::Relaxed) < want {
            std::thread::sleep(Duration::from_micros(200));
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "msgr-rdma stream {size} B x {count}: {:.1} MB/s",
            (size as u64 * count) as f64 / secs / 1e6
        );
    }
    let rc = client.rdma_counters();
    println!("client counters: {rc:?}");
    client.shutdown();
    server.shutdown();
}

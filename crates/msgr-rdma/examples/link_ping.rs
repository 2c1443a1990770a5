//! 64-byte ping-pong on the bare link layer (verbs + credits + copies, no msgr1 session), busy
//! polling like `ib_send_lat`: separates the transport's own cost from the session's.
//!
//!   RDMA_IP=10.0.2.15 link_ping

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use msgr_rdma::endpoint::{Endpoint, EndpointEvent};
use msgr_rdma::link::{Hello, Link};
use msgr_rdma::RdmaOptions;

/// Process rdma_cm events until a link is established (busy polling).
fn established(ep: &mut Endpoint) -> Link {
    let mut evs = Vec::new();
    loop {
        ep.process(&mut |_, _| true, &mut evs).unwrap();
        for e in evs.drain(..) {
            if let EndpointEvent::Established { link, .. } = e {
                return *link;
            }
        }
    }
}

fn main() {
    let ip: std::net::IpAddr = std::env::var("RDMA_IP")
        .expect("set RDMA_IP")
        .parse()
        .unwrap();
    let opts = RdmaOptions::default();
    let server_opts = opts.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let rounds = 2000usize;
    // server thread: echo
    let server = std::thread::spawn(move || {
        let mut ep = Endpoint::new(server_opts.clone(), Hello::from_options(&server_opts)).unwrap();
        let addr = ep.listen(SocketAddr::new(ip, 0)).unwrap();
        tx.send(addr).unwrap();
        let mut link = established(&mut ep);
        let mut buf = BytesMut::new();
        let mut n = 0;
        while n < rounds {
            link.poll_completions().unwrap();
            link.read_into(&mut buf, usize::MAX).unwrap();
            while buf.len() >= 64 {
                let m = buf.split_to(64).freeze();
                link.queue(m);
                n += 1;
            }
            link.flush().unwrap();
        }
        // let the last replies complete
        for _ in 0..100_000 {
            link.poll_completions().unwrap();
        }
    });
    let addr = rx.recv().unwrap();
    let mut ep = Endpoint::new(opts.clone(), Hello::from_options(&opts)).unwrap();
    ep.connect(addr).unwrap();
    let mut link = established(&mut ep);
    let mut buf = BytesMut::new();
    let msg = Bytes::from(vec![1u8; 64]);
    let mut rtts = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        link.queue(msg.clone());
        link.flush().unwrap();
        while buf.len() < 64 {
            link.poll_completions().unwrap();
            link.read_into(&mut buf, usize::MAX).unwrap();
            link.flush().unwrap();
        }
        buf.clear();
        rtts.push(t.elapsed());
    }
    server.join().unwrap();
    rtts.sort();
    let med = rtts[rtts.len() / 2].as_secs_f64() * 1e6;
    let avg = rtts.iter().map(|d| d.as_secs_f64()).sum::<f64>() / rtts.len() as f64 * 1e6;
    println!(
        "link-level 64B ping-pong x {rounds} (busy poll): round trip median {med:.2} us avg {avg:.2} us -> one-way median {:.2} us avg {:.2} us",
        med / 2.0,
        avg / 2.0
    );
}

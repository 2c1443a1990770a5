//! A lossless client that keeps working across a server restart.
//!
//! The client streams numbered requests to a server under the `lossless_client` policy; half way
//! through, the server is shut down and a new one starts on the same address (same port and
//! nonce, as a daemon restarted by its supervisor). While it is down the client's session
//! queues and reconnects with backoff; when it is back the new server has no session state, so
//! the client is told its session was reset and msgr hands back every request that may not have
//! arrived (`ms_handle_remote_reset_undelivered`). The client resends those, so every request
//! is answered; requests the old server answered twice are recognised by their tid.
//!
//! Run: `cargo run -p msgr --example lossless_restart`

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use msgr::{Config, ConnectionRef, Dispatcher, EntityType, Message, Messenger, Node};

const REQUESTS: u64 = 2_000;

/// Answers each request with its tid.
struct Server;
impl Dispatcher for Server {
    fn ms_dispatch(&self, conn: &ConnectionRef, req: Message) {
        conn.send_message(Message::new(2, Vec::new()).with_tid(req.tid))
            .ok();
    }
}

#[derive(Default)]
struct Client {
    answered: Mutex<HashSet<u64>>,
    duplicates: Mutex<u64>,
    resent: Mutex<u64>,
    resets: Mutex<u64>,
}

impl Dispatcher for Client {
    fn ms_dispatch(&self, _conn: &ConnectionRef, reply: Message) {
        if !self.answered.lock().unwrap().insert(reply.tid) {
            *self.duplicates.lock().unwrap() += 1;
        }
    }
    fn ms_handle_remote_reset(&self, conn: &ConnectionRef) {
        *self.resets.lock().unwrap() += 1;
        println!("client: {} lost our session (restarted)", conn.peer_addr());
    }
    fn ms_handle_remote_reset_undelivered(&self, conn: &ConnectionRef, undelivered: Vec<Message>) {
        println!(
            "client: resending {} requests the reset may have lost",
            undelivered.len()
        );
        *self.resent.lock().unwrap() += undelivered.len() as u64;
        for msg in undelivered {
            conn.send_message(msg).expect("resend");
        }
    }
}

impl Client {
    /// Waits (up to 30 s) until `n` requests are answered; returns how many are.
    fn wait_for(&self, n: u64) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.answered.lock().unwrap().len() < n as usize && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.answered.lock().unwrap().len()
    }
}

/// A server on `bind` with a fixed nonce, so a restart keeps its address.
fn server(bind: &str) -> Result<Node, Box<dyn std::error::Error>> {
    let toml = format!("name = \"osd.0\"\nbind = \"{bind}\"\nnonce = 7\n");
    let node = msgr::from_config(&Config::from_toml_str(&toml, "server")?)?;
    node.add_dispatcher(Arc::new(Server));
    node.start()?;
    Ok(node)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let first = server("127.0.0.1:0")?;
    let addr = first.my_addr();
    let bind = addr
        .addr
        .expect("a bound server has an IP and port")
        .to_string();
    let toml = "name = \"client.1\"\nbind = \"127.0.0.1:0\"\n\
                [policy.osd]\npreset = \"lossless_client\"\n\
                [timeouts]\nreconnect_initial_ms = 20\nreconnect_max_ms = 200\n";
    let client = Arc::new(Client::default());
    let node = msgr::from_config(&Config::from_toml_str(toml, "client")?)?;
    node.add_dispatcher(client.clone());
    node.start()?;
    let conn = node.connect_to(EntityType::OSD, &addr)?;

    let mut first = Some(first);
    for tid in 1..=REQUESTS {
        conn.send_message(Message::new(1, tid.to_le_bytes().to_vec()).with_tid(tid))?;
        if tid == REQUESTS / 4 {
            // Let the session settle: a quarter of the requests answered before the restart.
            client.wait_for(REQUESTS / 4);
        }
        if tid == REQUESTS / 2 {
            println!("server: restarting at {addr} after {tid} requests");
            first.take().expect("first server").shutdown();
            std::thread::sleep(Duration::from_millis(100));
        }
        if tid == REQUESTS / 2 + 100 {
            // The same address; the port is free again now that the first one is gone.
            first = Some(server(&bind)?);
        }
    }
    let answered = client.wait_for(REQUESTS);
    println!(
        "client: {answered}/{REQUESTS} answered, {} resent, {} answered twice, {} reset(s)",
        client.resent.lock().unwrap(),
        client.duplicates.lock().unwrap(),
        client.resets.lock().unwrap()
    );
    node.shutdown();
    if let Some(s) = first.take() {
        s.shutdown();
    }
    if answered < REQUESTS as usize {
        return Err(format!("only {answered} of {REQUESTS} requests were answered").into());
    }
    Ok(())
}

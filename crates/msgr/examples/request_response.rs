//! Request / response over msgr with a timeout per request.
//!
//! msgr carries one-way messages; a request/response protocol is built on the message's `tid`
//! (transaction id, opaque to msgr): the client numbers each request, the server answers with
//! the same tid, and the client matches answers to waiting callers. A request that gets no
//! answer in time fails with a timeout instead of hanging the caller.
//!
//! Run: `cargo run -p msgr --example request_response`

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use msgr::{Config, ConnectionRef, Dispatcher, EntityType, Message, Messenger};

/// Request types of this example's protocol.
const ADD: u16 = 100;
const IGNORED: u16 = 101;
const SUM: u16 = 102;

/// The server: answers ADD with the sum of the request's numbers; never answers IGNORED.
struct Server;
impl Dispatcher for Server {
    fn ms_dispatch(&self, conn: &ConnectionRef, req: Message) {
        if req.msg_type != ADD {
            return;
        }
        let sum: u64 = req
            .front
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .sum();
        let reply = Message::new(SUM, sum.to_le_bytes().to_vec()).with_tid(req.tid);
        if let Err(e) = conn.send_message(reply) {
            eprintln!("server: cannot answer tid {}: {e}", req.tid);
        }
    }
}

/// The client: callers waiting for an answer, by tid.
#[derive(Default)]
struct Client {
    next_tid: AtomicU64,
    waiting: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
}

impl Dispatcher for Client {
    fn ms_dispatch(&self, _conn: &ConnectionRef, reply: Message) {
        // An answer nobody waits for any more (its caller timed out) is dropped.
        if let Some(caller) = self.waiting.lock().unwrap().remove(&reply.tid) {
            caller.send(reply).ok();
        }
    }
}

impl Client {
    /// Sends `req` on `conn` and waits up to `timeout` for the answer with its tid.
    fn call(
        &self,
        conn: &ConnectionRef,
        req: Message,
        timeout: Duration,
    ) -> Result<Message, String> {
        let tid = self.next_tid.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel();
        self.waiting.lock().unwrap().insert(tid, tx);
        if let Err(e) = conn.send_message(req.with_tid(tid)) {
            self.waiting.lock().unwrap().remove(&tid);
            return Err(format!("request {tid} not sent: {e}"));
        }
        rx.recv_timeout(timeout).map_err(|_| {
            self.waiting.lock().unwrap().remove(&tid);
            format!("request {tid} got no answer within {timeout:?}")
        })
    }
}

fn numbers(ns: &[u64]) -> Vec<u8> {
    ns.iter().flat_map(|n| n.to_le_bytes()).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let toml = |name| format!("name = \"{name}\"\nbind = \"127.0.0.1:0\"\n");
    let server = msgr::from_config(&Config::from_toml_str(&toml("osd.0"), "server")?)?;
    server.add_dispatcher(Arc::new(Server));
    server.start()?;

    let client = Arc::new(Client::default());
    let node = msgr::from_config(&Config::from_toml_str(&toml("client.1"), "client")?)?;
    node.add_dispatcher(client.clone());
    node.start()?;
    let conn = node.connect_to(EntityType::OSD, &server.my_addr())?;

    let patience = Duration::from_secs(10);
    for ns in [&[1u64, 2, 3][..], &[40, 2], &[]] {
        let reply = client.call(&conn, Message::new(ADD, numbers(ns)), patience)?;
        let sum = u64::from_le_bytes(reply.front[..8].try_into()?);
        println!("add {ns:?} = {sum} (tid {})", reply.tid);
        assert_eq!(sum, ns.iter().sum::<u64>());
    }
    // The server never answers this one: the caller gets a timeout, not a hang.
    let short = Duration::from_millis(300);
    match client.call(&conn, Message::new(IGNORED, Vec::new()), short) {
        Ok(reply) => return Err(format!("unexpected answer {reply:?}").into()),
        Err(e) => println!("as expected: {e}"),
    }
    node.shutdown();
    server.shutdown();
    Ok(())
}

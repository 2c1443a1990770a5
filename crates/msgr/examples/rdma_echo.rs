//! The echo example over RDMA (`transports = ["rdma"]`): the same code as `echo.rs`, another
//! transport in the configuration.
//!
//! Needs msgr's `rdma` feature and an RDMA device whose netdev has the IP in `$RDMA_IP`
//! (rdma_cm cannot use 127.0.0.1). Without a device, `start` fails saying what to do. Inside the
//! repository's Soft-RoCE VM (which sets `RDMA_IP`):
//!
//!   cargo build -p msgr --features rdma --example rdma_echo
//!   scripts/rdma-vm/run.sh target/debug/examples/rdma_echo

use std::sync::{mpsc, Arc};
use std::time::Duration;

use msgr::{Config, ConnectionRef, Dispatcher, EntityType, Message, Messenger};

/// Every message goes back on the connection it came from.
struct Echo;
impl Dispatcher for Echo {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        conn.send_message(msg).expect("echo");
    }
}

/// Replies go to the main thread.
struct Replies(mpsc::Sender<Message>);
impl Dispatcher for Replies {
    fn ms_dispatch(&self, _conn: &ConnectionRef, msg: Message) {
        self.0.send(msg).ok();
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rdma_echo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let ip = std::env::var("RDMA_IP").map_err(|_| {
        "set RDMA_IP to the IP of the netdev under your RDMA device (see `rdma link show`)"
    })?;
    let toml = |name| format!("name = \"{name}\"\ntransports = [\"rdma\"]\nbind = \"{ip}:0\"\n");
    let server = msgr::from_config(&Config::from_toml_str(&toml("osd.0"), "server")?)?;
    server.add_dispatcher(Arc::new(Echo));
    server.start()?;
    let client = msgr::from_config(&Config::from_toml_str(&toml("client.1"), "client")?)?;
    let (tx, replies) = mpsc::channel();
    client.add_dispatcher(Arc::new(Replies(tx)));
    client.start()?;
    let conn = client.connect_to(EntityType::OSD, &server.my_addr())?;
    for i in 0..3 {
        conn.send_message(Message::new(1, format!("hello {i} over rdma")))?;
        let reply = replies.recv_timeout(Duration::from_secs(10))?;
        println!("echoed: {}", String::from_utf8_lossy(&reply.front));
    }
    println!("carried by: {}", conn.transport().unwrap_or("?"));
    client.shutdown();
    server.shutdown();
    Ok(())
}

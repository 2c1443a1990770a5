use std::sync::{mpsc, Arc};
use std::time::Duration;

use msgr::{Config, ConnectionRef, Dispatcher, EntityType, Message, Messenger};

/// The server's side: every message goes back on the connection it came from.
struct Echo;
impl Dispatcher for Echo {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        conn.send_message(msg).expect("echo");
    }
}

/// The client's side: replies go to the main thread.
struct Replies(mpsc::Sender<Message>);
impl Dispatcher for Replies {
    fn ms_dispatch(&self, _conn: &ConnectionRef, msg: Message) {
        self.0.send(msg).ok();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let toml = |name| format!("name = \"{name}\"\nbind = \"127.0.0.1:0\"\n");
    let server = msgr::from_config(&Config::from_toml_str(&toml("osd.0"), "server")?)?;
    server.add_dispatcher(Arc::new(Echo));
    server.start()?;
    let client = msgr::from_config(&Config::from_toml_str(&toml("client.1"), "client")?)?;
    let (tx, replies) = mpsc::channel();
    client.add_dispatcher(Arc::new(Replies(tx)));
    client.start()?;
    let hello = Message::new(1, &b"hello"[..]);
    client.send_to(hello, EntityType::OSD, &server.my_addr())?;

    let reply = replies.recv_timeout(Duration::from_secs(10))?;
    println!("echoed: {}", String::from_utf8_lossy(&reply.front));
    client.shutdown();
    server.shutdown();
    Ok(())
}

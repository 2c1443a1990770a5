//! Many connections and exhausted resources, tried as an operator would: a real `msgrd serve`
//! process, with independent msgr1 clients on raw sockets (msgr-core sessions over blocking
//! sockets, one entity each).
//!
//! - one descriptor per session (counted in `/proc/PID/fd`);
//! - `max_connections`: peers beyond it are closed on arrival, open ones keep working, a new
//!   peer is served again once one leaves;
//! - a low `ulimit -n`: the same at descriptor exhaustion (closed at once, never left in the
//!   backlog), and service recovers by itself;
//! - 10,000 idle sessions (a few seconds; fewer, with a message, where the hard descriptor
//!   limit is below 10,200), with the server's RSS per session reported and a good client
//!   served while they are open.
//!
//! Waits have generous safety nets only (a hung server fails the test instead of hanging it);
//! nothing asserts how long anything took.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use msgr_core::policy::Policy;
use msgr_core::session::{Session, SessionConfig, SessionEvent};
use msgr_core::wire::{EntityAddr, EntityName, EntityType};
use msgr_core::Message;

/// Safety net for every blocking read: a server that answers nothing this long hangs.
const WAIT: Duration = Duration::from_secs(20);

/// A `msgrd serve` child process under a descriptor limit.
struct Server {
    child: Child,
    addr: EntityAddr,
    stderr: PathBuf,
    dir: PathBuf,
}

impl Server {
    /// Start `msgrd serve` with `extra` appended to a minimal config, under `ulimit -n nofile`.
    fn start(tag: &str, nofile: u64, extra: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("msgrd-limits-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("serve.toml");
        std::fs::write(
            &config,
            format!(
                "name = \"osd.0\"\nbind = \"127.0.0.1:0\"\nworkers = 2\n\
                 [policy.client]\npreset = \"stateless_server\"\n{extra}"
            ),
        )
        .unwrap();
        let stderr = dir.join("serve.log");
        // `exec`: the shell's process becomes msgrd, with the lowered limit.
        let script = format!(
            "ulimit -n {nofile} && exec \"$0\" serve --config \"$1\"",
            nofile = nofile
        );
        let mut child = Command::new("sh")
            .args(["-c", &script, env!("CARGO_BIN_EXE_msgrd")])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(addr) = line.trim().strip_prefix("LISTENING ") else {
            let _ = child.kill();
            let log = std::fs::read_to_string(&stderr).unwrap_or_default();
            panic!("msgrd serve did not start (stdout {line:?}):\n{log}");
        };
        let (sock, nonce) = addr.split_once('/').unwrap();
        let addr = EntityAddr::new(sock.parse().unwrap(), nonce.parse().unwrap());
        Server {
            child,
            addr,
            stderr,
            dir,
        }
    }

    /// Descriptors the server holds now.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }

    /// The server's resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// SIGTERM, wait for the exit, return what it logged (its counters are the last line).
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        let log = std::fs::read_to_string(&self.stderr).unwrap();
        assert!(status.success(), "msgrd serve exited with {status}:\n{log}");
        let _ = std::fs::remove_dir_all(&self.dir);
        log
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `shed N` from the counters line msgrd prints at exit.
fn shed_count(log: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("serve counters:"))
        .unwrap_or_else(|| panic!("no counters in the log:\n{log}"));
    let after = line.split("shed ").nth(1).unwrap();
    after.split(',').next().unwrap().trim().parse().unwrap()
}

/// An independent msgr1 client: one session over one blocking socket.
struct Client {
    sock: TcpStream,
    session: Session,
    buf: BytesMut,
}

/// How a client's attempt ended when it was not served.
#[derive(Debug)]
struct Closed(String);

impl Client {
    /// Connect and run the handshake until the session is open. Err: the server closed the
    /// connection (it was shed). Panics if the server leaves it hanging.
    fn connect(server: EntityAddr, nonce: u32) -> Result<Client, Closed> {
        let sock = TcpStream::connect(server.addr.unwrap()).map_err(|e| Closed(e.to_string()))?;
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let me = EntityAddr::new("127.0.0.1:0".parse().unwrap(), nonce);
        let cfg = Arc::new(SessionConfig::new(
            EntityName::new(EntityType::CLIENT, i64::from(nonce)),
            me,
        ));
        let now = Instant::now();
        let mut session =
            Session::connect(cfg, server, EntityType::OSD, Policy::lossy_client(), now);
        session.link_up(now);
        let mut c = Client {
            sock,
            session,
            buf: BytesMut::new(),
        };
        c.pump_until(|e| matches!(e, SessionEvent::Connected { .. }))?;
        Ok(c)
    }

    /// Write what the session has, read, until `done` sees an event.
    fn pump_until(&mut self, mut done: impl FnMut(&SessionEvent) -> bool) -> Result<(), Closed> {
        let mut out = Vec::new();
        loop {
            while self.session.poll_transmit(&mut out) > 0 {}
            for c in out.drain(..) {
                self.sock
                    .write_all(&c)
                    .map_err(|e| Closed(format!("write: {e}")))?;
            }
            while let Some(ev) = self.session.poll_event() {
                if done(&ev) {
                    return Ok(());
                }
                if let SessionEvent::Reset { error, .. } | SessionEvent::Faulted { error, .. } = &ev
                {
                    return Err(Closed(error.to_string()));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = match self.sock.read(&mut chunk) {
                Ok(0) => return Err(Closed("EOF".into())),
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("the server left a client hanging for {WAIT:?} (no answer, no close)")
                }
                Err(e) => return Err(Closed(e.to_string())),
            };
            self.buf.extend_from_slice(&chunk[..n]);
            self.session
                .handle_input(&mut self.buf, Instant::now())
                .map_err(|e| Closed(e.to_string()))?;
        }
    }

    /// Send a message and wait for its echo.
    fn round_trip(&mut self, tid: u64) -> Result<(), Closed> {
        let payload = tid.to_le_bytes().repeat(8);
        self.session
            .send_message(Message::new(1, payload.clone()).with_tid(tid));
        self.pump_until(
            |e| matches!(e, SessionEvent::Message(m) if m.tid == tid && m.front[..] == payload[..]),
        )
    }
}

/// A new client, served: handshake and one echo.
fn served(server: EntityAddr, nonce: u32) -> Result<Client, Closed> {
    let mut c = Client::connect(server, nonce)?;
    c.round_trip(u64::from(nonce))?;
    Ok(c)
}

/// Try new clients until one is served (the server recovers once it notices closed sessions;
/// each refused attempt was answered at once, never left hanging).
fn served_again(server: EntityAddr, first_nonce: u32) -> (Client, u32) {
    for attempt in 0..2000u32 {
        match served(server, first_nonce + attempt) {
            Ok(c) => return (c, attempt),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    panic!("the server did not serve new clients again after sessions closed");
}

/// Every session costs the server one descriptor.
#[test]
fn one_descriptor_per_session() {
    let server = Server::start("fds", 1024, "");
    let warm = served(server.addr, 1).unwrap();
    let before = server.fds();
    let clients: Vec<Client> = (0..20)
        .map(|i| served(server.addr, 100 + i).unwrap())
        .collect();
    let after = server.fds();
    assert_eq!(
        after - before,
        clients.len(),
        "descriptors held for {} sessions",
        clients.len()
    );
    drop((warm, clients));
    server.stop();
}

/// `[limits] max_connections`: peers beyond it are closed on arrival and counted; the open
/// sessions keep working; a new peer is served once one leaves.
#[test]
fn max_connections_sheds_new_peers_and_recovers() {
    const MAX: u32 = 8;
    let server = Server::start("max", 1024, &format!("[limits]\nmax_connections = {MAX}\n"));
    let mut open: Vec<Client> = (0..MAX)
        .map(|i| served(server.addr, i + 1).unwrap())
        .collect();
    for i in 0..5 {
        let refused = Client::connect(server.addr, 1000 + i);
        assert!(
            refused.is_err(),
            "peer {} beyond max_connections was served",
            MAX + i + 1
        );
    }
    for (i, c) in open.iter_mut().enumerate() {
        c.round_trip(500 + i as u64)
            .expect("an open session keeps working at max_connections");
    }
    drop(open.pop());
    let (mut again, attempts) = served_again(server.addr, 2000);
    again.round_trip(7).unwrap();
    drop((open, again));
    let log = server.stop();
    assert!(log.contains("at max_connections (8 links)"), "{log}");
    assert!(log.contains("below max_connections again"), "{log}");
    assert_eq!(shed_count(&log), 5 + u64::from(attempts), "{log}");
}

/// Under a low `ulimit -n`: at descriptor exhaustion new peers are closed at once (not left in
/// the backlog), open sessions keep working, and service recovers when sessions close.
#[test]
fn descriptor_exhaustion_sheds_new_peers_and_recovers() {
    const NOFILE: u64 = 64;
    let server = Server::start("nofile", NOFILE, "");
    let mut open = Vec::new();
    let mut refused = 0u64;
    for nonce in 1..(NOFILE as u32 * 2) {
        match served(server.addr, nonce) {
            Ok(c) => open.push(c),
            Err(e) => {
                eprintln!("peer {nonce} refused: {}", e.0);
                refused += 1;
                if refused == 5 {
                    break;
                }
            }
        }
    }
    assert_eq!(
        refused,
        5,
        "{} sessions under ulimit -n {NOFILE}, none refused",
        open.len()
    );
    // Everything but the process's own few descriptors carries a session.
    assert!(
        open.len() as u64 >= NOFILE - 16,
        "only {} sessions under ulimit -n {NOFILE}",
        open.len()
    );
    eprintln!(
        "ulimit -n {NOFILE}: {} sessions, then new peers closed at once",
        open.len()
    );
    for (i, c) in open.iter_mut().enumerate() {
        c.round_trip(10_000 + i as u64)
            .expect("an open session keeps working while descriptors are exhausted");
    }
    open.truncate(open.len() - 3);
    let (mut again, attempts) = served_again(server.addr, 5000);
    again.round_trip(9).unwrap();
    drop((open, again));
    let log = server.stop();
    assert!(log.contains("out of file descriptors"), "{log}");
    assert!(log.contains("file descriptors available again"), "{log}");
    // Every refused attempt was a shed peer, counted.
    let shed = shed_count(&log);
    assert_eq!(shed, refused + u64::from(attempts), "{log}");
}

/// Raise this process's descriptor limit towards `want` (up to the hard limit). Returns the
/// soft limit in force.
fn raise_nofile(want: u64) -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (current, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit(RLIMIT_NOFILE)");
    let soft = want.min(hard);
    if current >= soft {
        return current;
    }
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).expect("setrlimit(RLIMIT_NOFILE)");
    soft
}

/// 10,000 idle sessions on one `msgrd serve`; its RSS per session is printed (run with
/// `--nocapture` to see it); a good client is served while they are open.
#[test]
fn ten_thousand_idle_sessions() {
    const WANT: u64 = 10_000;
    // Both ends hold one descriptor per session, plus their own few.
    let limit = raise_nofile(WANT + 200);
    let n = WANT.min(limit.saturating_sub(200));
    if n < WANT {
        eprintln!(
            "the hard descriptor limit is {limit}: running {n} sessions instead of {WANT} \
             (raise it with `ulimit -Hn` or LimitNOFILE to run all)"
        );
    }
    let server = Server::start("10k", n + 200, "");
    let warm = served(server.addr, 1).unwrap();
    let (rss0, fds0) = (server.rss_kib(), server.fds());
    let clients: Vec<Client> = (0..n as u32)
        .map(|i| {
            Client::connect(server.addr, 100 + i)
                .unwrap_or_else(|e| panic!("session {i} of {n} not served: {e:?}"))
        })
        .collect();
    let mut good = served(server.addr, 99)
        .unwrap_or_else(|e| panic!("no good client while {n} sessions are open: {e:?}"));
    good.round_trip(3).unwrap();
    let (rss1, fds1) = (server.rss_kib(), server.fds());
    assert!(
        fds1 - fds0 <= n as usize + 1,
        "{} descriptors for {n} sessions",
        fds1 - fds0
    );
    eprintln!(
        "{n} idle sessions: server RSS {rss0} KiB -> {rss1} KiB, {:.2} KiB per session; \
         descriptors {fds0} -> {fds1}",
        (rss1.saturating_sub(rss0)) as f64 / n as f64
    );
    drop((warm, clients, good));
    server.stop();
}

//! Helpers shared by the RDMA test binaries (`rdma.rs`, `transport.rs`, `messenger.rs`,
//! `ipv6.rs`): the device check that makes a test fail (never pass silently) where it cannot
//! run, the test address, the hang guard, a collecting dispatcher and messenger construction.

// Each test binary compiles its own copy of this module and uses only part of it (`rdma.rs`
// never reads `Collect::from`, `ipv6.rs` never reads `Collect::remote_resets`): without this,
// what one binary leaves unused would be a dead-code warning there.
#![allow(dead_code)]

use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use msgr_core::api::{ConnectionRef, Dispatcher, Messenger};
use msgr_core::message::Message;
use msgr_core::session::SessionError;
use msgr_core::wire::{EntityAddr, EntityName, EntityType};
use msgr_rdma::endpoint::Endpoint;
use msgr_rdma::link::Hello;
use msgr_rdma::{RdmaConfig, RdmaMessenger, RdmaOptions};
use parking_lot::{Condvar, Mutex};

/// Hang guard only (never a performance assertion): a test stuck this long has deadlocked.
pub const HANG: Duration = Duration::from_secs(120);

pub fn has_device() -> bool {
    std::fs::read_dir("/sys/class/infiniband")
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// Panics, saying the test did NOT run and how to run it (`how_to_run`), unless an RDMA
/// device is present.
pub fn require_device(how_to_run: &str) {
    if !has_device() {
        panic!(
            "this test needs an RDMA device and none is present (/sys/class/infiniband is empty \
             or missing). It did NOT run. {how_to_run}"
        );
    }
}

/// The value of the environment variable `var` (an address on the RDMA device, described by
/// `what`), or a panic that says the test did not run and how to run it.
pub fn from_env<T>(var: &str, what: &str, how_to_run: &str) -> T
where
    T: FromStr,
    T::Err: Display,
{
    require_device(how_to_run);
    let text = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set, so this test did NOT run: export {var}=<{what}>. {how_to_run}")
    });
    text.parse().unwrap_or_else(|e| {
        panic!("{var}={text:?} is not a valid <{what}> ({e}); this test did NOT run")
    })
}

/// How to run a test binary that needs a device (each binary's docs give its name).
pub const HOW_TO_RUN: &str = "Run the test binary inside the Soft-RoCE VM: \
     `cargo test -p msgr-rdma --no-run` then \
     `scripts/rdma-vm/run.sh target/debug/deps/<test>-<hash> --test-threads 1` \
     (or ../shared/rdma-vm/run.sh), or `cargo xtask test --only rdma`";

/// The address to use on the RDMA device, or a panic that says how to run the test.
pub fn rdma_ip() -> IpAddr {
    from_env(
        "RDMA_IP",
        "IP address of the netdev under the RDMA device",
        HOW_TO_RUN,
    )
}

/// A port nobody listens on at `ip` (over rdma_cm): bind a listener to learn a free port,
/// then drop it.
pub fn free_port(ip: IpAddr) -> u16 {
    let opts = RdmaOptions::default();
    let mut ep = Endpoint::new(opts.clone(), Hello::from_options(&opts)).expect("endpoint");
    ep.listen(SocketAddr::new(ip, 0)).unwrap().port()
}

/// `len` bytes of a pattern that differs with `seed` (and is not periodic in small strides).
pub fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// Poll `done` every millisecond until it holds (hang guard only).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < HANG,
            "hang guard: still waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Log to stderr when `RUST_LOG` is set.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Messenger options: 16 KiB buffers, 8 each way, and no RNR retry.
pub fn small_opts() -> RdmaOptions {
    RdmaOptions {
        buffer_size: 16 * 1024,
        send_buffers: 8,
        recv_buffers: 8,
        // Any receiver-not-ready would fail the QP at once: flow control must prevent them.
        rnr_retry: 0,
        ..Default::default()
    }
}

/// The configuration of messenger `kind.num` bound to `bind` with `opts`.
pub fn config(kind: EntityType, num: i64, bind: SocketAddr, opts: RdmaOptions) -> RdmaConfig {
    let mut cfg = RdmaConfig::new(EntityName { kind, num }, bind);
    cfg.rdma = opts;
    cfg
}

/// A messenger (not started) from `cfg`, dispatching to `d`.
pub fn messenger(cfg: RdmaConfig, d: Arc<dyn Dispatcher>) -> RdmaMessenger {
    init_tracing();
    let m = RdmaMessenger::new(cfg);
    m.add_dispatcher(d);
    m
}

/// Records what a messenger reports; echoes each message back (type + 1) when `echo` is set.
#[derive(Default)]
pub struct Collect {
    pub msgs: Mutex<Vec<Message>>,
    /// `peer_addr()` of the connection each message came on.
    pub from: Mutex<Vec<EntityAddr>>,
    pub resets: Mutex<usize>,
    /// The text of each fault.
    pub faults: Mutex<Vec<String>>,
    pub remote_resets: Mutex<usize>,
    pub cv: Condvar,
    pub echo: bool,
}

impl Dispatcher for Collect {
    fn ms_dispatch(&self, conn: &ConnectionRef, msg: Message) {
        if self.echo {
            let reply = Message::new(msg.msg_type + 1, msg.front.clone())
                .with_data(msg.data.clone())
                .with_tid(msg.tid);
            conn.send_message(reply).expect("echo");
        }
        self.from.lock().push(conn.peer_addr());
        self.msgs.lock().push(msg);
        self.cv.notify_all();
    }
    fn ms_handle_reset(&self, _conn: &ConnectionRef, _undelivered: Vec<Message>) {
        *self.resets.lock() += 1;
        self.cv.notify_all();
    }
    fn ms_handle_fault(&self, _conn: &ConnectionRef, error: &SessionError) {
        self.faults.lock().push(error.to_string());
        self.cv.notify_all();
    }
    fn ms_handle_remote_reset(&self, _conn: &ConnectionRef) {
        *self.remote_resets.lock() += 1;
        self.cv.notify_all();
    }
}

impl Collect {
    /// Wait (woken by each callback) until `done` holds (hang guard only).
    pub fn wait_for(&self, what: &str, mut done: impl FnMut(&Collect) -> bool) {
        let start = Instant::now();
        let mut g = self.msgs.lock();
        loop {
            drop(g);
            if done(self) {
                return;
            }
            g = self.msgs.lock();
            let _ = self.cv.wait_for(&mut g, Duration::from_millis(50));
            assert!(start.elapsed() < HANG, "hang guard: waiting for {what}");
        }
    }
}

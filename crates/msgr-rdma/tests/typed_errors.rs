//! RDMA errors reach the application as values it can match, not only as text: a link whose
//! buffers exceed the locked-memory limit arrives in `ms_handle_fault` as
//! `SessionError::Transport { transport: "rdma", source }` with `source` an
//! `RdmaError::Memlock`. (A start without a device: `transport.rs`,
//! `listen_without_a_device_says_what_to_do`.)

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{config, messenger, rdma_ip, small_opts, Collect};
use msgr_core::api::{ConnectionRef, Dispatcher, Messenger};
use msgr_core::message::Message;
use msgr_core::session::SessionError;
use msgr_core::wire::EntityType;
use msgr_rdma::{RdmaError, RdmaOptions};
use parking_lot::{Condvar, Mutex};

/// The first fault, kept whole.
#[derive(Default)]
struct FirstFault {
    error: Mutex<Option<SessionError>>,
    seen: Condvar,
}

impl Dispatcher for FirstFault {
    fn ms_dispatch(&self, _conn: &ConnectionRef, _msg: Message) {}
    fn ms_handle_fault(&self, _conn: &ConnectionRef, error: &SessionError) {
        self.error.lock().get_or_insert_with(|| error.clone());
        self.seen.notify_all();
    }
}

/// The child's side: under a 64 KiB memlock limit, connect with 4 MiB of buffers per pool and
/// print what `ms_handle_fault` got.
fn report_the_fault() {
    let ip = rdma_ip();
    let opts = RdmaOptions {
        buffer_size: 1 << 20,
        send_buffers: 4,
        recv_buffers: 4,
        ..small_opts()
    };
    let bind = SocketAddr::new(ip, 0);
    let server = messenger(
        config(EntityType::OSD, 0, bind, opts.clone()),
        Arc::new(Collect::default()),
    );
    server.start().expect("listening needs no locked memory");
    let faults = Arc::new(FirstFault::default());
    let client = messenger(config(EntityType::CLIENT, 1, bind, opts), faults.clone());
    client.start().expect("listening needs no locked memory");
    client
        .connect_to(EntityType::OSD, &server.my_addr())
        .expect("the dial starts");
    let mut first = faults.error.lock();
    while first.is_none() {
        let waited = faults.seen.wait_for(&mut first, Duration::from_secs(60));
        assert!(!waited.timed_out(), "no fault in 60 s");
    }
    match first.take().expect("checked above") {
        SessionError::Transport {
            transport: "rdma",
            source,
            message,
        } => match source.downcast_ref::<RdmaError>() {
            Some(RdmaError::Memlock { needed, .. }) => {
                println!("MEMLOCK-MATCHED: needed {needed}: {message}")
            }
            other => println!("MEMLOCK-OTHER: {other:?}"),
        },
        other => println!("MEMLOCK-OTHER: {other:?}"),
    }
}

#[test]
#[ignore = "needs an RDMA device: `cargo xtask test` runs it in the Soft-RoCE VM"]
fn memlock_at_connect_reaches_ms_handle_fault_as_an_rdma_error() {
    const NAME: &str = "memlock_at_connect_reaches_ms_handle_fault_as_an_rdma_error";
    if std::env::var_os("MSGR_RDMA_MEMLOCK_CHILD").is_some() {
        return report_the_fault();
    }
    rdma_ip();
    // As rdma.rs' memlock test: this binary again, without CAP_IPC_LOCK, limit 64 KiB.
    let out = std::process::Command::new("setpriv")
        .args([
            "--bounding-set=-ipc_lock",
            "--inh-caps=-ipc_lock",
            "prlimit",
            "--memlock=65536:65536",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--include-ignored"])
        .args(["--test-threads", "1"])
        .env("MSGR_RDMA_MEMLOCK_CHILD", "1")
        .output()
        .expect("run setpriv / prlimit (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    // libtest may print `test NAME ... ` on the same line first.
    let line = stdout
        .lines()
        .find_map(|l| l.find("MEMLOCK-").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no result line from the child:\n{stdout}\n{stderr}"));
    assert!(
        line.starts_with("MEMLOCK-MATCHED: needed 4194304: "),
        "{line}"
    );
    assert!(
        line.contains("ulimit -l"),
        "the message says what to do: {line}"
    );
}

//! The notification contract under the adapter, with no runtime: `Connection::poll_send` and
//! `Connection::poll_connected` over the `mem` transport, driven by a counting waker.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use msgr_core::api::{ConnectionRef, Dispatcher, Messenger};
use msgr_core::{EntityAddr, EntityName, EntityType, Message};
use msgr_mem::{MemNetwork, MemTransport};
use msgr_node::{Node, NodeConfig};

struct Count(AtomicUsize);
impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

struct Nop;
impl Dispatcher for Nop {
    fn ms_dispatch(&self, _conn: &ConnectionRef, _msg: Message) {}
}

fn node(net: &Arc<MemNetwork>, i: u8) -> Node {
    let bind = SocketAddr::from(([10, 0, 1, i], 6800));
    let mut cfg = NodeConfig::new(EntityName::new(EntityType::OSD, i.into()), bind);
    cfg.nonce = Some(i.into());
    cfg.send_queue_bytes = 100;
    cfg.reconnect_initial = Duration::from_millis(10);
    cfg.reconnect_max = Duration::from_millis(50);
    let n = Node::new(cfg, vec![MemTransport::new(net.clone())]);
    n.add_dispatcher(Arc::new(Nop));
    n.start().unwrap();
    n
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < end, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn wakers_fire_on_room_and_on_handshake_and_only_then() {
    let net = MemNetwork::new();
    let a = node(&net, 1);
    let b_addr = EntityAddr::new(SocketAddr::from(([10, 0, 1, 2], 6800)), 2);
    let conn = a.connect_to(EntityType::OSD, &b_addr).unwrap();
    let (space, state) = (
        Arc::new(Count(AtomicUsize::new(0))),
        Arc::new(Count(AtomicUsize::new(0))),
    );
    let space_waker = Waker::from(space.clone());
    let state_waker = Waker::from(state.clone());
    let mut cx_space = Context::from_waker(&space_waker);
    let mut cx_state = Context::from_waker(&state_waker);

    let mut first = Some(Message::new(1, vec![0u8; 100]));
    assert!(matches!(
        conn.poll_send(&mut cx_space, &mut first),
        Poll::Ready(Ok(()))
    ));
    assert!(first.is_none(), "taken");
    let mut second = Some(Message::new(1, vec![1u8; 10]));
    assert!(conn.poll_send(&mut cx_space, &mut second).is_pending());
    assert!(second.is_some(), "left in place while the queue is full");
    assert!(conn.poll_connected(&mut cx_state).is_pending());
    // Failed redials change neither condition: nobody is woken.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(space.0.load(Ordering::SeqCst), 0);
    assert_eq!(state.0.load(Ordering::SeqCst), 0);

    let b = node(&net, 2);
    wait_for("handshake wake-up", || state.0.load(Ordering::SeqCst) > 0);
    assert!(matches!(
        conn.poll_connected(&mut cx_state),
        Poll::Ready(Ok(()))
    ));
    wait_for("room wake-up", || space.0.load(Ordering::SeqCst) > 0);
    assert!(matches!(
        conn.poll_send(&mut cx_space, &mut second),
        Poll::Ready(Ok(()))
    ));
    assert!(second.is_none());

    // Closing wakes both kinds of waiter and fails them (node 3 never exists).
    let c3 = a
        .connect_to(
            EntityType::OSD,
            &EntityAddr::new(SocketAddr::from(([10, 0, 1, 3], 6800)), 3),
        )
        .unwrap();
    let (space_before, state_before) = (
        space.0.load(Ordering::SeqCst),
        state.0.load(Ordering::SeqCst),
    );
    let mut m = Some(Message::new(1, vec![0u8; 100]));
    assert!(matches!(
        c3.poll_send(&mut cx_space, &mut m),
        Poll::Ready(Ok(()))
    ));
    let mut m = Some(Message::new(1, "x"));
    assert!(c3.poll_send(&mut cx_space, &mut m).is_pending());
    assert!(c3.poll_connected(&mut cx_state).is_pending());
    c3.mark_down();
    assert_eq!(space.0.load(Ordering::SeqCst), space_before + 1);
    assert_eq!(state.0.load(Ordering::SeqCst), state_before + 1);
    assert!(matches!(
        c3.poll_connected(&mut cx_state),
        Poll::Ready(Err(_))
    ));
    assert!(matches!(
        c3.poll_send(&mut cx_space, &mut m),
        Poll::Ready(Err(_))
    ));
    a.shutdown();
    b.shutdown();
}

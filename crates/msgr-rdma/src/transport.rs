//! [`RdmaTransport`]: RDMA as a transport of the node driver ([`msgr_node::Transport`]).
//!
//! The rdma_cm [`Endpoint`] sits behind a mutex: dials come from any worker, while its event
//! channel is registered on worker 0, which calls [`Transport::poll`] when it is readable.
//! Established connections become [`RdmaLink`]s (handed to the driver as `Dialed` or
//! `Accepted`); a connect that fails (address or route resolution, reject, timeout, no device
//! on the route) is reported as unreachable, so the node falls back to its next transport.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};

use mio::unix::SourceFd;
use mio::Interest;
use parking_lot::Mutex;

use msgr_node::{
    DialError, DialId, Dialing, NodeConfig, Notify, Registration, Transport, TransportEvent,
};

use crate::counters::{RdmaCounters, Stats};
use crate::endpoint::{Endpoint, EndpointEvent};
use crate::error::RdmaError;
use crate::link::Hello;
use crate::options::RdmaOptions;
use crate::rdma_link::{LinkSignal, RdmaLink};
use crate::verbs::{Device, RegisteredBuffer};

/// Times in a row a failed read of rdma_cm events is retried on the next turn (the event
/// channel is edge-triggered: events left unread raise no new readiness).
const CM_RETRIES: u32 = 3;

/// msgr over RDMA (rdma_cm + RC queue pairs), as a plug-in of a [`msgr_node::Node`]. Its name
/// in a node's `transports` list is "rdma".
pub struct RdmaTransport {
    opts: RdmaOptions,
    state: Mutex<State>,
    stats: Arc<Stats>,
    /// The device the listener is bound to, for [`RdmaTransport::register_buffer`].
    bound_device: OnceLock<Arc<Device>>,
}

struct State {
    /// Our connect / accept private data (identity fields are informational).
    hello: Hello,
    /// Created by `listen` (it needs a device).
    ep: Option<Endpoint>,
    /// The address `listen` was asked for, for error messages.
    bind: Option<SocketAddr>,
    /// Outgoing connects in progress: endpoint token -> the driver's dial id.
    dials: HashMap<u64, DialId>,
    /// Established links by endpoint token, for rdma_cm DISCONNECTED (a link that is gone
    /// leaves a dead entry, pruned as links come).
    links: HashMap<u64, Weak<LinkSignal>>,
    /// Worker 0's way to give the transport another turn.
    notify: Option<Notify>,
    cm_errors: u32,
}

impl std::fmt::Debug for RdmaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("RdmaTransport")
            .field("bind", &st.bind)
            .field("listening", &st.ep.is_some())
            .field("dials", &st.dials.len())
            .finish()
    }
}

impl RdmaTransport {
    /// A transport with `opts` (checked by `listen`). A node whose decode limits are not the
    /// defaults wants [`RdmaTransport::for_node`], which bounds RDMA READs by them.
    pub fn new(opts: RdmaOptions) -> Arc<RdmaTransport> {
        Arc::new(RdmaTransport {
            state: Mutex::new(State {
                hello: Hello::from_options(&opts),
                ep: None,
                bind: None,
                dials: HashMap::new(),
                links: HashMap::new(),
                notify: None,
                cm_errors: 0,
            }),
            opts,
            stats: Arc::default(),
            bound_device: OnceLock::new(),
        })
    }

    /// A transport for the node configured by `cfg`: a READ carries one data section, so a
    /// peer may ask for none larger than the decoder accepts (`max_read` = `limits.max_data`);
    /// the connect data names the node's entity type and nonce (if configured; see
    /// [`RdmaTransport::set_identity`]).
    pub fn for_node(cfg: &NodeConfig, mut opts: RdmaOptions) -> Arc<RdmaTransport> {
        opts.max_read = cfg.limits.max_data as usize;
        let t = RdmaTransport::new(opts);
        t.set_identity(cfg.name.kind.0, cfg.nonce.unwrap_or(0));
        t
    }

    /// The entity type and nonce our connect / accept data carries (for the peer's logs and
    /// rdma_cm-level checks; the msgr1 handshake carries the real identity). Takes effect at
    /// `listen`.
    pub fn set_identity(&self, entity_type: u8, nonce: u32) {
        let mut st = self.state.lock();
        st.hello.entity_type = entity_type;
        st.hello.nonce = nonce;
    }

    /// The settings this transport was made with.
    pub fn options(&self) -> &RdmaOptions {
        &self.opts
    }

    /// Sums over the transport's links, live and gone.
    pub fn counters(&self) -> RdmaCounters {
        self.stats.sum()
    }

    /// The device the listener is bound to (after `listen` on a device's address).
    pub fn bound_device(&self) -> Option<Arc<Device>> {
        self.bound_device.get().cloned()
    }

    /// `len` zeroed bytes registered once with the listener's device, for zero-copy sends:
    /// fill it, `freeze()` it into `Bytes` and use that (or slices of it) as message data.
    /// Payloads of at least `read_threshold` bytes inside it are read by the peer straight
    /// from it, with no registration per message. Needs a started messenger bound to an RDMA
    /// device's address.
    pub fn register_buffer(&self, len: usize) -> Result<RegisteredBuffer, RdmaError> {
        let Some(device) = self.bound_device.get() else {
            let bind = match self.state.lock().bind {
                Some(a) => format!("bind is {a}"),
                None => "not started yet".to_string(),
            };
            return Err(RdmaError::NoDevice {
                detail: format!(
                    "register_buffer needs a started messenger bound to an RDMA device's IP \
                     address ({bind}); start it first, and bind to the IP of the device's netdev \
                     rather than a wildcard"
                ),
            });
        };
        RegisteredBuffer::new(device, len)
    }
}

/// A dial error that names the peer and says it was RDMA that could not reach it.
fn dial_error(peer: SocketAddr, e: &RdmaError) -> DialError {
    let text = e.to_string();
    if text.contains(&peer.to_string()) && text.contains("RDMA") {
        DialError::unreachable(text)
    } else {
        DialError::unreachable(format!("cannot connect to RDMA peer {peer}: {text}"))
    }
}

impl Transport for RdmaTransport {
    fn name(&self) -> &'static str {
        "rdma"
    }

    fn listen(&self, addr: SocketAddr) -> Result<SocketAddr, String> {
        let mut st = self.state.lock();
        st.bind = Some(addr);
        if st.ep.is_none() {
            let ep = Endpoint::new(self.opts.clone(), st.hello).map_err(|e| e.to_string())?;
            st.ep = Some(ep);
        }
        let ep = st.ep.as_mut().expect("created above");
        let bound = ep.listen(addr).map_err(|e| e.to_string())?;
        if let Some(d) = ep.bound_device() {
            let _ = self.bound_device.set(d);
        }
        tracing::debug!(target: "msgr_rdma", %bound, "listening (rdma_cm)");
        Ok(bound)
    }

    fn register(&self, reg: &Registration<'_>) -> io::Result<()> {
        let mut st = self.state.lock();
        let Some(ep) = &st.ep else {
            return Err(io::Error::other(
                "the RDMA transport is registered before it listens",
            ));
        };
        reg.registry
            .register(&mut SourceFd(&ep.fd()), reg.token, Interest::READABLE)?;
        st.notify = Some(reg.notify.clone());
        Ok(())
    }

    fn poll(&self, accepting: bool, out: &mut Vec<TransportEvent>) {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let Some(ep) = st.ep.as_mut() else {
            return;
        };
        let mut evs = Vec::new();
        // The application's accept hook runs on the msgr1 handshake (it needs the peer's
        // entity address); at the rdma_cm level only a node that shuts down refuses.
        match ep.process(&mut |_, _| accepting, &mut evs) {
            Ok(()) => st.cm_errors = 0,
            Err(e) => {
                tracing::error!(target: "msgr_rdma", "reading rdma_cm events: {e}");
                st.cm_errors += 1;
                if st.cm_errors <= CM_RETRIES {
                    if let Some(n) = &st.notify {
                        n.notify();
                    }
                }
            }
        }
        for ev in evs {
            match ev {
                EndpointEvent::Established {
                    token,
                    mut link,
                    outgoing,
                    peer,
                    ..
                } => {
                    let dial = if outgoing {
                        match st.dials.remove(&token) {
                            Some(d) => Some(d),
                            None => {
                                // The node gave up on this dial meanwhile.
                                link.disconnect();
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    let signal = Arc::new(LinkSignal::default());
                    st.links.retain(|_, w| w.strong_count() > 0);
                    st.links.insert(token, Arc::downgrade(&signal));
                    let link = Box::new(RdmaLink::new(*link, signal, &self.stats));
                    out.push(match dial {
                        Some(dial) => TransportEvent::Dialed { dial, link },
                        None => TransportEvent::Accepted { link, peer },
                    });
                }
                EndpointEvent::ConnectFailed { token, error } => {
                    if let Some(dial) = st.dials.remove(&token) {
                        tracing::debug!(target: "msgr_rdma", "connect failed: {error}");
                        out.push(TransportEvent::DialFailed {
                            dial,
                            error: DialError::unreachable(error.to_string()),
                        });
                    }
                }
                EndpointEvent::Disconnected { token } => {
                    if let Some(s) = st.links.remove(&token).and_then(|w| w.upgrade()) {
                        s.disconnect();
                    }
                }
                EndpointEvent::Refused { peer, reason } => {
                    tracing::debug!(target: "msgr_rdma", %peer, "refused RDMA connection: {reason}");
                }
            }
        }
    }

    fn dial(&self, peer: SocketAddr, dial: DialId) -> Result<Dialing, DialError> {
        let mut st = self.state.lock();
        let Some(ep) = st.ep.as_mut() else {
            return Err(DialError::unreachable(format!(
                "cannot connect to RDMA peer {peer}: the RDMA transport is not listening"
            )));
        };
        match ep.connect(peer) {
            Ok(token) => {
                st.dials.insert(token, dial);
                Ok(Dialing::Pending)
            }
            Err(e) => Err(dial_error(peer, &e)),
        }
    }

    fn cancel(&self, dial: DialId) {
        let mut st = self.state.lock();
        let token = st.dials.iter().find(|(_, d)| **d == dial).map(|(t, _)| *t);
        if let Some(t) = token {
            st.dials.remove(&t);
            if let Some(ep) = st.ep.as_mut() {
                ep.cancel(t);
            }
        }
    }

    fn stop(&self) {
        if let Some(ep) = self.state.lock().ep.as_mut() {
            ep.stop_listening();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_errors_name_the_peer_and_rdma() {
        let peer: SocketAddr = "[fd00::1]:6800".parse().unwrap();
        let named = RdmaError::Unreachable {
            peer,
            detail: "no route to it".into(),
        };
        let e = dial_error(peer, &named);
        assert!(e.unreachable);
        assert_eq!(e.message, named.to_string(), "already says it all");
        let bare = RdmaError::BadOption {
            key: "x",
            detail: "y".into(),
        };
        let e = dial_error(peer, &bare);
        assert!(
            e.unreachable,
            "any RDMA connect error falls back to the next transport"
        );
        assert!(
            e.message.contains("[fd00::1]:6800") && e.message.contains("RDMA"),
            "{e}"
        );
    }

    #[test]
    fn unstarted_transport_explains_itself() {
        let t = RdmaTransport::new(RdmaOptions::default());
        assert_eq!(t.name(), "rdma");
        let e = t
            .dial("10.0.0.1:6800".parse().unwrap(), 1)
            .err()
            .expect("not listening");
        assert!(e.unreachable && e.message.contains("10.0.0.1:6800"), "{e}");
        let e = t
            .register_buffer(4096)
            .err()
            .expect("no device yet")
            .to_string();
        assert!(
            e.contains("started messenger") && e.contains("not started yet"),
            "{e}"
        );
        assert_eq!(t.counters(), RdmaCounters::default());
    }

    #[test]
    fn for_node_bounds_reads_by_the_decode_limit_and_names_the_node() {
        use msgr_core::wire::{EntityName, EntityType};
        let mut cfg = NodeConfig::new(
            EntityName {
                kind: EntityType::OSD,
                num: 3,
            },
            "10.0.0.1:0".parse().unwrap(),
        );
        cfg.limits.max_data = 1 << 20;
        cfg.nonce = Some(77);
        let t = RdmaTransport::for_node(&cfg, RdmaOptions::default());
        assert_eq!(t.options().max_read, 1 << 20);
        let hello = t.state.lock().hello;
        assert_eq!((hello.entity_type, hello.nonce), (EntityType::OSD.0, 77));
    }
}

//! rdma_cm connection management for one transport: a listener, outgoing connects walking
//! through address and route resolution, incoming requests passed through an accept hook, and
//! disconnects. Everything arrives on one non-blocking event channel fd.
//!
//! States of an outgoing connection (by the event that moves it on):
//! `Resolving` -(ADDR_RESOLVED)-> `Routing` -(ROUTE_RESOLVED: QP built, receives posted,
//! connect sent)-> `Connecting` -(ESTABLISHED)-> handed out as a [`Link`].
//! An incoming one: CONNECT_REQUEST -(hook accepts: QP built, receives posted, accept sent)->
//! `Accepting` -(ESTABLISHED)-> [`Link`]; or rejected with a reason in the private data.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;

use crate::error::RdmaError;
use crate::link::{prepare, DeviceCache, Hello, Link, REJECT_BAD_HELLO, REJECT_REFUSED};
use crate::options::RdmaOptions;
use crate::verbs::{CmEvent, CmEventKind, CmId, ConnParam, Cq, EventChannel};

/// Token of the listening id (connections get 2, 3, ...; 0 is for device anchors).
const LISTENER: u64 = 1;

enum Stage {
    Resolving,
    Routing,
    Connecting,
    Accepting,
}

struct Pending {
    id: CmId,
    cq: Option<Arc<Cq>>,
    stage: Stage,
    peer: SocketAddr,
    peer_hello: Option<Hello>,
}

/// What the endpoint reports.
pub enum EndpointEvent {
    /// A connection is up (ours if `outgoing`).
    Established {
        token: u64,
        link: Box<Link>,
        outgoing: bool,
        peer: SocketAddr,
        peer_hello: Hello,
    },
    /// An outgoing connect failed before it was established.
    ConnectFailed { token: u64, error: RdmaError },
    /// An established connection's peer disconnected (or the device went away).
    Disconnected { token: u64 },
    /// An incoming request was refused by the hook or malformed.
    Refused { peer: SocketAddr, reason: String },
}

/// Accept hook: peer socket address and hello; false refuses the connection.
pub type AcceptHook<'a> = &'a mut dyn FnMut(&SocketAddr, &Hello) -> bool;

/// Connection management of one transport (one event channel).
pub struct Endpoint {
    opts: RdmaOptions,
    hello: Hello,
    channel: Arc<EventChannel>,
    devices: DeviceCache,
    /// The device the listener is bound to (None for a wildcard address).
    bound_device: Option<Arc<crate::verbs::Device>>,
    listener: Option<CmId>,
    pending: HashMap<u64, Pending>,
    next_token: u64,
}

impl Endpoint {
    /// Checks that an RDMA device exists ([`RdmaError::NoDevice`] otherwise) and opens the
    /// event channel.
    pub fn new(opts: RdmaOptions, hello: Hello) -> Result<Endpoint, RdmaError> {
        opts.validate()?;
        let devices = crate::verbs::list_devices()?;
        if let Some(want) = &opts.device {
            if !devices.contains(want) {
                return Err(RdmaError::NoDevice {
                    detail: format!(
                        "config asks for device {want}, found only {}",
                        devices.join(", ")
                    ),
                });
            }
        }
        Ok(Endpoint {
            opts,
            hello,
            channel: EventChannel::new()?,
            devices: DeviceCache::default(),
            bound_device: None,
            listener: None,
            pending: HashMap::new(),
            next_token: 2,
        })
    }

    pub fn options(&self) -> &RdmaOptions {
        &self.opts
    }

    /// The device the listener is bound to (after [`Endpoint::listen`] on a device's address):
    /// the one, with its protection domain, that links accepted there use.
    pub fn bound_device(&self) -> Option<Arc<crate::verbs::Device>> {
        self.bound_device.clone()
    }

    /// The rdma_cm event channel fd (poll for readability, then call [`Endpoint::process`]).
    pub fn fd(&self) -> RawFd {
        self.channel.fd()
    }

    /// Listen on `addr`; returns the bound address (port filled in).
    pub fn listen(&mut self, addr: SocketAddr) -> Result<SocketAddr, RdmaError> {
        if addr.ip().is_loopback() {
            return Err(RdmaError::AddressNotRdma {
                addr,
                detail: "loopback addresses do not work over RoCE (connects hang)".into(),
            });
        }
        let mut id = CmId::new(&self.channel, LISTENER)?;
        id.bind(addr)?;
        if !addr.ip().is_unspecified() {
            if !id.has_device() {
                return Err(RdmaError::AddressNotRdma {
                    addr,
                    detail: "rdma_cm bound it to no device".into(),
                });
            }
            // Opens the device now so a wrong device / port down / memlock problem shows at
            // start, not at the first connection.
            self.bound_device = Some(self.devices.for_id(&id, &self.opts)?);
        }
        id.listen(self.opts.backlog)?;
        let bound = id.local_addr().unwrap_or(addr);
        self.listener = Some(id);
        Ok(bound)
    }

    /// Stop listening (the listening id is destroyed; new connect requests are rejected by
    /// rdma_cm). Connections already made or in progress are not touched.
    pub fn stop_listening(&mut self) {
        self.listener = None;
    }

    /// Start connecting to `peer`; the result comes as `Established` / `ConnectFailed` with
    /// the returned token.
    pub fn connect(&mut self, peer: SocketAddr) -> Result<u64, RdmaError> {
        if peer.ip().is_loopback() {
            return Err(RdmaError::AddressNotRdma {
                addr: peer,
                detail: "loopback addresses do not work over RoCE (connects hang); use the IP of the RDMA netdev".into(),
            });
        }
        let token = self.next_token;
        self.next_token += 1;
        let mut id = CmId::new(&self.channel, token)?;
        let ms = self.opts.resolve_timeout.as_millis().min(i32::MAX as u128) as i32;
        // rdma_cm fails at once when the kernel has no route to `peer` (or no usable source
        // address): say which peer, and that it is a network problem, not a verbs one.
        id.resolve_addr(None, peer, ms).map_err(|e| match e {
            RdmaError::Verbs { source, .. }
                if matches!(
                    source.raw_os_error(),
                    Some(
                        libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EADDRNOTAVAIL | libc::ENODEV
                    )
                ) =>
            {
                RdmaError::Unreachable {
                    peer,
                    detail: format!("no route to it (rdma_resolve_addr: {source})"),
                }
            }
            e => e,
        })?;
        self.pending.insert(
            token,
            Pending {
                id,
                cq: None,
                stage: Stage::Resolving,
                peer,
                peer_hello: None,
            },
        );
        Ok(token)
    }

    /// Abandon a pending connect (its id is destroyed).
    pub fn cancel(&mut self, token: u64) {
        self.pending.remove(&token);
    }

    fn conn_param(&self) -> ConnParam {
        ConnParam {
            private_data: self.hello.encode(),
            // The device's maximum of concurrent incoming / outgoing RDMA READs (librdmacm's
            // RDMA_MAX_RESP_RES / RDMA_MAX_INIT_DEPTH: "as many as the device allows").
            responder_resources: 0xff,
            initiator_depth: 0xff,
            retry_count: self.opts.retry_count,
            rnr_retry_count: self.opts.rnr_retry,
        }
    }

    /// Handle every pending rdma_cm event.
    pub fn process(
        &mut self,
        hook: AcceptHook<'_>,
        out: &mut Vec<EndpointEvent>,
    ) -> Result<(), RdmaError> {
        while let Some(ev) = self.channel.get_event()? {
            self.on_event(ev, hook, out);
        }
        Ok(())
    }

    fn fail(&mut self, token: u64, error: RdmaError, out: &mut Vec<EndpointEvent>) {
        if self.pending.remove(&token).is_some() {
            out.push(EndpointEvent::ConnectFailed { token, error });
        }
    }

    fn on_event(&mut self, mut ev: CmEvent, hook: AcceptHook<'_>, out: &mut Vec<EndpointEvent>) {
        tracing::debug!(target: "msgr_rdma", "rdma_cm event {} token {} status {}", ev.name, ev.token, ev.status);
        let token = ev.token;
        match ev.kind {
            CmEventKind::ConnectRequest => {
                if let Some(id) = ev.request.take() {
                    self.on_request(id, &ev.private_data, hook, out);
                }
            }
            CmEventKind::AddrResolved => {
                let ms = self.opts.resolve_timeout.as_millis().min(i32::MAX as u128) as i32;
                let Some(p) = self.pending.get_mut(&token) else {
                    return;
                };
                p.stage = Stage::Routing;
                if let Err(e) = p.id.resolve_route(ms) {
                    self.fail(token, e, out);
                }
            }
            CmEventKind::RouteResolved => {
                let param = self.conn_param();
                let Some(p) = self.pending.get_mut(&token) else {
                    return;
                };
                let r = (|| {
                    let dev = self.devices.for_id(&p.id, &self.opts)?;
                    let cq = prepare(&mut p.id, &dev, &self.opts)?;
                    p.cq = Some(cq);
                    p.id.connect(&param)
                })();
                match r {
                    Ok(()) => p.stage = Stage::Connecting,
                    Err(e) => self.fail(token, e, out),
                }
            }
            CmEventKind::Established => {
                let Some(mut p) = self.pending.remove(&token) else {
                    return;
                };
                let outgoing = matches!(p.stage, Stage::Connecting);
                let hello = if outgoing {
                    Hello::decode(&ev.private_data)
                } else {
                    p.peer_hello.ok_or_else(|| "no hello".to_string())
                };
                let hello = match hello {
                    Ok(h) => h,
                    Err(detail) => {
                        let _ = p.id.disconnect();
                        if outgoing {
                            out.push(EndpointEvent::ConnectFailed {
                                token,
                                error: RdmaError::BadPeer {
                                    peer: p.peer.to_string(),
                                    detail,
                                },
                            });
                        }
                        return;
                    }
                };
                let cq = p.cq.take().expect("established id has a cq");
                let link = Box::new(Link::new(p.id, cq, &self.opts, hello));
                out.push(EndpointEvent::Established {
                    token,
                    link,
                    outgoing,
                    peer: p.peer,
                    peer_hello: hello,
                });
            }
            CmEventKind::AddrError | CmEventKind::RouteError => {
                let peer = self.pending.get(&token).map(|p| p.peer);
                if let Some(peer) = peer {
                    let what = if ev.kind == CmEventKind::AddrError {
                        "address"
                    } else {
                        "route"
                    };
                    let e = RdmaError::Unreachable {
                        peer,
                        detail: format!(
                            "{what} resolution failed ({}; status {})",
                            ev.name,
                            std::io::Error::from_raw_os_error(-ev.status)
                        ),
                    };
                    self.fail(token, e, out);
                }
            }
            CmEventKind::Unreachable | CmEventKind::ConnectError => {
                let peer = self.pending.get(&token).map(|p| p.peer);
                if let Some(peer) = peer {
                    let e = RdmaError::Unreachable {
                        peer,
                        detail: format!("{} (status {})", ev.name, ev.status),
                    };
                    self.fail(token, e, out);
                }
            }
            CmEventKind::Rejected => {
                let peer = self.pending.get(&token).map(|p| p.peer);
                if let Some(peer) = peer {
                    let detail = match Hello::reject_code(&ev.private_data) {
                        Some(REJECT_REFUSED) => "its accept hook refused us".to_string(),
                        Some(REJECT_BAD_HELLO) => {
                            "it did not understand our connect data (version mismatch?)".to_string()
                        }
                        Some(c) => format!("reason code {c}"),
                        None => format!(
                            "no listener on that address and port (CM reject reason {})",
                            ev.status
                        ),
                    };
                    self.fail(token, RdmaError::Refused { peer, detail }, out);
                }
            }
            CmEventKind::Disconnected | CmEventKind::DeviceRemoval => {
                if let Some(p) = self.pending.remove(&token) {
                    if matches!(p.stage, Stage::Connecting) {
                        out.push(EndpointEvent::ConnectFailed {
                            token,
                            error: RdmaError::Unreachable {
                                peer: p.peer,
                                detail: format!(
                                    "{} before the connection was established",
                                    ev.name
                                ),
                            },
                        });
                    }
                } else if token >= 2 {
                    out.push(EndpointEvent::Disconnected { token });
                }
            }
            _ => {}
        }
    }

    fn on_request(
        &mut self,
        mut id: CmId,
        data: &[u8],
        hook: AcceptHook<'_>,
        out: &mut Vec<EndpointEvent>,
    ) {
        let peer = id.peer_addr().unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
        let hello = match Hello::decode(data) {
            Ok(h) => h,
            Err(reason) => {
                let _ = id.reject(&Hello::reject_data(REJECT_BAD_HELLO));
                out.push(EndpointEvent::Refused { peer, reason });
                return;
            }
        };
        if !hook(&peer, &hello) {
            let _ = id.reject(&Hello::reject_data(REJECT_REFUSED));
            out.push(EndpointEvent::Refused {
                peer,
                reason: "refused by the accept hook".into(),
            });
            return;
        }
        let token = self.next_token;
        self.next_token += 1;
        id.set_token(token);
        let param = self.conn_param();
        let r = (|| {
            let dev = self.devices.for_id(&id, &self.opts)?;
            let cq = prepare(&mut id, &dev, &self.opts)?;
            id.accept(&param)?;
            Ok::<_, RdmaError>(cq)
        })();
        match r {
            Ok(cq) => {
                self.pending.insert(
                    token,
                    Pending {
                        id,
                        cq: Some(cq),
                        stage: Stage::Accepting,
                        peer,
                        peer_hello: Some(hello),
                    },
                );
            }
            Err(e) => {
                tracing::warn!(target: "msgr_rdma", "cannot accept RDMA connection from {peer}: {e}");
                let _ = id.reject(&[]);
                out.push(EndpointEvent::Refused {
                    peer,
                    reason: e.to_string(),
                });
            }
        }
    }
}

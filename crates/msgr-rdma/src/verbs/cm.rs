//! rdma_cm: event channel, connection ids, events; and what the lower layers do with an id:
//! finding the [`Device`] that serves it, creating its [`Qp`].

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::Arc;

use rdma_sys::*;

use super::device::query_port;
use super::ib::{Cq, Device};
use super::mr::ReadTarget;
use super::qp::{BufferPool, Qp, QpCaps, Retired};
use super::sys::{c_str, from_sockaddr, last_error, set_nonblocking, to_sockaddr};
use crate::error::RdmaError;

/// An rdma_cm event channel: one fd that reports the events of every id created on it.
pub struct EventChannel {
    raw: NonNull<rdma_event_channel>,
}

// SAFETY: librdmacm's event channel is an fd plus a small struct that the library only reads
// after creation; rdma_get_cm_event is safe to call from any thread.
unsafe impl Send for EventChannel {}
// SAFETY: as above: shared references only read the fd or call thread-safe library functions.
unsafe impl Sync for EventChannel {}

impl EventChannel {
    /// A non-blocking event channel. Fails with [`RdmaError::NoDevice`] when the kernel has no
    /// rdma_cm (`/dev/infiniband/rdma_cm` missing).
    pub fn new() -> Result<Arc<Self>, RdmaError> {
        // SAFETY: no arguments; the returned pointer is owned by the new EventChannel and freed
        // in its Drop.
        let raw = unsafe { rdma_create_event_channel() };
        let Some(raw) = NonNull::new(raw) else {
            let err = last_error();
            return Err(match err.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENOSYS)
                | Some(libc::ENXIO) => RdmaError::NoDevice {
                    detail: format!(
                        "rdma_create_event_channel: {err} (no /dev/infiniband/rdma_cm)"
                    ),
                },
                _ => RdmaError::verbs("rdma_create_event_channel", err),
            });
        };
        let chan = Arc::new(EventChannel { raw });
        set_nonblocking(chan.fd()).map_err(|e| RdmaError::verbs("fcntl(rdma_cm fd)", e))?;
        Ok(chan)
    }

    pub fn fd(&self) -> RawFd {
        // SAFETY: `raw` is live for as long as self.
        unsafe { self.raw.as_ref().fd }
    }

    /// The next event, if one is ready. The event is acknowledged before returning (its data is
    /// copied), so destroying ids never waits on us.
    pub fn get_event(self: &Arc<Self>) -> Result<Option<CmEvent>, RdmaError> {
        let mut ev: *mut rdma_cm_event = std::ptr::null_mut();
        // SAFETY: the channel is live; on success `ev` points to an event we must ack once.
        let rc = unsafe { rdma_get_cm_event(self.raw.as_ptr(), &mut ev) };
        if rc != 0 {
            let err = last_error();
            if err.kind() == std::io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(RdmaError::verbs("rdma_get_cm_event", err));
        }
        // SAFETY: `ev` is a valid event until rdma_ack_cm_event below; everything we keep is
        // copied out first. For CONNECT_REQUEST, `ev.id` is a new id that becomes ours (the
        // library hands its ownership to the application); for other events it is an id we
        // already own, and only its `context` (our token) is read.
        let event = unsafe {
            let e = &*ev;
            let kind = CmEventKind::from_raw(e.event);
            let conn = e.param.conn;
            let carries_data = matches!(
                kind,
                CmEventKind::ConnectRequest
                    | CmEventKind::ConnectResponse
                    | CmEventKind::Established
                    | CmEventKind::Rejected
            );
            let private_data =
                if carries_data && !conn.private_data.is_null() && conn.private_data_len > 0 {
                    std::slice::from_raw_parts(
                        conn.private_data as *const u8,
                        conn.private_data_len as usize,
                    )
                    .to_vec()
                } else {
                    Vec::new()
                };
            let token = (*e.id).context as u64;
            let request = if kind == CmEventKind::ConnectRequest {
                NonNull::new(e.id).map(|raw| CmId {
                    raw,
                    qp: None,
                    channel: Arc::clone(self),
                })
            } else {
                None
            };
            let name = c_str(rdma_event_str(e.event));
            CmEvent {
                kind,
                status: e.status,
                token,
                request,
                private_data,
                name,
            }
        };
        // SAFETY: acknowledging the event we got above, exactly once; it is not used afterwards.
        unsafe { rdma_ack_cm_event(ev) };
        Ok(Some(event))
    }
}

impl Drop for EventChannel {
    fn drop(&mut self) {
        // SAFETY: every CmId holds an Arc to its channel, so none is left when this runs.
        unsafe { rdma_destroy_event_channel(self.raw.as_ptr()) };
    }
}

/// What happened, as rdma_cm names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmEventKind {
    AddrResolved,
    AddrError,
    RouteResolved,
    RouteError,
    ConnectRequest,
    ConnectResponse,
    ConnectError,
    Unreachable,
    Rejected,
    Established,
    Disconnected,
    DeviceRemoval,
    AddrChange,
    TimewaitExit,
    Other(u32),
}

impl CmEventKind {
    fn from_raw(t: rdma_cm_event_type::Type) -> Self {
        use rdma_cm_event_type::*;
        match t {
            RDMA_CM_EVENT_ADDR_RESOLVED => Self::AddrResolved,
            RDMA_CM_EVENT_ADDR_ERROR => Self::AddrError,
            RDMA_CM_EVENT_ROUTE_RESOLVED => Self::RouteResolved,
            RDMA_CM_EVENT_ROUTE_ERROR => Self::RouteError,
            RDMA_CM_EVENT_CONNECT_REQUEST => Self::ConnectRequest,
            RDMA_CM_EVENT_CONNECT_RESPONSE => Self::ConnectResponse,
            RDMA_CM_EVENT_CONNECT_ERROR => Self::ConnectError,
            RDMA_CM_EVENT_UNREACHABLE => Self::Unreachable,
            RDMA_CM_EVENT_REJECTED => Self::Rejected,
            RDMA_CM_EVENT_ESTABLISHED => Self::Established,
            RDMA_CM_EVENT_DISCONNECTED => Self::Disconnected,
            RDMA_CM_EVENT_DEVICE_REMOVAL => Self::DeviceRemoval,
            RDMA_CM_EVENT_ADDR_CHANGE => Self::AddrChange,
            RDMA_CM_EVENT_TIMEWAIT_EXIT => Self::TimewaitExit,
            other => Self::Other(other),
        }
    }
}

/// One rdma_cm event, copied out of the library.
#[derive(Debug)]
pub struct CmEvent {
    pub kind: CmEventKind,
    /// Event status (for REJECTED: the CM reject reason; for errors: a negative errno).
    pub status: i32,
    /// Token of the id the event is about (for CONNECT_REQUEST: of the listening id).
    pub token: u64,
    /// CONNECT_REQUEST only: the new id for the incoming connection, now owned by the caller.
    pub request: Option<CmId>,
    /// Private data the peer attached to its connect / accept / reject.
    pub private_data: Vec<u8>,
    /// rdma_cm's name for the event, for logs.
    pub name: String,
}

/// Connection parameters for connect / accept.
#[derive(Debug, Clone, Default)]
pub struct ConnParam {
    /// At most 56 bytes (connect) / 196 (accept) on IB and RoCE.
    pub private_data: Vec<u8>,
    pub responder_resources: u8,
    pub initiator_depth: u8,
    /// Transport retries before a send fails (0-7).
    pub retry_count: u8,
    /// Receiver-not-ready retries (0-6; 7 = retry forever).
    pub rnr_retry_count: u8,
}

impl ConnParam {
    fn raw(&self) -> rdma_conn_param {
        rdma_conn_param {
            private_data: if self.private_data.is_empty() {
                std::ptr::null()
            } else {
                self.private_data.as_ptr() as *const libc::c_void
            },
            private_data_len: self.private_data.len().min(u8::MAX as usize) as u8,
            responder_resources: self.responder_resources,
            initiator_depth: self.initiator_depth,
            flow_control: 1,
            retry_count: self.retry_count.min(7),
            rnr_retry_count: self.rnr_retry_count.min(7),
            srq: 0,
            qp_num: 0,
        }
    }
}

/// An rdma_cm id (the RDMA analogue of a socket), and the queue pair it owns once created.
pub struct CmId {
    raw: NonNull<rdma_cm_id>,
    /// Dropped (rdma_destroy_qp) before the id itself is destroyed.
    qp: Option<Qp>,
    /// Keeps the channel alive while the id exists.
    channel: Arc<EventChannel>,
}

// SAFETY: an id is used by one thread at a time (&mut for every state change); librdmacm does not
// tie ids to the creating thread.
unsafe impl Send for CmId {}

fn check(rc: libc::c_int, call: &'static str) -> Result<(), RdmaError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(RdmaError::verbs(call, last_error()))
    }
}

impl CmId {
    /// A new reliable-connected (RDMA_PS_TCP) id on `channel`; events about it carry `token`.
    pub fn new(channel: &Arc<EventChannel>, token: u64) -> Result<CmId, RdmaError> {
        let mut raw: *mut rdma_cm_id = std::ptr::null_mut();
        // SAFETY: the channel is live; on success `raw` is a new id that the returned CmId owns.
        let rc = unsafe {
            rdma_create_id(
                channel.raw.as_ptr(),
                &mut raw,
                token as *mut libc::c_void,
                rdma_port_space::RDMA_PS_TCP,
            )
        };
        check(rc, "rdma_create_id")?;
        let raw = NonNull::new(raw)
            .ok_or_else(|| RdmaError::verbs("rdma_create_id", std::io::Error::other("null id")))?;
        Ok(CmId {
            raw,
            qp: None,
            channel: Arc::clone(channel),
        })
    }

    pub fn channel(&self) -> &Arc<EventChannel> {
        &self.channel
    }

    /// The token events about this id carry.
    pub fn token(&self) -> u64 {
        // SAFETY: `raw` is live for as long as self.
        unsafe { self.raw.as_ref().context as u64 }
    }

    /// Change the token (ids from CONNECT_REQUEST inherit the listener's).
    pub fn set_token(&mut self, token: u64) {
        // SAFETY: `context` is an opaque user field the library only hands back to us; we have
        // `&mut self`, so no other reference to the id exists in this process.
        unsafe { self.raw.as_mut().context = token as *mut libc::c_void };
    }

    pub fn bind(&mut self, addr: SocketAddr) -> Result<(), RdmaError> {
        let mut sa = to_sockaddr(&addr);
        // SAFETY: live id; `sa` is a valid sockaddr for the call's duration.
        let rc =
            unsafe { rdma_bind_addr(self.raw.as_ptr(), &mut sa as *mut _ as *mut libc::sockaddr) };
        if rc != 0 {
            let err = last_error();
            return Err(match err.raw_os_error() {
                Some(libc::ENODEV) | Some(libc::EADDRNOTAVAIL) | Some(libc::ENXIO) => {
                    RdmaError::AddressNotRdma {
                        addr,
                        detail: format!("rdma_bind_addr: {err}"),
                    }
                }
                _ => RdmaError::verbs("rdma_bind_addr", err),
            });
        }
        Ok(())
    }

    pub fn listen(&mut self, backlog: i32) -> Result<(), RdmaError> {
        // SAFETY: live, bound id.
        check(
            unsafe { rdma_listen(self.raw.as_ptr(), backlog) },
            "rdma_listen",
        )
    }

    /// Start resolving `dst` (ADDR_RESOLVED / ADDR_ERROR follows).
    pub fn resolve_addr(
        &mut self,
        src: Option<SocketAddr>,
        dst: SocketAddr,
        timeout_ms: i32,
    ) -> Result<(), RdmaError> {
        let mut d = to_sockaddr(&dst);
        let mut s = src.map(|s| to_sockaddr(&s));
        let sp = s
            .as_mut()
            .map_or(std::ptr::null_mut(), |s| s as *mut _ as *mut libc::sockaddr);
        // SAFETY: live id; both sockaddrs outlive the call (the library copies them).
        let rc = unsafe {
            rdma_resolve_addr(
                self.raw.as_ptr(),
                sp,
                &mut d as *mut _ as *mut libc::sockaddr,
                timeout_ms,
            )
        };
        check(rc, "rdma_resolve_addr")
    }

    /// Start resolving the route (ROUTE_RESOLVED / ROUTE_ERROR follows).
    pub fn resolve_route(&mut self, timeout_ms: i32) -> Result<(), RdmaError> {
        // SAFETY: live id with a resolved address.
        check(
            unsafe { rdma_resolve_route(self.raw.as_ptr(), timeout_ms) },
            "rdma_resolve_route",
        )
    }

    pub fn connect(&mut self, param: &ConnParam) -> Result<(), RdmaError> {
        let mut p = param.raw();
        // SAFETY: live id with a resolved route and a QP; `p` and the private data it points to
        // outlive the call (the library copies them).
        check(
            unsafe { rdma_connect(self.raw.as_ptr(), &mut p) },
            "rdma_connect",
        )
    }

    pub fn accept(&mut self, param: &ConnParam) -> Result<(), RdmaError> {
        let mut p = param.raw();
        // SAFETY: live id from a CONNECT_REQUEST with a QP; `p` outlives the call.
        check(
            unsafe { rdma_accept(self.raw.as_ptr(), &mut p) },
            "rdma_accept",
        )
    }

    pub fn reject(&mut self, private_data: &[u8]) -> Result<(), RdmaError> {
        let len = private_data.len().min(u8::MAX as usize);
        // SAFETY: live id from a CONNECT_REQUEST; the data outlives the call.
        check(
            unsafe {
                rdma_reject(
                    self.raw.as_ptr(),
                    private_data.as_ptr() as *const libc::c_void,
                    len as u8,
                )
            },
            "rdma_reject",
        )
    }

    /// Start a disconnect (DISCONNECTED follows on both sides). Moves the QP to error, so posted
    /// work requests complete with "flushed".
    pub fn disconnect(&mut self) -> Result<(), RdmaError> {
        // SAFETY: live id.
        check(
            unsafe { rdma_disconnect(self.raw.as_ptr()) },
            "rdma_disconnect",
        )
    }

    /// Local address (after bind / resolve / accept).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        // SAFETY: live id; the route's address storage lives inside the id.
        unsafe { from_sockaddr(rdma_get_local_addr(self.raw.as_ref())) }
    }

    /// Peer address (after resolve / on an incoming request).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        // SAFETY: live id; as above.
        unsafe { from_sockaddr(rdma_get_peer_addr(self.raw.as_ref())) }
    }

    /// The ibv context the id is bound to (null before bind/resolve, or for a wildcard listener).
    fn verbs_ctx(&self) -> *mut ibv_context {
        // SAFETY: live id; reading a pointer field.
        unsafe { self.raw.as_ref().verbs }
    }

    /// Whether the id is bound to an RDMA device.
    pub fn has_device(&self) -> bool {
        !self.verbs_ctx().is_null()
    }

    /// Name of the device the id is bound to.
    pub fn device_name(&self) -> Option<String> {
        let ctx = self.verbs_ctx();
        if ctx.is_null() {
            return None;
        }
        // SAFETY: librdmacm keeps the context of a bound id open; `device` is its device.
        Some(c_str(unsafe { ibv_get_device_name((*ctx).device) }))
    }

    /// The source GID rdma_cm chose for this id (after bind / resolve / on a request).
    pub fn sgid(&self) -> Option<[u8; 16]> {
        if self.verbs_ctx().is_null() {
            return None;
        }
        // SAFETY: live id; for RC ids on IB and RoCE librdmacm fills route.addr.addr.ibaddr
        // when it binds / resolves, and `raw` is plain bytes.
        Some(unsafe { self.raw.as_ref().route.addr.addr.ibaddr.sgid.raw })
    }

    /// Entry `index` of the GID table of this id's port.
    pub fn query_gid(&self, index: u8) -> Result<[u8; 16], RdmaError> {
        let ctx = self.verbs_ctx();
        if ctx.is_null() {
            return Err(RdmaError::NoDevice {
                detail: "rdma_cm id is not bound to a device".into(),
            });
        }
        let mut gid = ibv_gid { raw: [0; 16] };
        // SAFETY: live context of a bound id; `gid` is ours to write.
        let rc = unsafe { ibv_query_gid(ctx, self.port_num(), index as i32, &mut gid) };
        if rc != 0 {
            return Err(RdmaError::BadOption {
                key: "gid_index",
                detail: format!(
                    "GID {index} of port {} cannot be read: {}",
                    self.port_num(),
                    last_error()
                ),
            });
        }
        // SAFETY: the union is plain bytes either way.
        Ok(unsafe { gid.raw })
    }

    pub fn port_num(&self) -> u8 {
        // SAFETY: live id; reading a plain field.
        unsafe { self.raw.as_ref().port_num }
    }

    /// `(is_active, state name)` of the port this id uses.
    pub fn port_state(&self) -> Result<(bool, String), RdmaError> {
        let ctx = self.verbs_ctx();
        if ctx.is_null() {
            return Err(RdmaError::NoDevice {
                detail: "rdma_cm id is not bound to a device".into(),
            });
        }
        // SAFETY: the bound id's context is live while the id is.
        unsafe { query_port(ctx, self.port_num()) }
    }

    fn install_qp(&mut self, qp: Qp) {
        debug_assert!(self.qp.is_none());
        self.qp = Some(qp);
    }

    pub fn qp(&self) -> Option<&Qp> {
        self.qp.as_ref()
    }

    /// Operations on the QP. A handle, not `&mut Qp`: a `Qp` must never leave the id it was
    /// created on (swapping two ids' QPs would destroy a QP through the wrong id and free
    /// buffers the device still writes into).
    pub fn qp_mut(&mut self) -> Option<QpHandle<'_>> {
        self.qp.as_mut().map(QpHandle)
    }

    /// Destroy the QP now (and the buffers it owned); the id stays usable for events.
    pub fn destroy_qp(&mut self) {
        self.qp = None;
    }
}

/// The device of an id: here rather than in `ib`, which knows nothing of rdma_cm.
impl Device {
    /// The device that serves `id` (bound / resolved / from a request). An anchor id bound to
    /// `id`'s local address keeps librdmacm's reference on the device.
    pub fn for_id(id: &CmId) -> Result<Arc<Device>, RdmaError> {
        let ctx = NonNull::new(id.verbs_ctx()).ok_or_else(|| RdmaError::NoDevice {
            detail: "rdma_cm id has no device".into(),
        })?;
        let local = id.local_addr().ok_or_else(|| {
            RdmaError::verbs(
                "rdma_get_local_addr",
                std::io::Error::other("no local address"),
            )
        })?;
        let mut anchor = CmId::new(id.channel(), 0)?;
        let mut any_port = local;
        any_port.set_port(0);
        anchor.bind(any_port)?;
        if anchor.verbs_ctx() != ctx.as_ptr() {
            return Err(RdmaError::AddressNotRdma {
                addr: local,
                detail: "binding the address again picked another device".into(),
            });
        }
        // SAFETY: `ctx` is the context of the bound id `anchor` (checked above), which
        // librdmacm keeps open while the anchor lives; the Device keeps the anchor.
        unsafe { Device::with_anchor(ctx, Box::new(anchor)) }
    }

    /// The device that serves local address `addr` (port ignored).
    pub fn for_local_addr(
        channel: &Arc<EventChannel>,
        addr: SocketAddr,
    ) -> Result<Arc<Device>, RdmaError> {
        let mut anchor = CmId::new(channel, 0)?;
        let mut a = addr;
        a.set_port(0);
        anchor.bind(a)?;
        let ctx = NonNull::new(anchor.verbs_ctx()).ok_or_else(|| RdmaError::AddressNotRdma {
            addr,
            detail: "no RDMA device has this address".into(),
        })?;
        // SAFETY: `ctx` is the context of the bound id `anchor` (read from it above), which
        // librdmacm keeps open while the anchor lives; the Device keeps the anchor.
        unsafe { Device::with_anchor(ctx, Box::new(anchor)) }
    }

    /// Whether `id` is on this device.
    pub fn serves(&self, id: &CmId) -> bool {
        id.verbs_ctx() == self.ctx()
    }
}

/// QP creation needs the id: here rather than in `qp`, which takes the id as a raw handle.
impl Qp {
    /// Create an RC QP on `id` (which must be on `device`) using `cq` for both directions.
    pub fn create(
        id: &mut CmId,
        device: &Arc<Device>,
        cq: &Arc<Cq>,
        caps: QpCaps,
        send: BufferPool,
        recv: BufferPool,
    ) -> Result<(), RdmaError> {
        if !device.serves(id) {
            return Err(RdmaError::verbs(
                "rdma_create_qp",
                std::io::Error::other("id and device differ"),
            ));
        }
        // SAFETY: `id` is live (we hold it) and on `device` (checked above). The QP is installed
        // in `id` at once, and a CmId drops its QP (rdma_destroy_qp) before rdma_destroy_id and
        // never lets it go to another id (`qp_mut` hands out a QpHandle, not the Qp).
        let qp = unsafe { Qp::create_on(id.raw, device, cq, caps, send, recv)? };
        id.install_qp(qp);
        Ok(())
    }
}

/// Mutable access to the operations of an id's QP (see [`CmId::qp_mut`]).
pub struct QpHandle<'a>(&'a mut Qp);

impl QpHandle<'_> {
    pub fn qp_num(&self) -> u32 {
        self.0.qp_num()
    }
    pub fn post_recv(&mut self, slot: usize) -> Result<(), RdmaError> {
        self.0.post_recv(slot)
    }
    pub fn post_send(
        &mut self,
        slot: usize,
        len: usize,
        imm: Option<u32>,
        signaled: bool,
    ) -> Result<(), RdmaError> {
        self.0.post_send(slot, len, imm, signaled)
    }
    pub fn post_read(
        &mut self,
        id: u64,
        target: &ReadTarget,
        remote_addr: u64,
        rkey: u32,
    ) -> Result<(), RdmaError> {
        self.0.post_read(id, target, remote_addr, rkey)
    }
    pub fn device(&self) -> &Arc<Device> {
        self.0.device()
    }
    /// A send slot the device does not own, to fill before `post_send`.
    pub fn send_slot_mut(&mut self, slot: usize) -> Option<&mut [u8]> {
        self.0.send_pool_mut().slot_mut(slot)
    }
    pub fn complete(&mut self, wr_id: u64) -> Retired {
        self.0.complete(wr_id)
    }
    pub fn recv_data(&self, slot: usize, len: usize) -> Option<&[u8]> {
        self.0.recv_data(slot, len)
    }
    pub fn force_error(&mut self) -> Result<(), RdmaError> {
        self.0.force_error()
    }
}

impl std::fmt::Debug for CmId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmId")
            .field("token", &self.token())
            .field("local", &self.local_addr())
            .field("peer", &self.peer_addr())
            .field("qp", &self.qp.as_ref().map(|q| q.qp_num()))
            .finish()
    }
}

impl Drop for CmId {
    fn drop(&mut self) {
        // The QP first: rdma_destroy_qp needs the id.
        self.qp = None;
        // SAFETY: the id is live and owned by us; every event about it was acknowledged when
        // read (EventChannel::get_event), so rdma_destroy_id does not block. The channel
        // outlives this call (we hold an Arc).
        unsafe { rdma_destroy_id(self.raw.as_ptr()) };
    }
}

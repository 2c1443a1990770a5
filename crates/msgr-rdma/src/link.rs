//! One connection's queue pair as an ordered byte stream ("link"), with credit-based flow
//! control: what the msgr-core session writes is cut into chunks of at most one peer receive
//! buffer, each carried by a SEND_WITH_IMM whose immediate returns credits (see [`crate::credit`]).
//!
//! Large chunks go by RDMA READ instead ("rendezvous"): a chunk of at least `read_threshold`
//! bytes (a message's data section) is registered where it lies (or found in a
//! [`crate::verbs::RegisteredBuffer`]) and announced by a READ request at its place in the
//! stream; the receiver reads it straight into the buffer the session decodes from, splices it
//! into the stream there, and tells the sender with a READ done so it can deregister. Neither
//! side copies the payload. Requests and dones are plain SENDs (no immediate) whose last four
//! bytes carry the credits a data SEND carries in its immediate; they use credits like data.
//!
//! Life of a link: [`prepare`] builds the CQ, QP and registered pools on an rdma_cm id and posts
//! every receive (before connect / accept, so the peer's first SEND finds one); once rdma_cm
//! reports ESTABLISHED, [`Link::new`] takes the id and the peer's [`Hello`].

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};

use crate::credit::Credits;
use crate::error::RdmaError;
use crate::options::{RdmaOptions, READS_IN_FLIGHT};
use crate::verbs::{
    BufferPool, CmId, CompChannel, Cq, Device, ExposedRegion, Qp, QpCaps, ReadPool, ReadTarget,
    Retired, WcKind, WorkCompletion,
};

/// Private data of connect / accept: who we are and how the peer may send to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Receives posted before the connection was established (the peer's initial credits).
    pub recv_buffers: u32,
    /// Size of each receive buffer (largest SEND the peer may post).
    pub buffer_size: u32,
    /// The sender's entity type (`CEPH_ENTITY_TYPE_*`), for the accept hook; 0 if unknown.
    pub entity_type: u8,
    /// The sender's messenger nonce, for the accept hook.
    pub nonce: u32,
}

/// First bytes of every private data we send, to tell msgr peers from anything else.
pub const HELLO_MAGIC: [u8; 4] = *b"MSRD";
/// 2: READ requests and dones travel in framed SENDs with stream bytes.
pub const HELLO_VERSION: u8 = 2;
/// Encoded size of a [`Hello`] (fits the 56 bytes of an RC connect's private data).
pub const HELLO_LEN: usize = 20;
/// Reject private data: the accept hook refused the peer.
pub const REJECT_REFUSED: u8 = 1;
/// Reject private data: the connect request was malformed (not an msgr peer).
pub const REJECT_BAD_HELLO: u8 = 2;

impl Hello {
    pub fn from_options(o: &RdmaOptions) -> Self {
        Hello {
            recv_buffers: o.recv_buffers as u32,
            buffer_size: o.buffer_size as u32,
            entity_type: 0,
            nonce: 0,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HELLO_LEN);
        v.extend_from_slice(&HELLO_MAGIC);
        v.extend_from_slice(&[HELLO_VERSION, self.entity_type, 0, 0]);
        v.extend_from_slice(&self.recv_buffers.to_le_bytes());
        v.extend_from_slice(&self.buffer_size.to_le_bytes());
        v.extend_from_slice(&self.nonce.to_le_bytes());
        v
    }

    /// Decode and sanity-check a peer's hello (IB pads private data with zeros, so trailing
    /// bytes are ignored).
    pub fn decode(b: &[u8]) -> Result<Hello, String> {
        if b.len() < HELLO_LEN {
            return Err(format!(
                "private data is {} bytes, expected at least {HELLO_LEN}",
                b.len()
            ));
        }
        if b[..4] != HELLO_MAGIC {
            return Err(format!("bad magic {:02x?}", &b[..4]));
        }
        if b[4] != HELLO_VERSION {
            return Err(format!("unsupported version {}", b[4]));
        }
        let recv_buffers = u32::from_le_bytes(b[8..12].try_into().unwrap());
        let buffer_size = u32::from_le_bytes(b[12..16].try_into().unwrap());
        if !(2..=65536).contains(&recv_buffers) || !(64..=(1 << 30)).contains(&buffer_size) {
            return Err(format!(
                "implausible window: {recv_buffers} receive buffers of {buffer_size} bytes"
            ));
        }
        Ok(Hello {
            recv_buffers,
            buffer_size,
            entity_type: b[5],
            nonce: u32::from_le_bytes(b[16..20].try_into().unwrap()),
        })
    }

    pub fn reject_data(code: u8) -> Vec<u8> {
        let mut v = HELLO_MAGIC.to_vec();
        v.push(code);
        v
    }

    /// The reason code of a reject we sent, if the data is ours.
    pub fn reject_code(b: &[u8]) -> Option<u8> {
        (b.len() >= 5 && b[..4] == HELLO_MAGIC).then(|| b[4])
    }
}

/// A GID as 8 groups of hex digits (`fe80:0000:...`).
pub fn fmt_gid(g: &[u8; 16]) -> String {
    g.chunks(2)
        .map(|c| format!("{:02x}{:02x}", c[0], c[1]))
        .collect::<Vec<_>>()
        .join(":")
}

/// Devices opened so far (one protection domain each).
#[derive(Default)]
pub struct DeviceCache {
    devices: Vec<Arc<Device>>,
}

impl DeviceCache {
    /// The device serving `id`, checked against `device` / `port` of the options.
    pub fn for_id(&mut self, id: &CmId, opts: &RdmaOptions) -> Result<Arc<Device>, RdmaError> {
        if let Some(d) = self.devices.iter().find(|d| d.serves(id)) {
            return Ok(Arc::clone(d));
        }
        let name = id.device_name().unwrap_or_default();
        if let Some(wanted) = &opts.device {
            if *wanted != name {
                return Err(RdmaError::WrongDevice {
                    addr: id.local_addr().unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
                    actual: name,
                    wanted: wanted.clone(),
                });
            }
        }
        let (active, state) = id.port_state()?;
        if !active {
            return Err(RdmaError::PortDown {
                device: name,
                port: id.port_num(),
                state,
            });
        }
        if let Some(index) = opts.gid_index {
            // rdma_cm picks the GID that matches the address; the configured index is checked
            // so a wrong setting is visible, not silently ignored.
            let configured = id.query_gid(index)?;
            if id.sgid() != Some(configured) {
                tracing::warn!(
                    target: "msgr_rdma",
                    "gid_index {index} of {name} port {} is {}, but rdma_cm uses {} for {:?} (chosen by address); check `gid_index` (show_gids)",
                    id.port_num(),
                    fmt_gid(&configured),
                    id.sgid().map(|g| fmt_gid(&g)).unwrap_or_default(),
                    id.local_addr(),
                );
            }
        }
        let d = Device::for_id(id)?;
        self.devices.push(Arc::clone(&d));
        Ok(d)
    }
}

/// Build the completion channel, CQ, pools and RC QP on `id`, and post every receive.
pub fn prepare(
    id: &mut CmId,
    device: &Arc<Device>,
    opts: &RdmaOptions,
) -> Result<Arc<Cq>, RdmaError> {
    let channel = CompChannel::new(device)?;
    let cq = Cq::new(
        &channel,
        opts.send_buffers + opts.recv_buffers + READS_IN_FLIGHT + 1,
    )?;
    let send = BufferPool::new(device, opts.buffer_size, opts.send_buffers)?;
    let recv = BufferPool::new(device, opts.buffer_size, opts.recv_buffers)?;
    let caps = QpCaps {
        max_send_wr: (opts.send_buffers + READS_IN_FLIGHT) as u32,
        max_recv_wr: opts.recv_buffers as u32,
        max_inline_data: 0,
    };
    Qp::create(id, device, &cq, caps, send, recv)?;
    let mut qp = id.qp_mut().expect("qp just created");
    for slot in 0..opts.recv_buffers {
        qp.post_recv(slot)?;
    }
    Ok(cq)
}

/// Counters of one link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// SENDs carrying data / credit-only SENDs.
    pub data_sends: u64,
    pub credit_sends: u64,
    pub data_recvs: u64,
    /// Times data was waiting and the peer had no credit left.
    pub credit_stalls: u64,
    /// Work completions with an error status (flushes included).
    pub wc_errors: u64,
    /// Completions that failed with receiver-not-ready retries exceeded.
    pub rnr_errors: u64,
    /// Large chunks sent as READ requests, and those of them that needed a registration of
    /// their own (the rest lay in a pre-registered buffer).
    pub read_requests: u64,
    pub read_registrations: u64,
    /// Large chunks copied through send buffers because registering them failed.
    pub read_fallbacks: u64,
    /// RDMA READs completed, and their bytes.
    pub reads: u64,
    pub read_bytes: u64,
    /// READ payloads that had to be copied into the session's buffer (more undecoded bytes
    /// preceded them than the room left for that).
    pub read_copies: u64,
    /// READ destinations registered (the others reused a pooled registration).
    pub read_buffers_registered: u64,
}

/// Room kept before a READ's payload for the undecoded stream bytes that precede it (a
/// message's front and middle), so they are copied instead of the payload.
const READ_HEAD: usize = 4096;
/// Room kept after a READ's payload for what follows it (the footer, the next frames).
const READ_TAIL: usize = 4096;
/// READ destinations a link keeps registered for reuse, and the largest it keeps (larger
/// payloads get a registration of their own per READ).
const READ_POOL_BUFFERS: usize = 8;
/// READ payload bytes a link holds (posted, or read and not consumed by the session) before it
/// starts another READ: a receiver that does not consume (its dispatcher is throttled) stops
/// pulling data, as it stops re-posting receive buffers. One READ always may go, whatever its
/// size.
const READ_BUDGET: usize = 16 << 20;
const READ_POOL_MAX: usize = 4 << 20;

/// A READ announced in a framed SEND: "the `len` bytes at `addr` / `rkey` come next in the
/// stream, after this SEND's own bytes".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadRequest {
    id: u32,
    len: u64,
    addr: u64,
    rkey: u32,
}

/// Header of a framed SEND: a plain SEND (no immediate, which is how it is told from a data
/// SEND) whose first [`FRAME_HEADER`] bytes carry the credits a data SEND carries in its
/// immediate, optionally "every READ up to `done` is finished, release them" and optionally a
/// READ request; stream bytes follow. A sender frames a SEND only when it has a READ to
/// announce or dones to report, so a message's header, its READ request and the previous
/// message's footer travel in one SEND, and dones ride along with replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHeader {
    credits: u32,
    done: Option<u32>,
    read: Option<ReadRequest>,
}

const FRAME_HEADER: usize = 40;
const FRAME_HAS_DONE: u8 = 1;
const FRAME_HAS_READ: u8 = 2;
const FRAME_MAGIC: u8 = 0x4d; // 'M'

impl FrameHeader {
    fn encode(&self, buf: &mut [u8]) {
        let flags = if self.done.is_some() {
            FRAME_HAS_DONE
        } else {
            0
        } | if self.read.is_some() {
            FRAME_HAS_READ
        } else {
            0
        };
        buf[..FRAME_HEADER].fill(0);
        buf[0] = FRAME_MAGIC;
        buf[1] = flags;
        buf[4..8].copy_from_slice(&self.credits.to_le_bytes());
        buf[8..12].copy_from_slice(&self.done.unwrap_or(0).to_le_bytes());
        if let Some(r) = self.read {
            buf[12..16].copy_from_slice(&r.id.to_le_bytes());
            buf[16..24].copy_from_slice(&r.len.to_le_bytes());
            buf[24..32].copy_from_slice(&r.addr.to_le_bytes());
            buf[32..36].copy_from_slice(&r.rkey.to_le_bytes());
        }
    }

    fn decode(b: &[u8]) -> Result<FrameHeader, String> {
        if b.len() < FRAME_HEADER
            || b[0] != FRAME_MAGIC
            || b[1] & !(FRAME_HAS_DONE | FRAME_HAS_READ) != 0
        {
            return Err(format!(
                "malformed framed SEND ({} bytes, starts {:02x?}): not an msgr peer, or a bug",
                b.len(),
                &b[..b.len().min(4)]
            ));
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Ok(FrameHeader {
            credits: u32_at(4),
            done: (b[1] & FRAME_HAS_DONE != 0).then(|| u32_at(8)),
            read: (b[1] & FRAME_HAS_READ != 0).then(|| ReadRequest {
                id: u32_at(12),
                len: u64_at(16),
                addr: u64_at(24),
                rkey: u32_at(32),
            }),
        })
    }
}

/// What the sender queued, in stream order.
enum Out {
    /// Copied into send buffers.
    Stream(Bytes),
    /// Sent as a READ request (at least `read_threshold` bytes).
    Read(Bytes),
}

/// Received stream input, in order.
enum Input {
    /// Bytes [off, end) of a completed receive buffer, re-posted once consumed if `repost`
    /// (else a READ of the same SEND follows and re-posts it).
    Data {
        slot: usize,
        off: usize,
        end: usize,
        repost: bool,
    },
    /// A READ request; `slot` (the request's receive buffer) is re-posted once the payload is
    /// consumed, so requests use credits as data does.
    Read {
        slot: usize,
        id: u32,
        len: usize,
        addr: u64,
        rkey: u32,
        state: ReadState,
    },
}

enum ReadState {
    Waiting,
    Posted(ReadTarget),
    /// The buffer (READ_HEAD bytes of room, then the payload, then spare room), and the room.
    Done(BytesMut, usize),
}

/// Why a link failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFailure(pub String);

/// A connected QP carrying an ordered byte stream.
pub struct Link {
    id: CmId,
    cq: Arc<Cq>,
    credits: Credits,
    /// Largest chunk one SEND may carry: min(our send buffers, the peer's receive buffers).
    chunk: usize,
    free_send: Vec<usize>,
    send_slots: usize,
    out: VecDeque<Out>,
    out_bytes: usize,
    read_threshold: usize,
    max_read: usize,
    /// Payloads the peer may be reading, oldest first, until its READ done.
    exposed: VecDeque<(u32, ExposedRegion)>,
    exposed_bytes: usize,
    max_exposed: usize,
    next_read_id: u32,
    /// Completed receives and READ requests not consumed yet.
    ready_in: VecDeque<Input>,
    /// Data bytes in `ready_in` (READ payloads not counted).
    ready_bytes: usize,
    reads_in_flight: usize,
    /// Payload bytes of READs posted or done and not consumed yet.
    read_bytes_held: usize,
    read_pool: ReadPool,
    /// The newest READ consumed and not yet reported to the peer.
    done_unreported: Option<u32>,
    failed: Option<LinkFailure>,
    stalled: bool,
    /// Sends posted since the last signaled one.
    unsignaled: usize,
    batch: usize,
    wcs: Vec<WorkCompletion>,
    /// The CQ raises an event for its next completion (false after an event was taken while
    /// busy-polling).
    cq_armed: bool,
    pub counters: LinkCounters,
}

impl Link {
    /// `id` has a QP from [`prepare`] and is ESTABLISHED; `peer` is the hello it sent.
    pub fn new(id: CmId, cq: Arc<Cq>, opts: &RdmaOptions, peer: Hello) -> Link {
        let send_slots = opts.send_buffers;
        let read_pool = ReadPool::new(
            id.qp().expect("link has a qp").device(),
            READ_POOL_BUFFERS,
            READ_POOL_MAX,
        );
        Link {
            id,
            cq,
            credits: Credits::new(opts.recv_buffers as u32, peer.recv_buffers),
            chunk: opts.buffer_size.min(peer.buffer_size as usize),
            free_send: (0..send_slots).rev().collect(),
            send_slots,
            out: VecDeque::new(),
            out_bytes: 0,
            read_threshold: opts.read_threshold,
            max_read: opts.max_read,
            exposed: VecDeque::new(),
            exposed_bytes: 0,
            max_exposed: opts.max_exposed,
            next_read_id: 0,
            ready_in: VecDeque::new(),
            ready_bytes: 0,
            reads_in_flight: 0,
            read_bytes_held: 0,
            read_pool,
            done_unreported: None,
            failed: None,
            stalled: false,
            unsignaled: 0,
            batch: opts.cq_batch,
            wcs: Vec::with_capacity(opts.cq_batch),
            cq_armed: true,
            counters: LinkCounters::default(),
        }
    }

    /// The completion channel fd to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.cq.channel().fd()
    }

    pub fn id(&self) -> &CmId {
        &self.id
    }
    /// The device (and protection domain) of the link's QP.
    pub fn device(&self) -> Arc<Device> {
        Arc::clone(self.id.qp().expect("link has a qp").device())
    }
    pub fn id_mut(&mut self) -> &mut CmId {
        &mut self.id
    }
    pub fn into_id(self) -> CmId {
        self.id
    }

    pub fn failure(&self) -> Option<&LinkFailure> {
        self.failed.as_ref()
    }

    fn fail(&mut self, why: String) {
        if self.failed.is_none() {
            tracing::debug!(target: "msgr_rdma", "link failed: {why}");
            self.failed = Some(LinkFailure(why));
        }
    }

    /// Stream bytes waiting for a send buffer or for credits.
    pub fn queued_bytes(&self) -> usize {
        self.out_bytes
    }
    /// Send buffers posted and not yet retired (unsignaled sends are retired by the next
    /// signaled completion).
    pub fn sends_in_flight(&self) -> usize {
        self.send_slots - self.free_send.len()
    }
    pub fn send_buffers_free(&self) -> usize {
        self.free_send.len()
    }
    /// Receive buffers holding data (or READ requests) not consumed yet.
    pub fn recv_buffers_held(&self) -> usize {
        self.ready_in.len()
    }
    /// Payloads exposed to the peer's RDMA READ and not released yet, and their bytes.
    pub fn exposed_regions(&self) -> usize {
        self.exposed.len()
    }
    pub fn exposed_bytes(&self) -> usize {
        self.exposed_bytes
    }

    /// Whether a payload of `len` bytes may be exposed now (see `RdmaOptions::max_exposed`).
    fn may_expose(&self, len: usize) -> bool {
        self.exposed.is_empty() || self.exposed_bytes + len <= self.max_exposed
    }

    /// The next payload to be read, if it is at the queue's front and may not be exposed yet.
    fn read_blocked(&self) -> bool {
        matches!(self.out.front(), Some(Out::Read(b)) if !self.may_expose(b.len()))
    }
    /// Waiting for credits right now.
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }
    pub fn credits_available(&self) -> u32 {
        self.credits.available()
    }

    /// Append stream bytes (no copy until they go into a send buffer; none at all for chunks
    /// of `read_threshold` bytes or more, which the peer reads).
    pub fn queue(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.out_bytes += b.len();
        if self.read_threshold > 0 && b.len() >= self.read_threshold && b.len() <= self.max_read {
            self.out.push_back(Out::Read(b));
        } else {
            self.out.push_back(Out::Stream(b));
        }
    }

    /// Whether the send about to be posted asks for a completion. Only every
    /// `send_slots / 2`-th does (fewer completions, fewer wake-ups), and always the one that
    /// takes the last free slot, so some completion is always coming to give slots back.
    fn want_signal(&mut self) -> bool {
        self.unsignaled += 1;
        if self.free_send.is_empty() || self.unsignaled >= (self.send_slots / 2).max(1) {
            self.unsignaled = 0;
            true
        } else {
            false
        }
    }

    /// Post as many SENDs as buffers and credits allow, then a credit update if one is due.
    pub fn flush(&mut self) -> Result<(), RdmaError> {
        if self.failed.is_some() {
            return Ok(());
        }
        while self.out_bytes > 0 || self.done_unreported.is_some() {
            if !self.credits.can_send_data() {
                if !self.stalled && self.out_bytes > 0 {
                    self.stalled = true;
                    self.counters.credit_stalls += 1;
                }
                break;
            }
            if self.done_unreported.is_none() && self.read_blocked() {
                // Waiting for the peer's READ dones (counted as a stall, like credits).
                if !self.stalled {
                    self.stalled = true;
                    self.counters.credit_stalls += 1;
                }
                break;
            }
            let Some(slot) = self.free_send.pop() else {
                break;
            };
            self.stalled = false;
            // Framed when there is a done to report or a READ within this SEND's reach.
            let framed =
                self.done_unreported.is_some() || self.read_within(self.chunk - FRAME_HEADER);
            let start = if framed { FRAME_HEADER } else { 0 };
            let mut qp = self.id.qp_mut().expect("link has a qp");
            let buf = qp.send_slot_mut(slot).expect("free send slot");
            let mut n = start;
            while n < self.chunk {
                let Some(Out::Stream(front)) = self.out.front_mut() else {
                    break;
                };
                let take = front.len().min(self.chunk - n);
                buf[n..n + take].copy_from_slice(&front[..take]);
                front.advance(take);
                n += take;
                if front.is_empty() {
                    self.out.pop_front();
                }
            }
            self.out_bytes -= n - start;
            self.counters.bytes_out += (n - start) as u64;
            let read = if framed {
                self.expose_next_read()
            } else {
                None
            };
            let imm = self.credits.on_send();
            let signaled = self.want_signal();
            let mut qp = self.id.qp_mut().expect("link has a qp");
            let posted = if framed {
                let header = FrameHeader {
                    credits: imm,
                    done: self.done_unreported.take(),
                    read,
                };
                header.encode(qp.send_slot_mut(slot).expect("free send slot"));
                qp.post_send(slot, n, None, signaled)
            } else {
                qp.post_send(slot, n, Some(imm), signaled)
            };
            if let Err(e) = posted {
                self.free_send.push(slot);
                self.fail(e.to_string());
                return Err(e);
            }
            self.counters.data_sends += 1;
        }
        if self.credits.wants_credit_message() {
            if let Some(slot) = self.free_send.pop() {
                let imm = self.credits.on_send();
                let signaled = self.want_signal();
                let mut qp = self.id.qp_mut().expect("link has a qp");
                if let Err(e) = qp.post_send(slot, 0, Some(imm), signaled) {
                    self.free_send.push(slot);
                    self.fail(e.to_string());
                    return Err(e);
                }
                self.counters.credit_sends += 1;
            }
        }
        Ok(())
    }

    /// Whether a payload to be read is queued behind at most `reach` stream bytes. Looks at
    /// no more of the queue than that (it may hold many small chunks; this runs per SEND).
    fn read_within(&self, reach: usize) -> bool {
        let mut n = 0;
        for o in &self.out {
            match o {
                Out::Stream(b) => n += b.len(),
                Out::Read(_) => return true,
            }
            if n > reach {
                return false;
            }
        }
        false
    }

    /// If the queue's front is a payload to be read, expose it and return its READ request. A
    /// payload that cannot be registered is copied through send buffers instead.
    fn expose_next_read(&mut self) -> Option<ReadRequest> {
        if !matches!(self.out.front(), Some(Out::Read(_))) || self.read_blocked() {
            return None;
        }
        let Some(Out::Read(b)) = self.out.pop_front() else {
            unreachable!("checked above")
        };
        match ExposedRegion::new(&self.device(), b.clone()) {
            Ok(region) => {
                let id = self.next_read_id;
                self.next_read_id = id.wrapping_add(1);
                let req = ReadRequest {
                    id,
                    len: region.len() as u64,
                    addr: region.addr(),
                    rkey: region.rkey(),
                };
                self.counters.read_requests += 1;
                self.counters.read_registrations += region.registered_here() as u64;
                self.out_bytes -= region.len();
                self.counters.bytes_out += region.len() as u64;
                self.exposed_bytes += region.len();
                self.exposed.push_back((id, region));
                Some(req)
            }
            Err(e) => {
                // Copy it instead: slower, but the message goes.
                if self.counters.read_fallbacks == 0 {
                    tracing::warn!(target: "msgr_rdma", "cannot register a {}-byte payload for RDMA READ, copying it through send buffers instead: {e}", b.len());
                }
                self.counters.read_fallbacks += 1;
                self.out.push_front(Out::Stream(b));
                None
            }
        }
    }

    /// The completion channel fd is readable: acknowledge its event, re-arm, and drain the CQ.
    pub fn on_readable(&mut self) -> Result<usize, RdmaError> {
        self.cq_armed = true;
        self.cq.take_events(true)?;
        self.poll_completions()
    }

    /// As [`Link::on_readable`] but leaves the CQ unarmed: while busy-polling, completions are
    /// found by polling and need not raise events. Call [`Link::arm`] before sleeping.
    pub fn on_readable_unarmed(&mut self) -> Result<usize, RdmaError> {
        if self.cq.take_events(false)? > 0 {
            self.cq_armed = false;
        }
        self.poll_completions()
    }

    /// Whether the CQ will raise an event on the channel for its next completion.
    pub fn is_armed(&self) -> bool {
        self.cq_armed
    }

    /// Arm the CQ again, then drain what arrived before: the channel raises an event for the
    /// next completion. Returns how many completions were drained.
    pub fn arm(&mut self) -> Result<usize, RdmaError> {
        self.cq.arm()?;
        self.cq_armed = true;
        self.poll_completions()
    }

    /// Drain the CQ (in batches of `cq_batch`). Returns how many completions there were.
    pub fn poll_completions(&mut self) -> Result<usize, RdmaError> {
        let mut total = 0;
        loop {
            self.wcs.clear();
            let n = self.cq.poll(&mut self.wcs, self.batch)?;
            total += n;
            for i in 0..n {
                let wc = self.wcs[i];
                self.on_completion(wc);
            }
            if n < self.batch {
                break;
            }
        }
        self.start_reads();
        Ok(total)
    }

    /// Post the READs of waiting requests, oldest first, up to READS_IN_FLIGHT.
    fn start_reads(&mut self) {
        if self.failed.is_some() || self.reads_in_flight >= READS_IN_FLIGHT {
            return;
        }
        let mut qp = self.id.qp_mut().expect("link has a qp");
        let mut error = None;
        for input in self.ready_in.iter_mut() {
            if self.reads_in_flight >= READS_IN_FLIGHT {
                break;
            }
            let Input::Read {
                id,
                len,
                addr,
                rkey,
                state,
                ..
            } = input
            else {
                continue;
            };
            if !matches!(state, ReadState::Waiting) {
                continue;
            }
            if self.read_bytes_held > 0 && self.read_bytes_held + *len > READ_BUDGET {
                break;
            }
            let posted = self
                .read_pool
                .target(READ_HEAD, *len, READ_TAIL)
                .and_then(|t| {
                    qp.post_read(u64::from(*id), &t, *addr, *rkey)?;
                    Ok(t)
                });
            match posted {
                Ok(t) => {
                    *state = ReadState::Posted(t);
                    self.reads_in_flight += 1;
                    self.read_bytes_held += *len;
                }
                Err(e) => {
                    error = Some(format!("cannot start an RDMA READ of {len} bytes: {e}"));
                    break;
                }
            }
        }
        if let Some(e) = error {
            self.fail(e);
        }
    }

    fn on_completion(&mut self, wc: WorkCompletion) {
        let mut qp = self.id.qp_mut().expect("link has a qp");
        let slot = match qp.complete(wc.wr_id) {
            Retired::Unknown => return,
            Retired::Sends(slots) => {
                self.free_send.extend(slots);
                None
            }
            Retired::Read { id, sends } => {
                self.free_send.extend(sends);
                self.reads_in_flight -= 1;
                if wc.is_ok() {
                    self.read_completed(id as u32);
                    return;
                }
                None
            }
            Retired::Recv(slot) => Some(slot),
        };
        if !wc.is_ok() {
            self.counters.wc_errors += 1;
            if wc.is_rnr() {
                self.counters.rnr_errors += 1;
            }
            let what = if wc.is_flush() {
                "work request flushed: queue pair is in the error state (disconnected or faulted)"
                    .to_string()
            } else {
                format!(
                    "work completion error: {} (vendor error {:#x})",
                    wc.status_text(),
                    wc.vendor_err
                )
            };
            self.fail(what);
            return;
        }
        let Some(slot) = slot else {
            return;
        };
        debug_assert_eq!(wc.kind, WcKind::Recv);
        let len = wc.byte_len as usize;
        let Some(imm) = wc.imm else {
            self.on_framed(slot, len);
            return;
        };
        self.credits.on_receive(imm);
        if len == 0 {
            // credit-only: the buffer is free again at once
            let _ = self.repost(slot);
        } else {
            self.counters.data_recvs += 1;
            self.ready_in.push_back(Input::Data {
                slot,
                off: 0,
                end: len,
                repost: true,
            });
            self.ready_bytes += len;
        }
    }

    /// Give receive buffer `slot` back to the device; the peer learns of the credit with our
    /// next SEND. A failure fails the link.
    fn repost(&mut self, slot: usize) -> Result<(), RdmaError> {
        let mut qp = self.id.qp_mut().expect("link has a qp");
        if let Err(e) = qp.post_recv(slot) {
            self.fail(e.to_string());
            return Err(e);
        }
        self.credits.on_repost();
        Ok(())
    }

    /// A framed SEND arrived in receive buffer `slot`.
    fn on_framed(&mut self, slot: usize, len: usize) {
        let qp = self.id.qp_mut().expect("link has a qp");
        let data = qp.recv_data(slot, len).expect("completed receive slot");
        let header = match FrameHeader::decode(data) {
            Ok(h) => h,
            Err(e) => {
                self.fail(e);
                return;
            }
        };
        self.credits.on_receive(header.credits);
        if let Some(id) = header.done {
            // Dones are cumulative and READs complete in order.
            while self
                .exposed
                .front()
                .is_some_and(|(e, _)| id.wrapping_sub(*e) < u32::MAX / 2)
            {
                if let Some((_, r)) = self.exposed.pop_front() {
                    self.exposed_bytes -= r.len();
                }
            }
        }
        if let Some(r) = header.read {
            if r.len == 0 || r.len > self.max_read as u64 {
                self.fail(format!(
                    "peer asked us to RDMA READ {} bytes; the limit is {} (max_data)",
                    r.len, self.max_read
                ));
                return;
            }
        }
        let stream = len - FRAME_HEADER;
        if stream > 0 {
            self.counters.data_recvs += 1;
            self.ready_in.push_back(Input::Data {
                slot,
                off: FRAME_HEADER,
                end: len,
                repost: header.read.is_none(),
            });
            self.ready_bytes += stream;
        }
        match header.read {
            Some(r) => self.ready_in.push_back(Input::Read {
                slot,
                id: r.id,
                len: r.len as usize,
                addr: r.addr,
                rkey: r.rkey,
                state: ReadState::Waiting,
            }),
            None if stream == 0 => {
                let _ = self.repost(slot);
            }
            None => {}
        }
    }

    /// The READ `id` completed successfully: its payload is ready to splice into the stream.
    fn read_completed(&mut self, id: u32) {
        for input in self.ready_in.iter_mut() {
            if let Input::Read { id: rid, state, .. } = input {
                if *rid == id && matches!(state, ReadState::Posted(_)) {
                    let ReadState::Posted(t) = std::mem::replace(state, ReadState::Waiting) else {
                        unreachable!("checked above")
                    };
                    let len = t.len();
                    let (buf, head) = t.finish(&mut self.read_pool);
                    self.counters.read_buffers_registered = self.read_pool.registrations;
                    *state = ReadState::Done(buf, head);
                    self.counters.reads += 1;
                    self.counters.read_bytes += len as u64;
                    return;
                }
            }
        }
    }

    /// Received bytes not consumed yet (READ payloads not counted).
    pub fn readable_bytes(&self) -> usize {
        self.ready_bytes
    }

    /// Whether [`Link::read_into`] would give something now.
    pub fn has_input(&self) -> bool {
        match self.ready_in.front() {
            Some(Input::Data { .. }) => true,
            Some(Input::Read { state, .. }) => matches!(state, ReadState::Done(..)),
            None => false,
        }
    }

    /// Move up to `max` received bytes into `buf`, in stream order; each emptied receive
    /// buffer is re-posted (returning a credit). Call [`Link::flush`] afterwards so the
    /// credits (and READ dones) travel.
    ///
    /// A completed READ's payload is spliced in without a copy: `buf` becomes the READ's
    /// buffer (what `buf` held moves into the room before the payload). A call stops before
    /// the payload when it appended more than that room holds (decode first, then call again),
    /// and right after the payload, so the session can decode it before more bytes are
    /// appended (which could make the buffer grow, and copy). Data receive buffers are copied.
    pub fn read_into(&mut self, buf: &mut BytesMut, max: usize) -> Result<usize, RdmaError> {
        let mut copied = 0;
        let mut from_data = 0;
        while copied < max {
            let qp = self.id.qp_mut().expect("link has a qp");
            let consumed = match self.ready_in.front_mut() {
                None => break,
                Some(Input::Data {
                    slot,
                    off,
                    end,
                    repost,
                }) => {
                    let take = (*end - *off).min(max - copied);
                    let data = qp.recv_data(*slot, *end).expect("completed receive slot");
                    buf.extend_from_slice(&data[*off..*off + take]);
                    *off += take;
                    copied += take;
                    from_data += take;
                    (*off == *end).then_some((*slot, *repost))
                }
                Some(Input::Read {
                    slot,
                    id,
                    len,
                    state,
                    ..
                }) => {
                    if !matches!(state, ReadState::Done(..)) {
                        break;
                    }
                    let head = match state {
                        ReadState::Done(_, head) => *head,
                        _ => unreachable!("checked above"),
                    };
                    if copied > 0 && buf.len() > head {
                        // Let the caller decode what came before (whole frames leave the
                        // buffer) so the payload can be spliced in, not copied.
                        break;
                    }
                    let ReadState::Done(mut v, head) = std::mem::replace(state, ReadState::Waiting)
                    else {
                        unreachable!("checked above")
                    };
                    let keep = buf.len();
                    if keep <= head {
                        v[head - keep..head].copy_from_slice(buf);
                        v.advance(head - keep);
                        *buf = v;
                    } else {
                        buf.extend_from_slice(&v[head..]);
                        self.counters.read_copies += 1;
                    }
                    copied += *len;
                    self.read_bytes_held -= *len;
                    self.done_unreported = Some(*id);
                    let slot = *slot;
                    self.ready_in.pop_front();
                    self.repost(slot)?;
                    break;
                }
            };
            if let Some((slot, repost)) = consumed {
                self.ready_in.pop_front();
                if repost {
                    self.repost(slot)?;
                }
            }
        }
        self.ready_bytes -= from_data;
        self.counters.bytes_in += copied as u64;
        // Consuming a payload may have made room in the READ budget.
        self.start_reads();
        Ok(copied)
    }

    /// Fault injection: move the QP to the error state.
    pub fn force_error(&mut self) -> Result<(), RdmaError> {
        self.id.qp_mut().expect("link has a qp").force_error()
    }

    /// Start an rdma_cm disconnect (errors ignored: the link is going away anyway).
    pub fn disconnect(&mut self) {
        let _ = self.id.disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_header_round_trip_and_rejects_garbage() {
        let mut buf = [0xaau8; 64];
        for h in [
            FrameHeader {
                credits: 7,
                done: None,
                read: None,
            },
            FrameHeader {
                credits: u32::MAX,
                done: Some(0),
                read: Some(ReadRequest {
                    id: 9,
                    len: 1 << 40,
                    addr: 0xdead_beef_0000,
                    rkey: 0x1234,
                }),
            },
        ] {
            h.encode(&mut buf);
            assert_eq!(FrameHeader::decode(&buf[..FRAME_HEADER]), Ok(h));
            assert_eq!(FrameHeader::decode(&buf), Ok(h), "stream bytes follow");
        }
        assert!(FrameHeader::decode(&buf[..FRAME_HEADER - 1]).is_err());
        let mut bad = buf;
        bad[0] = b'X';
        assert!(FrameHeader::decode(&bad).unwrap_err().contains("malformed"));
        let mut bad = buf;
        bad[1] = 0x80;
        assert!(FrameHeader::decode(&bad).is_err(), "unknown flag");
    }

    #[test]
    fn hello_round_trip_and_rejects_garbage() {
        let h = Hello {
            recv_buffers: 16,
            buffer_size: 65536,
            entity_type: 4,
            nonce: 0xdead_beef,
        };
        let mut b = h.encode();
        b.resize(56, 0); // IB pads private data
        assert_eq!(Hello::decode(&b), Ok(h));
        assert!(Hello::decode(b"MSRD").is_err());
        assert!(Hello::decode(&[0u8; 56]).unwrap_err().contains("magic"));
        let mut huge = h.encode();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Hello::decode(&huge).unwrap_err().contains("implausible"));
        assert_eq!(
            Hello::reject_code(&Hello::reject_data(REJECT_REFUSED)),
            Some(REJECT_REFUSED)
        );
        assert_eq!(Hello::reject_code(&[0; 8]), None);
    }
}

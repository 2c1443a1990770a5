//! One connection's queue pair as an ordered byte stream ("link"), with credit-based flow
//! control: what the msgr-core session writes is cut into chunks of at most one peer receive
//! buffer, each carried by a SEND_WITH_IMM whose immediate returns credits (see [`crate::credit`]).
//!
//! Large chunks go by RDMA READ instead ("rendezvous"): a chunk of at least `read_threshold`
//! bytes (a message's data section) is registered where it lies (or found in a
//! [`crate::verbs::RegisteredBuffer`]) and announced by a READ request at its place in the
//! stream; the receiver reads it straight into the buffer the session decodes from, splices it
//! into the stream there, and tells the sender with a READ done so it can deregister. Neither
//! side copies the payload. Requests and dones are plain SENDs (no immediate) whose header
//! carries the credits a data SEND carries in its immediate; they use credits like data.
//!
//! Life of a link: [`prepare`] builds the CQ, QP and registered pools on an rdma_cm id and posts
//! every receive (before connect / accept, so the peer's first SEND finds one); once rdma_cm
//! reports ESTABLISHED, [`Link::new`] takes the id and the peer's [`Hello`].
//!
//! The code is split by concern: `hello` (the rdma_cm private data), `setup` (device checks
//! and QP construction), `frame` (the framed SEND's header and the stream items the paths
//! share), `send` (the send path), `recv` (completions and the receive path), `rendezvous`
//! (large payloads by RDMA READ: both sides' rules). `send`, `recv` and `rendezvous` use
//! `frame`, not each other.

mod frame;
mod hello;
mod recv;
mod rendezvous;
mod send;
mod setup;

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::Arc;

use crate::credit::Credits;
use crate::error::RdmaError;
use crate::options::RdmaOptions;
use crate::verbs::{CmId, Cq, Device, ExposedRegion, ReadPool, WorkCompletion};

pub use hello::{
    fmt_gid, Hello, HELLO_LEN, HELLO_MAGIC, HELLO_VERSION, REJECT_BAD_HELLO, REJECT_REFUSED,
};
pub use setup::{prepare, DeviceCache};

use frame::{Input, Out};
use rendezvous::{READ_POOL_BUFFERS, READ_POOL_MAX};

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

    pub(crate) fn fail(&mut self, why: String) {
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

    /// Waiting for credits right now.
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }
    pub fn credits_available(&self) -> u32 {
        self.credits.available()
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

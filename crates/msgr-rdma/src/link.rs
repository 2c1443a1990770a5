//! One connection's queue pair as an ordered byte stream ("link"), with credit-based flow
//! control: what the msgr-core session writes is cut into chunks of at most one peer receive
//! buffer, each carried by a SEND_WITH_IMM whose immediate returns credits (see [`crate::credit`]).
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
use crate::options::RdmaOptions;
use crate::verbs::{
    BufferPool, CmId, CompChannel, Cq, Device, Qp, QpCaps, Retired, WcKind, WorkCompletion,
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
pub const HELLO_VERSION: u8 = 1;
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
    let cq = Cq::new(&channel, opts.send_buffers + opts.recv_buffers + 1)?;
    let send = BufferPool::new(device, opts.buffer_size, opts.send_buffers)?;
    let recv = BufferPool::new(device, opts.buffer_size, opts.recv_buffers)?;
    let caps = QpCaps {
        max_send_wr: opts.send_buffers as u32,
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
    out: VecDeque<Bytes>,
    out_bytes: usize,
    /// Completed receives not consumed yet: (slot, offset, end).
    ready_in: VecDeque<(usize, usize, usize)>,
    ready_bytes: usize,
    failed: Option<LinkFailure>,
    stalled: bool,
    /// Sends posted since the last signaled one.
    unsignaled: usize,
    batch: usize,
    wcs: Vec<WorkCompletion>,
    pub counters: LinkCounters,
}

impl Link {
    /// `id` has a QP from [`prepare`] and is ESTABLISHED; `peer` is the hello it sent.
    pub fn new(id: CmId, cq: Arc<Cq>, opts: &RdmaOptions, peer: Hello) -> Link {
        let send_slots = opts.send_buffers;
        Link {
            id,
            cq,
            credits: Credits::new(opts.recv_buffers as u32, peer.recv_buffers),
            chunk: opts.buffer_size.min(peer.buffer_size as usize),
            free_send: (0..send_slots).rev().collect(),
            send_slots,
            out: VecDeque::new(),
            out_bytes: 0,
            ready_in: VecDeque::new(),
            ready_bytes: 0,
            failed: None,
            stalled: false,
            unsignaled: 0,
            batch: opts.cq_batch,
            wcs: Vec::with_capacity(opts.cq_batch),
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
    /// Receive buffers holding data not consumed yet.
    pub fn recv_buffers_held(&self) -> usize {
        self.ready_in.len()
    }
    /// Waiting for credits right now.
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }
    pub fn credits_available(&self) -> u32 {
        self.credits.available()
    }

    /// Append stream bytes (no copy until they go into a send buffer).
    pub fn queue(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.out_bytes += b.len();
            self.out.push_back(b);
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
        while self.out_bytes > 0 {
            if !self.credits.can_send_data() {
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
            let mut qp = self.id.qp_mut().expect("link has a qp");
            let buf = qp.send_slot_mut(slot).expect("free send slot");
            let mut n = 0;
            while n < self.chunk {
                let Some(front) = self.out.front_mut() else {
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
            self.out_bytes -= n;
            let imm = self.credits.on_send();
            let signaled = self.want_signal();
            let mut qp = self.id.qp_mut().expect("link has a qp");
            if let Err(e) = qp.post_send(slot, n, imm, signaled) {
                self.free_send.push(slot);
                self.fail(e.to_string());
                return Err(e);
            }
            self.counters.bytes_out += n as u64;
            self.counters.data_sends += 1;
        }
        if self.credits.wants_credit_message() {
            if let Some(slot) = self.free_send.pop() {
                let imm = self.credits.on_send();
                let signaled = self.want_signal();
                let mut qp = self.id.qp_mut().expect("link has a qp");
                if let Err(e) = qp.post_send(slot, 0, imm, signaled) {
                    self.free_send.push(slot);
                    self.fail(e.to_string());
                    return Err(e);
                }
                self.counters.credit_sends += 1;
            }
        }
        Ok(())
    }

    /// The completion channel fd is readable: acknowledge its events, re-arm, and drain the CQ.
    pub fn on_readable(&mut self) -> Result<usize, RdmaError> {
        self.cq.take_events()?;
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
        Ok(total)
    }

    fn on_completion(&mut self, wc: WorkCompletion) {
        let mut qp = self.id.qp_mut().expect("link has a qp");
        let slot = match qp.complete(wc.wr_id) {
            Retired::Unknown => return,
            Retired::Sends(slots) => {
                self.free_send.extend(slots);
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
        if let Some(imm) = wc.imm {
            self.credits.on_receive(imm);
        }
        let len = wc.byte_len as usize;
        if len == 0 {
            // credit-only: the buffer is free again at once
            if let Err(e) = qp.post_recv(slot) {
                self.fail(e.to_string());
                return;
            }
            self.credits.on_repost();
        } else {
            self.counters.data_recvs += 1;
            self.ready_in.push_back((slot, 0, len));
            self.ready_bytes += len;
        }
    }

    /// Received bytes not consumed yet.
    pub fn readable_bytes(&self) -> usize {
        self.ready_bytes
    }

    /// Copy up to `max` received bytes into `buf`; each emptied receive buffer is re-posted
    /// (returning a credit). Call [`Link::flush`] afterwards so the credits travel.
    pub fn read_into(&mut self, buf: &mut BytesMut, max: usize) -> Result<usize, RdmaError> {
        let mut copied = 0;
        while copied < max {
            let Some(&mut (slot, ref mut off, end)) = self.ready_in.front_mut() else {
                break;
            };
            let mut qp = self.id.qp_mut().expect("link has a qp");
            let take = (end - *off).min(max - copied);
            let data = qp.recv_data(slot, end).expect("completed receive slot");
            buf.extend_from_slice(&data[*off..*off + take]);
            *off += take;
            copied += take;
            if *off == end {
                self.ready_in.pop_front();
                if let Err(e) = qp.post_recv(slot) {
                    self.fail(e.to_string());
                    return Err(e);
                }
                self.credits.on_repost();
            }
        }
        self.ready_bytes -= copied;
        self.counters.bytes_in += copied as u64;
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

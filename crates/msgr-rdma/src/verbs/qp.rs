//! Registered buffer pools and reliable-connected queue pairs.
//!
//! The QP owns the pools it posts from, and tracks which slots the device may be reading or
//! writing ("posted"): Rust code can only borrow a slot that is not posted, and the memory is
//! deregistered only after the QP is destroyed.

use std::alloc::Layout;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::Arc;

use rdma_sys::*;

use super::ib::{Cq, Device};
use super::mr::ReadTarget;
use super::sys::{last_error, memlock_soft_limit};
use crate::error::{registration_error, RdmaError};

/// `count` buffers of `slot_size` bytes in one registered region.
pub struct BufferPool {
    ptr: NonNull<u8>,
    layout: Layout,
    slot_size: usize,
    count: usize,
    mr: NonNull<ibv_mr>,
    lkey: u32,
    posted: Vec<bool>,
    _device: Arc<Device>,
}

// SAFETY: the pool owns its memory and MR; slot access goes through &self / &mut self and the
// posted flags, so moving it to another thread is sound.
unsafe impl Send for BufferPool {}

impl BufferPool {
    /// Allocate and register `count * slot_size` bytes (page aligned, zeroed).
    pub fn new(
        device: &Arc<Device>,
        slot_size: usize,
        count: usize,
    ) -> Result<BufferPool, RdmaError> {
        let len = slot_size
            .checked_mul(count)
            .filter(|&l| l > 0)
            .ok_or(RdmaError::BadOption {
                key: "buffer_size",
                detail: format!("{count} buffers of {slot_size} bytes is not a valid pool size"),
            })?;
        let layout = Layout::from_size_align(len, 4096).map_err(|e| RdmaError::BadOption {
            key: "buffer_size",
            detail: e.to_string(),
        })?;
        // SAFETY: the layout has a non-zero size; the memory is freed in Drop (or below on error).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout);
        };
        let access = ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0 as i32;
        // SAFETY: live PD (held by `device`); the region [ptr, ptr+len) is ours and stays
        // allocated until after ibv_dereg_mr in Drop.
        let mr = unsafe { ibv_reg_mr(device.pd(), ptr.as_ptr() as *mut libc::c_void, len, access) };
        let Some(mr) = NonNull::new(mr) else {
            let err = last_error();
            // SAFETY: registration failed, so the device knows nothing of this memory.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
            return Err(registration_error(err, len as u64, memlock_soft_limit()));
        };
        // SAFETY: live MR.
        let lkey = unsafe { mr.as_ref().lkey };
        Ok(BufferPool {
            ptr,
            layout,
            slot_size,
            count,
            mr,
            lkey,
            posted: vec![false; count],
            _device: Arc::clone(device),
        })
    }

    pub fn slot_size(&self) -> usize {
        self.slot_size
    }
    pub fn count(&self) -> usize {
        self.count
    }
    /// Slots not posted to the device.
    pub fn free_slots(&self) -> usize {
        self.posted.iter().filter(|p| !**p).count()
    }
    pub fn is_posted(&self, slot: usize) -> bool {
        self.posted[slot]
    }

    /// The first `len` bytes of a slot the device does not own.
    pub fn slot(&self, slot: usize, len: usize) -> Option<&[u8]> {
        if slot >= self.count || self.posted[slot] {
            return None;
        }
        let len = len.min(self.slot_size);
        // SAFETY: in bounds; the slot is not posted, so the device neither reads nor writes it
        // (its last receive completed, or it was never posted).
        Some(unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().add(slot * self.slot_size), len)
        })
    }

    /// A slot the device does not own, to fill before a send.
    pub fn slot_mut(&mut self, slot: usize) -> Option<&mut [u8]> {
        if slot >= self.count || self.posted[slot] {
            return None;
        }
        // SAFETY: in bounds; not posted; `&mut self` makes the borrow exclusive.
        Some(unsafe {
            std::slice::from_raw_parts_mut(
                self.ptr.as_ptr().add(slot * self.slot_size),
                self.slot_size,
            )
        })
    }

    fn sge(&self, slot: usize, len: usize) -> ibv_sge {
        ibv_sge {
            // SAFETY (arithmetic only): in bounds, checked by callers.
            addr: self.ptr.as_ptr() as u64 + (slot * self.slot_size) as u64,
            length: len as u32,
            lkey: self.lkey,
        }
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        // SAFETY: the QP that posted from this pool was destroyed first (the QP owns its
        // pools and destroys itself before dropping them), so the device no longer touches the
        // memory; deregister once, then free once.
        unsafe {
            ibv_dereg_mr(self.mr.as_ptr());
            std::alloc::dealloc(self.ptr.as_ptr(), self.layout);
        }
    }
}

/// Queue depths of a QP.
#[derive(Debug, Clone, Copy)]
pub struct QpCaps {
    pub max_send_wr: u32,
    pub max_recv_wr: u32,
    pub max_inline_data: u32,
}

/// What a completion gave back.
#[derive(Debug, PartialEq, Eq)]
pub enum Retired {
    Recv(usize),
    /// The completed send and the unsignaled ones posted before it, oldest first.
    Sends(Vec<usize>),
    /// The RDMA READ with this id, and the unsignaled sends posted before it.
    Read {
        id: u64,
        sends: Vec<usize>,
    },
    /// Not a posted work request (a duplicate flush, or a stale id).
    Unknown,
}

/// wr_id tag bit of send work requests (receives have it clear).
pub const WR_SEND: u64 = 1 << 63;
/// wr_id tag bit of RDMA READ work requests.
pub const WR_READ: u64 = 1 << 62;

/// A work request on the send queue, in posting order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendWr {
    Send(usize),
    Read(u64),
}

/// A reliable-connected queue pair created through rdma_cm, with the pools it posts from.
pub struct Qp {
    id: NonNull<rdma_cm_id>,
    raw: NonNull<ibv_qp>,
    send: BufferPool,
    recv: BufferPool,
    /// Posted send-queue work in posting order: a signaled completion retires every send
    /// posted before it too (a send queue completes in order).
    send_order: VecDeque<SendWr>,
    max_inline: u32,
    _cq: Arc<Cq>,
    _device: Arc<Device>,
}

// SAFETY: used through &mut by one thread at a time; libibverbs posting is thread-safe.
unsafe impl Send for Qp {}

impl Qp {
    /// Create an RC QP on the rdma_cm id `id` using `cq` for both directions. The safe entry
    /// point is `Qp::create` (in `cm`), which checks the device and installs the QP in its
    /// `CmId`.
    ///
    /// # Safety
    /// `id` must be a live rdma_cm id on `device` (the device of `cq` too). The returned QP
    /// belongs to that id: it must be dropped (`rdma_destroy_qp`) before the id is destroyed,
    /// and never move to another id.
    pub(super) unsafe fn create_on(
        id: NonNull<rdma_cm_id>,
        device: &Arc<Device>,
        cq: &Arc<Cq>,
        caps: QpCaps,
        send: BufferPool,
        recv: BufferPool,
    ) -> Result<Qp, RdmaError> {
        let mut attr = ibv_qp_init_attr {
            qp_context: std::ptr::null_mut(),
            send_cq: cq.raw(),
            recv_cq: cq.raw(),
            srq: std::ptr::null_mut(),
            cap: ibv_qp_cap {
                max_send_wr: caps.max_send_wr,
                max_recv_wr: caps.max_recv_wr,
                max_send_sge: 1,
                max_recv_sge: 1,
                max_inline_data: caps.max_inline_data,
            },
            qp_type: ibv_qp_type::IBV_QPT_RC,
            sq_sig_all: 0,
        };
        // SAFETY: live id, PD and CQ (all on the same device: the caller's contract, checked by
        // Qp::create); on success the QP belongs to the id and is destroyed by Qp::drop through
        // rdma_destroy_qp.
        let rc = unsafe { rdma_create_qp(id.as_ptr(), device.pd(), &mut attr) };
        if rc != 0 {
            return Err(RdmaError::verbs("rdma_create_qp", last_error()));
        }
        // SAFETY: rdma_create_qp succeeded, so id->qp is the new QP.
        let raw = NonNull::new(unsafe { (*id.as_ptr()).qp })
            .ok_or_else(|| RdmaError::verbs("rdma_create_qp", std::io::Error::other("no qp")))?;
        Ok(Qp {
            id,
            raw,
            send,
            recv,
            send_order: VecDeque::new(),
            max_inline: attr.cap.max_inline_data,
            _cq: Arc::clone(cq),
            _device: Arc::clone(device),
        })
    }

    pub fn send_pool(&self) -> &BufferPool {
        &self.send
    }
    pub(super) fn send_pool_mut(&mut self) -> &mut BufferPool {
        &mut self.send
    }
    pub fn recv_pool(&self) -> &BufferPool {
        &self.recv
    }

    /// The device the QP (and its protection domain) is on.
    pub fn device(&self) -> &Arc<Device> {
        &self._device
    }

    pub fn qp_num(&self) -> u32 {
        // SAFETY: live QP.
        unsafe { self.raw.as_ref().qp_num }
    }

    /// Post receive slot `slot`. wr_id = slot.
    pub fn post_recv(&mut self, slot: usize) -> Result<(), RdmaError> {
        if slot >= self.recv.count || self.recv.posted[slot] {
            return Err(RdmaError::verbs(
                "ibv_post_recv",
                std::io::Error::other(format!("receive slot {slot} is busy or out of range")),
            ));
        }
        let mut sge = self.recv.sge(slot, self.recv.slot_size);
        let mut wr = ibv_recv_wr {
            wr_id: slot as u64,
            next: std::ptr::null_mut(),
            sg_list: &mut sge,
            num_sge: 1,
        };
        let mut bad: *mut ibv_recv_wr = std::ptr::null_mut();
        // SAFETY: live QP; the SGE names registered memory of a slot nobody borrows (not posted,
        // and we hold &mut self), which stays registered while the QP exists.
        let rc = unsafe { ibv_post_recv(self.raw.as_ptr(), &mut wr, &mut bad) };
        if rc != 0 {
            return Err(RdmaError::verbs(
                "ibv_post_recv",
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        self.recv.posted[slot] = true;
        Ok(())
    }

    /// Post a SEND_WITH_IMM (or, with `imm` None, a plain SEND) of the first `len` bytes of
    /// send slot `slot` (len may be 0). wr_id = WR_SEND | slot. An unsignaled send's slot
    /// comes back with the next signaled completion, so the caller must signal at least the
    /// last send it posts while it has no free slot left.
    pub fn post_send(
        &mut self,
        slot: usize,
        len: usize,
        imm: Option<u32>,
        signaled: bool,
    ) -> Result<(), RdmaError> {
        if slot >= self.send.count || self.send.posted[slot] || len > self.send.slot_size {
            return Err(RdmaError::verbs(
                "ibv_post_send",
                std::io::Error::other(format!(
                    "send slot {slot} is busy, out of range or too short"
                )),
            ));
        }
        let mut sge = self.send.sge(slot, len);
        // SAFETY: ibv_send_wr is plain old data (pointers, integers, unions of those); zeroed
        // is a valid "no options" value that we fill below.
        let mut wr: ibv_send_wr = unsafe { std::mem::zeroed() };
        wr.wr_id = WR_SEND | slot as u64;
        wr.sg_list = if len == 0 {
            std::ptr::null_mut()
        } else {
            &mut sge
        };
        wr.num_sge = if len == 0 { 0 } else { 1 };
        wr.opcode = if imm.is_some() {
            ibv_wr_opcode::IBV_WR_SEND_WITH_IMM
        } else {
            ibv_wr_opcode::IBV_WR_SEND
        };
        let mut flags = if signaled {
            ibv_send_flags::IBV_SEND_SIGNALED.0
        } else {
            0
        };
        if len > 0 && len as u32 <= self.max_inline {
            flags |= ibv_send_flags::IBV_SEND_INLINE.0;
        }
        wr.send_flags = flags;
        wr.imm_data_invalidated_rkey_union.imm_data = imm.unwrap_or(0).to_be();
        let mut bad: *mut ibv_send_wr = std::ptr::null_mut();
        // SAFETY: live QP; the SGE names `len` bytes of a registered slot that is not posted
        // and not borrowed (&mut self); it stays registered while the QP exists and is not
        // handed out again until its completion (posted flag).
        let rc = unsafe { ibv_post_send(self.raw.as_ptr(), &mut wr, &mut bad) };
        if rc != 0 {
            return Err(RdmaError::verbs(
                "ibv_post_send",
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        self.send.posted[slot] = true;
        self.send_order.push_back(SendWr::Send(slot));
        Ok(())
    }

    /// Post a signaled RDMA READ of `target.len()` bytes at the peer's `remote_addr` /
    /// `rkey` into `target`. wr_id = WR_READ | id. `target` must be kept (not dropped or
    /// finished) until this READ's completion has been polled.
    pub fn post_read(
        &mut self,
        id: u64,
        target: &ReadTarget,
        remote_addr: u64,
        rkey: u32,
    ) -> Result<(), RdmaError> {
        let mut sge = target.sge();
        // SAFETY: plain old data, zeroed = no options; filled below.
        let mut wr: ibv_send_wr = unsafe { std::mem::zeroed() };
        wr.wr_id = WR_READ | (id & !(WR_SEND | WR_READ));
        wr.sg_list = &mut sge;
        wr.num_sge = 1;
        wr.opcode = ibv_wr_opcode::IBV_WR_RDMA_READ;
        wr.send_flags = ibv_send_flags::IBV_SEND_SIGNALED.0;
        wr.wr.rdma.remote_addr = remote_addr;
        wr.wr.rdma.rkey = rkey;
        let mut bad: *mut ibv_send_wr = std::ptr::null_mut();
        // SAFETY: live QP; the SGE names memory registered for local write that the target
        // owns and nobody reads until the completion (the caller keeps the target until then,
        // and dropping it deregisters before freeing, so the device cannot write freed memory).
        let rc = unsafe { ibv_post_send(self.raw.as_ptr(), &mut wr, &mut bad) };
        if rc != 0 {
            return Err(RdmaError::verbs(
                "ibv_post_send (RDMA READ)",
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        self.send_order.push_back(SendWr::Read(id));
        Ok(())
    }

    /// The device is done with the work request `wr_id` (its completion was polled, success or
    /// not): its slot, and for a send every slot posted before it, may be borrowed again.
    pub fn complete(&mut self, wr_id: u64) -> Retired {
        if wr_id & (WR_SEND | WR_READ) == 0 {
            let slot = wr_id as usize;
            if slot >= self.recv.count || !self.recv.posted[slot] {
                return Retired::Unknown;
            }
            self.recv.posted[slot] = false;
            return Retired::Recv(slot);
        }
        let done = if wr_id & WR_READ != 0 {
            SendWr::Read(wr_id & !(WR_SEND | WR_READ))
        } else {
            let slot = (wr_id & !WR_SEND) as usize;
            if slot >= self.send.count || !self.send.posted[slot] {
                return Retired::Unknown;
            }
            SendWr::Send(slot)
        };
        if !self.send_order.contains(&done) {
            return Retired::Unknown;
        }
        let mut freed = Vec::new();
        while let Some(w) = self.send_order.pop_front() {
            if let SendWr::Send(s) = w {
                self.send.posted[s] = false;
                freed.push(s);
            }
            if w == done {
                break;
            }
        }
        match done {
            SendWr::Read(id) => Retired::Read { id, sends: freed },
            SendWr::Send(_) => Retired::Sends(freed),
        }
    }

    /// Bytes of a completed receive.
    pub fn recv_data(&self, slot: usize, len: usize) -> Option<&[u8]> {
        self.recv.slot(slot, len)
    }

    /// Move the QP to the error state (fault injection): posted work flushes, the peer's
    /// sends stop being acknowledged.
    pub fn force_error(&mut self) -> Result<(), RdmaError> {
        // SAFETY: ibv_qp_attr is plain old data; zeroed then the state field set.
        let mut attr: ibv_qp_attr = unsafe { std::mem::zeroed() };
        attr.qp_state = ibv_qp_state::IBV_QPS_ERR;
        // SAFETY: live QP; only the state attribute is read (mask IBV_QP_STATE).
        let rc = unsafe {
            ibv_modify_qp(
                self.raw.as_ptr(),
                &mut attr,
                ibv_qp_attr_mask::IBV_QP_STATE.0 as i32,
            )
        };
        if rc != 0 {
            return Err(RdmaError::verbs(
                "ibv_modify_qp",
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        Ok(())
    }
}

impl Drop for Qp {
    fn drop(&mut self) {
        // SAFETY: the owning CmId is live (it drops its Qp before destroying itself); after this
        // the device no longer touches the pools, which drop next, then the CQ / device Arcs.
        unsafe { rdma_destroy_qp(self.id.as_ptr()) };
    }
}

//! Device handle (context + protection domain), completion channels and completion queues.
//!
//! The bottom layer of the wrapper: it knows nothing of rdma_cm. Finding the device that serves
//! an rdma_cm id (and binding the anchor id that keeps it open) is in `cm`
//! ([`Device::for_id`], [`Device::for_local_addr`], [`Device::serves`]).

use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::Arc;

use rdma_sys::*;

use super::sys::{c_str, last_error, set_nonblocking};
use crate::error::RdmaError;

/// One RDMA device as librdmacm opened it, with our protection domain on it.
///
/// librdmacm owns the `ibv_context` and keeps it open while some id is bound to the device, so
/// a `Device` holds its own bound "anchor" id for as long as it lives.
pub struct Device {
    ctx: NonNull<ibv_context>,
    pd: NonNull<ibv_pd>,
    name: String,
    /// The bound rdma_cm id (a `CmId`) that keeps librdmacm's reference on the device, held
    /// type-erased so this layer needs no rdma_cm. Dropped after the PD is deallocated (Drop
    /// body runs before fields drop).
    _anchor: Box<dyn Send>,
}

// SAFETY: libibverbs objects may be used from any thread (the library is thread-safe); the raw
// pointers are only passed to library calls.
unsafe impl Send for Device {}
// SAFETY: as above; no interior state of ours is mutated through `&Device`.
unsafe impl Sync for Device {}

impl Device {
    /// A device on `ctx` with a new protection domain; `anchor` is kept (and dropped after the
    /// PD is deallocated).
    ///
    /// # Safety
    /// `ctx` must be a live `ibv_context` that stays open for as long as `anchor` lives (the
    /// context of the bound rdma_cm id `anchor`, which librdmacm keeps open while the id exists).
    pub(super) unsafe fn with_anchor(
        ctx: NonNull<ibv_context>,
        anchor: Box<dyn Send>,
    ) -> Result<Arc<Device>, RdmaError> {
        // SAFETY: the context is live (the anchor keeps it, the caller's contract); the PD is
        // owned by the new Device and deallocated in its Drop.
        let pd = unsafe { ibv_alloc_pd(ctx.as_ptr()) };
        let pd = NonNull::new(pd).ok_or_else(|| RdmaError::verbs("ibv_alloc_pd", last_error()))?;
        // SAFETY: live context; the name is copied.
        let name = c_str(unsafe { ibv_get_device_name((*ctx.as_ptr()).device) });
        Ok(Arc::new(Device {
            ctx,
            pd,
            name,
            _anchor: anchor,
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn ctx(&self) -> *mut ibv_context {
        self.ctx.as_ptr()
    }

    pub(super) fn pd(&self) -> *mut ibv_pd {
        self.pd.as_ptr()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: every QP, MR, CQ and channel made from this device holds an Arc to it, so
        // none is left; the PD is deallocated once, then the anchor id is dropped.
        unsafe { ibv_dealloc_pd(self.pd.as_ptr()) };
    }
}

/// A completion channel: the fd that becomes readable when an armed CQ gets a completion.
pub struct CompChannel {
    raw: NonNull<ibv_comp_channel>,
    device: Arc<Device>,
}

// SAFETY: the channel is an fd plus a context pointer; libibverbs calls on it are thread-safe.
unsafe impl Send for CompChannel {}
// SAFETY: as above.
unsafe impl Sync for CompChannel {}

impl CompChannel {
    pub fn new(device: &Arc<Device>) -> Result<Arc<CompChannel>, RdmaError> {
        // SAFETY: live context (held by `device`); the channel is owned by the returned value.
        let raw = unsafe { ibv_create_comp_channel(device.ctx()) };
        let raw = NonNull::new(raw)
            .ok_or_else(|| RdmaError::verbs("ibv_create_comp_channel", last_error()))?;
        let ch = Arc::new(CompChannel {
            raw,
            device: Arc::clone(device),
        });
        set_nonblocking(ch.fd()).map_err(|e| RdmaError::verbs("fcntl(comp channel fd)", e))?;
        Ok(ch)
    }

    pub fn fd(&self) -> RawFd {
        // SAFETY: live channel.
        unsafe { self.raw.as_ref().fd }
    }

    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }
}

impl Drop for CompChannel {
    fn drop(&mut self) {
        // SAFETY: every CQ on this channel holds an Arc to it, so none is left.
        unsafe { ibv_destroy_comp_channel(self.raw.as_ptr()) };
    }
}

/// Kind of a work completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WcKind {
    Send,
    Recv,
    RdmaWrite,
    RdmaRead,
    Other(u32),
}

/// One work completion, copied out of the CQ.
#[derive(Debug, Clone, Copy)]
pub struct WorkCompletion {
    pub wr_id: u64,
    pub status: u32,
    pub kind: WcKind,
    pub byte_len: u32,
    /// Immediate data (host order) when the sender used SEND_WITH_IMM.
    pub imm: Option<u32>,
    pub vendor_err: u32,
}

impl WorkCompletion {
    pub fn is_ok(&self) -> bool {
        self.status == ibv_wc_status::IBV_WC_SUCCESS
    }
    /// Flushed because the QP went to the error state (not the original failure).
    pub fn is_flush(&self) -> bool {
        self.status == ibv_wc_status::IBV_WC_WR_FLUSH_ERR
    }
    /// The peer had no receive posted, and the retries ran out.
    pub fn is_rnr(&self) -> bool {
        self.status == ibv_wc_status::IBV_WC_RNR_RETRY_EXC_ERR
    }
    pub fn status_text(&self) -> String {
        // SAFETY: returns a static string for any status value.
        c_str(unsafe { ibv_wc_status_str(self.status) })
    }
}

/// A completion queue bound to a completion channel.
pub struct Cq {
    raw: NonNull<ibv_cq>,
    channel: Arc<CompChannel>,
    capacity: usize,
}

// SAFETY: ibv_poll_cq / ibv_req_notify_cq are thread-safe in libibverbs; we keep no Rust-side
// mutable state.
unsafe impl Send for Cq {}
// SAFETY: as above.
unsafe impl Sync for Cq {}

const POLL_BATCH: usize = 32;

impl Cq {
    /// A CQ with room for `entries` completions, armed for the next completion.
    pub fn new(channel: &Arc<CompChannel>, entries: usize) -> Result<Arc<Cq>, RdmaError> {
        let cqe = entries.clamp(1, i32::MAX as usize) as i32;
        // SAFETY: live context and channel (both held by the Arcs we keep); the CQ is owned by
        // the returned value.
        let raw = unsafe {
            ibv_create_cq(
                channel.device.ctx(),
                cqe,
                std::ptr::null_mut(),
                channel.raw.as_ptr(),
                0,
            )
        };
        let raw =
            NonNull::new(raw).ok_or_else(|| RdmaError::verbs("ibv_create_cq", last_error()))?;
        let cq = Arc::new(Cq {
            raw,
            channel: Arc::clone(channel),
            capacity: entries,
        });
        cq.arm()?;
        Ok(cq)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn channel(&self) -> &Arc<CompChannel> {
        &self.channel
    }

    pub(super) fn raw(&self) -> *mut ibv_cq {
        self.raw.as_ptr()
    }

    /// Request an event on the channel for the next completion.
    pub fn arm(&self) -> Result<(), RdmaError> {
        // SAFETY: live CQ.
        let rc = unsafe { ibv_req_notify_cq(self.raw.as_ptr(), 0) };
        if rc != 0 {
            return Err(RdmaError::verbs(
                "ibv_req_notify_cq",
                std::io::Error::from_raw_os_error(rc.abs()),
            ));
        }
        Ok(())
    }

    /// Consume and acknowledge the channel's event (the fd is readable); re-arm if `rearm`.
    /// Returns whether there was one. Poll the CQ after this: completions that arrived between
    /// the last poll and the re-arm would otherwise wait for the next one. Not re-arming (while
    /// busy-polling) keeps the device from raising an event, and the kernel from waking pollers,
    /// for every completion; [`Cq::arm`] before sleeping on the channel again.
    ///
    /// One read, not a loop until EAGAIN: a CQ raises at most one event per arming and this is
    /// the only CQ on its channel, so a second event can only follow a re-arm (and then the fd
    /// becomes readable again). That saves a failing `read` per wake-up.
    pub fn take_events(&self, rearm: bool) -> Result<usize, RdmaError> {
        let mut cq: *mut ibv_cq = std::ptr::null_mut();
        let mut ctx: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: live, non-blocking channel; on success it names a CQ on this channel.
        let rc = unsafe { ibv_get_cq_event(self.channel.raw.as_ptr(), &mut cq, &mut ctx) };
        if rc != 0 {
            let err = last_error();
            if err.kind() != std::io::ErrorKind::WouldBlock {
                return Err(RdmaError::verbs("ibv_get_cq_event", err));
            }
            // A spurious wake-up: nothing to acknowledge, and the CQ is still armed.
            return Ok(0);
        }
        // One CQ per channel in this crate, so the event is about us; ack it on the CQ it names
        // all the same, as the library requires.
        // SAFETY: `cq` was just reported by the channel and is live (it is `self`).
        unsafe { ibv_ack_cq_events(cq, 1) };
        if rearm {
            self.arm()?;
        }
        Ok(1)
    }

    /// Append up to `max` completions to `out`; returns how many.
    pub fn poll(&self, out: &mut Vec<WorkCompletion>, max: usize) -> Result<usize, RdmaError> {
        let mut total = 0;
        while total < max {
            // Not zeroed: this runs on every busy-poll round, and the library writes every
            // entry it reports.
            let mut wcs = [const { std::mem::MaybeUninit::<ibv_wc>::uninit() }; POLL_BATCH];
            let want = (max - total).min(POLL_BATCH) as i32;
            // SAFETY: live CQ; `wcs` has room for `want` entries (MaybeUninit<T> has T's
            // layout).
            let n = unsafe { ibv_poll_cq(self.raw.as_ptr(), want, wcs.as_mut_ptr().cast()) };
            if n < 0 {
                return Err(RdmaError::verbs(
                    "ibv_poll_cq",
                    std::io::Error::from_raw_os_error(-n),
                ));
            }
            for wc in &wcs[..n as usize] {
                // SAFETY: ibv_poll_cq filled the first `n` entries.
                let wc = unsafe { wc.assume_init_ref() };
                let kind = match wc.opcode {
                    ibv_wc_opcode::IBV_WC_SEND => WcKind::Send,
                    ibv_wc_opcode::IBV_WC_RECV => WcKind::Recv,
                    ibv_wc_opcode::IBV_WC_RDMA_WRITE => WcKind::RdmaWrite,
                    ibv_wc_opcode::IBV_WC_RDMA_READ => WcKind::RdmaRead,
                    other => WcKind::Other(other),
                };
                let imm = if wc.wc_flags & ibv_wc_flags::IBV_WC_WITH_IMM.0 != 0 {
                    // SAFETY: IBV_WC_WITH_IMM says the union holds immediate data.
                    Some(u32::from_be(unsafe {
                        wc.imm_data_invalidated_rkey_union.imm_data
                    }))
                } else {
                    None
                };
                out.push(WorkCompletion {
                    wr_id: wc.wr_id,
                    status: wc.status,
                    kind,
                    byte_len: wc.byte_len,
                    imm,
                    vendor_err: wc.vendor_err,
                });
            }
            total += n as usize;
            if (n as usize) < want as usize {
                break;
            }
        }
        Ok(total)
    }
}

impl Drop for Cq {
    fn drop(&mut self) {
        // SAFETY: every QP using this CQ holds an Arc to it, so none is left; all channel events
        // were acknowledged in take_events.
        unsafe { ibv_destroy_cq(self.raw.as_ptr()) };
    }
}

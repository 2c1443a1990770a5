//! Memory regions for RDMA READ: a sender's payload exposed to the peer, the receiver's
//! destination for it, and application buffers registered once for many sends.
//!
//! Every region is deregistered before its memory can be freed or reused: once
//! `ibv_dereg_mr` has returned, the device no longer touches the memory (the verbs contract),
//! whatever state the QP is in.

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use rdma_sys::*;

use super::ib::Device;
use super::sys::{last_error, memlock_soft_limit};
use crate::error::{registration_error, RdmaError};

/// An `ibv_mr` and the device it was registered on; deregistered on drop.
struct Mr {
    raw: NonNull<ibv_mr>,
    device: Arc<Device>,
}

// SAFETY: an MR handle is only passed to libibverbs calls, which are thread-safe; the memory it
// covers is owned (and kept alive) by the value that holds the `Mr`.
unsafe impl Send for Mr {}
// SAFETY: as above; nothing is mutated through `&Mr`.
unsafe impl Sync for Mr {}

impl Mr {
    /// Register `len` bytes at `addr`.
    ///
    /// # Safety
    /// The memory must stay allocated until the returned `Mr` is dropped, and must not be
    /// written by Rust code while the device may write it (`access` with LOCAL_WRITE).
    unsafe fn register(
        device: &Arc<Device>,
        addr: *const u8,
        len: usize,
        access: ibv_access_flags,
    ) -> Result<Mr, RdmaError> {
        // SAFETY: live PD (held by `device`); the caller guarantees the memory's lifetime.
        let raw =
            unsafe { ibv_reg_mr(device.pd(), addr as *mut libc::c_void, len, access.0 as i32) };
        let raw = NonNull::new(raw)
            .ok_or_else(|| registration_error(last_error(), len as u64, memlock_soft_limit()))?;
        Ok(Mr {
            raw,
            device: Arc::clone(device),
        })
    }

    fn lkey(&self) -> u32 {
        // SAFETY: live MR.
        unsafe { self.raw.as_ref().lkey }
    }

    fn rkey(&self) -> u32 {
        // SAFETY: live MR.
        unsafe { self.raw.as_ref().rkey }
    }
}

impl Drop for Mr {
    fn drop(&mut self) {
        // SAFETY: registered once, deregistered once; after this returns the device no longer
        // accesses the memory, which its owner frees only after this (field / drop order).
        unsafe { ibv_dereg_mr(self.raw.as_ptr()) };
    }
}

/// A payload the peer may RDMA READ: the `Bytes` (kept alive here) registered for remote read,
/// or found inside a [`RegisteredBuffer`] registered on the same device (no registration then).
pub struct ExposedRegion {
    /// Declared before `bytes`: deregistered before the memory may go.
    mr: Option<Mr>,
    rkey: u32,
    bytes: Bytes,
}

impl ExposedRegion {
    /// Expose `bytes` on `device` for the peer's RDMA READ.
    pub fn new(device: &Arc<Device>, bytes: Bytes) -> Result<ExposedRegion, RdmaError> {
        if let Some(rkey) = registered_rkey(device, &bytes) {
            return Ok(ExposedRegion {
                mr: None,
                rkey,
                bytes,
            });
        }
        // SAFETY: `bytes` is held by the returned value, so the memory stays allocated until the
        // MR (declared first) is deregistered; remote read only: the device never writes it.
        let mr = unsafe {
            Mr::register(
                device,
                bytes.as_ptr(),
                bytes.len(),
                ibv_access_flags::IBV_ACCESS_REMOTE_READ,
            )?
        };
        Ok(ExposedRegion {
            rkey: mr.rkey(),
            mr: Some(mr),
            bytes,
        })
    }

    pub fn addr(&self) -> u64 {
        self.bytes.as_ptr() as u64
    }
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    pub fn rkey(&self) -> u32 {
        self.rkey
    }
    /// Whether this send needed a registration of its own (false: a pre-registered buffer).
    pub fn registered_here(&self) -> bool {
        self.mr.is_some()
    }
    /// The payload (for a fallback copy when the peer cannot read it).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// Where an RDMA READ lands: `head` bytes of room for what precedes the payload in the stream,
/// then the `len` bytes the device writes, then spare capacity for what follows. The whole
/// allocation is registered for local write; it comes from a [`ReadPool`] (and may go back to
/// it), or is registered for this READ alone.
pub struct ReadTarget {
    /// Declared before `buf`: deregistered before the memory may go.
    mr: Mr,
    /// A view of the whole allocation, no other handle alive while the READ may write it.
    buf: BytesMut,
    /// Start and size of the registered allocation.
    base: usize,
    cap: usize,
    head: usize,
    len: usize,
    /// Goes back to the pool after use.
    pooled: bool,
}

impl ReadTarget {
    /// (address, length, lkey) of the area the READ writes.
    pub(super) fn sge(&self) -> ibv_sge {
        ibv_sge {
            addr: self.base as u64 + self.head as u64,
            length: self.len as u32,
            lkey: self.mr.lkey(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The READ completed successfully: the buffer holding `head` bytes of room then the `len`
    /// bytes read, with the spare capacity after them, and `head`. A pooled target's
    /// registration goes back to `pool` (reused once every handle to the buffer is dropped).
    pub fn finish(self, pool: &mut ReadPool) -> (BytesMut, usize) {
        let ReadTarget {
            mr,
            mut buf,
            base,
            cap,
            head,
            len,
            pooled,
        } = self;
        // SAFETY: capacity >= head + len (checked when the target was made); [0, head) was
        // zeroed when the allocation was made and only written since, and [head, head+len) was
        // written by the READ whose successful completion the caller saw; so every byte up to
        // the new length is initialised.
        unsafe { buf.set_len(head + len) };
        // An empty handle at the end of the allocation: unique again (try_reclaim succeeds)
        // once every message sliced from `buf` is dropped.
        let keeper = buf.split_off(buf.capacity());
        if pooled {
            pool.put(PooledBuffer {
                mr,
                keeper,
                base,
                cap,
            });
        } else {
            // Deregistered here; the memory lives on in `buf` and what is sliced from it.
            drop(mr);
            drop(keeper);
        }
        (buf, head)
    }
}

/// A registered allocation waiting in a [`ReadPool`].
struct PooledBuffer {
    /// Declared before `keeper`: deregistered before the last handle may free the memory.
    mr: Mr,
    keeper: BytesMut,
    base: usize,
    cap: usize,
}

/// Registered READ destinations of one link, reused so a stream of large messages does not
/// register, fault in and deregister fresh memory for every message. An allocation is reused
/// only when nothing else references it any more (the messages made from it were dropped);
/// the device writes only into targets lent out by [`ReadPool::target`].
pub struct ReadPool {
    device: Arc<Device>,
    free: VecDeque<PooledBuffer>,
    /// At most this many allocations kept registered.
    max_buffers: usize,
    /// Allocations above this size are registered per READ and not kept.
    max_pooled: usize,
    /// Allocations made and registered (not reused), for counters.
    pub registrations: u64,
}

impl ReadPool {
    pub fn new(device: &Arc<Device>, max_buffers: usize, max_pooled: usize) -> ReadPool {
        ReadPool {
            device: Arc::clone(device),
            free: VecDeque::new(),
            max_buffers,
            max_pooled,
            registrations: 0,
        }
    }

    /// A destination for a READ of `len` bytes, with `head` bytes of room before it and at
    /// least `tail` after it.
    pub fn target(
        &mut self,
        head: usize,
        len: usize,
        tail: usize,
    ) -> Result<ReadTarget, RdmaError> {
        let need = head
            .checked_add(len)
            .and_then(|n| n.checked_add(tail))
            .ok_or_else(|| {
                RdmaError::verbs("ibv_reg_mr", std::io::Error::other("size overflow"))
            })?;
        let mut found = None;
        for (i, p) in self.free.iter_mut().enumerate() {
            // `try_reclaim` is true only for the allocation's sole handle, which then views
            // the allocation from its start.
            if p.cap >= need && p.keeper.try_reclaim(p.cap) && p.keeper.as_ptr() as usize == p.base
            {
                found = Some(i);
                break;
            }
        }
        if let Some(i) = found {
            let p = self.free.remove(i).expect("index from the loop");
            return Ok(ReadTarget {
                mr: p.mr,
                buf: p.keeper,
                base: p.base,
                cap: p.cap,
                head,
                len,
                pooled: true,
            });
        }
        let mut buf = BytesMut::with_capacity(need);
        buf.resize(head, 0);
        let base = buf.as_ptr() as usize;
        let cap = buf.capacity();
        // SAFETY: the allocation [base, base+cap) belongs to `buf`, which moves into the target
        // together with the MR (declared first, so deregistered first); Rust code does not
        // touch [head, head+len) until `finish`, after the READ completed.
        let mr = unsafe {
            Mr::register(
                &self.device,
                base as *const u8,
                cap,
                ibv_access_flags::IBV_ACCESS_LOCAL_WRITE,
            )?
        };
        self.registrations += 1;
        Ok(ReadTarget {
            mr,
            buf,
            base,
            cap,
            head,
            len,
            pooled: cap <= self.max_pooled,
        })
    }

    fn put(&mut self, p: PooledBuffer) {
        if self.free.len() >= self.max_buffers {
            // The oldest goes: deregistered now (its memory lives on while referenced).
            self.free.pop_front();
        }
        self.free.push_back(p);
    }
}

/// Application memory registered once for many zero-copy sends: fill it, [`freeze`] it into
/// `Bytes`, and put (slices of) those into messages; payloads at or above the transport's read
/// threshold that lie inside it are read by the peer straight from it, without a registration
/// per send. The registration lasts while the buffer or any `Bytes` made from it lives.
///
/// [`freeze`]: RegisteredBuffer::freeze
pub struct RegisteredBuffer {
    region: Box<Region>,
}

/// The registered allocation behind a [`RegisteredBuffer`] and its frozen `Bytes`.
struct Region {
    /// Declared before `buf`: deregistered (and forgotten by the registry) first.
    mr: Mr,
    buf: Box<[u8]>,
}

impl Drop for Region {
    fn drop(&mut self) {
        let start = self.buf.as_ptr() as usize;
        REGISTRY.lock().retain(|r| r.start != start);
    }
}

impl AsRef<[u8]> for Region {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl RegisteredBuffer {
    /// `len` zeroed bytes registered on `device` for remote read.
    pub fn new(device: &Arc<Device>, len: usize) -> Result<RegisteredBuffer, RdmaError> {
        let buf = vec![0u8; len.max(1)].into_boxed_slice();
        // SAFETY: the boxed slice is owned by the same Region as the MR and never reallocated;
        // the MR (declared first) is deregistered before it is freed. Remote read only: the
        // device never writes it, so Rust may write it through `as_mut` meanwhile.
        let mr = unsafe {
            Mr::register(
                device,
                buf.as_ptr(),
                buf.len(),
                ibv_access_flags::IBV_ACCESS_REMOTE_READ,
            )?
        };
        let region = Box::new(Region { mr, buf });
        REGISTRY.lock().push(RegistryEntry {
            start: region.buf.as_ptr() as usize,
            len: region.buf.len(),
            device: Arc::as_ptr(&region.mr.device) as usize,
            rkey: region.mr.rkey(),
        });
        Ok(RegisteredBuffer { region })
    }

    pub fn len(&self) -> usize {
        self.region.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.region.buf.is_empty()
    }

    /// The name of the device it is registered on.
    pub fn device_name(&self) -> &str {
        self.region.mr.device.name()
    }

    /// Immutable from here on; the `Bytes` (and its slices) keep the registration.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(*self.region)
    }
}

impl std::ops::Deref for RegisteredBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.region.buf
    }
}

impl std::ops::DerefMut for RegisteredBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.region.buf
    }
}

/// Live [`RegisteredBuffer`] regions: address range, device and rkey.
struct RegistryEntry {
    start: usize,
    len: usize,
    device: usize,
    rkey: u32,
}

static REGISTRY: Mutex<Vec<RegistryEntry>> = Mutex::new(Vec::new());

/// The rkey covering all of `bytes` if it lies in a live registered buffer of `device`. The
/// caller holds `bytes`, which holds the region (and so its registration) alive.
fn registered_rkey(device: &Arc<Device>, bytes: &Bytes) -> Option<u32> {
    let start = bytes.as_ptr() as usize;
    let end = start + bytes.len();
    let dev = Arc::as_ptr(device) as usize;
    REGISTRY
        .lock()
        .iter()
        .find(|r| r.device == dev && r.start <= start && end <= r.start + r.len)
        .map(|r| r.rkey)
}

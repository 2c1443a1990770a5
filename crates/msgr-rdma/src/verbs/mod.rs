//! The only `unsafe` code of the crate: a small safe wrapper over `rdma-sys` (libibverbs +
//! librdmacm).
//!
//! Ownership, and so the order things are freed in, follows the C library's rules:
//! - [`EventChannel`] (rdma_cm) outlives every [`CmId`] created on it (each id holds an `Arc`).
//! - A [`CmId`] owns its queue pair ([`Qp`]): `rdma_destroy_qp` runs before `rdma_destroy_id`,
//!   and the QP owns the registered buffers it posts from, so memory the device may write into is
//!   deregistered only after the QP that could write it is gone.
//! - [`Device`] (the ibv context librdmacm opened, our protection domain, and an anchor id that
//!   keeps librdmacm's reference on the device) outlives every completion channel, completion
//!   queue, QP and memory region made from it (each holds an `Arc<Device>`).
//! - [`Cq`] outlives the QPs that use it, [`CompChannel`] outlives its CQs (`Arc` again).
//!
//! Every raw handle is wrapped the moment the C call returns it, so error paths free it through
//! `Drop` exactly once. Nothing here blocks: the rdma_cm and completion channel fds are set
//! non-blocking, to be polled with mio.
//!
//! Modules, each using only those before it (no import circle):
//! - `sys`: shared helpers (errno, non-blocking fds, socket addresses, C strings, memlock).
//! - `device`: device discovery and port state.
//! - `ib`: [`Device`], [`CompChannel`], [`Cq`]. The anchor id a `Device` holds is kept
//!   type-erased, so `ib` knows nothing of rdma_cm.
//! - `mr`: memory regions on a device.
//! - `qp`: registered buffer pools and the [`Qp`], created on a raw rdma_cm id handle.
//! - `cm`: [`EventChannel`], [`CmId`] (which owns its `Qp`) and what needs an id: finding the
//!   device that serves an id ([`Device::for_id`], [`Device::serves`]) and [`Qp::create`].

mod cm;
mod device;
mod ib;
mod mr;
mod qp;
mod sys;

pub use cm::{CmEvent, CmEventKind, CmId, ConnParam, EventChannel, QpHandle};
pub use device::{list_devices, port_state};
pub use ib::{CompChannel, Cq, Device, WcKind, WorkCompletion};
pub use mr::{ExposedRegion, ReadPool, ReadTarget, RegisteredBuffer};
pub use qp::{BufferPool, Qp, QpCaps, Retired};
pub use sys::memlock_soft_limit;

//! Device discovery and port state.

use rdma_sys::*;

use super::sys::{c_str, last_error};
use crate::error::RdmaError;

/// Names of the RDMA devices this process can open, or [`RdmaError::NoDevice`].
///
/// A kernel without RDMA support makes `ibv_get_device_list` return NULL with ENOSYS; a kernel
/// with support but no device returns an empty list. Both are "no device".
pub fn list_devices() -> Result<Vec<String>, RdmaError> {
    let mut n: libc::c_int = 0;
    // SAFETY: ibv_get_device_list writes the count into `n` and returns a NULL-terminated array
    // that we free below with ibv_free_device_list, exactly once.
    let list = unsafe { ibv_get_device_list(&mut n) };
    if list.is_null() {
        let err = last_error();
        let detail = if err.raw_os_error() == Some(libc::ENOSYS) {
            format!("ibv_get_device_list: {err}: this kernel has no RDMA support (no /sys/class/infiniband)")
        } else {
            format!("ibv_get_device_list: {err}")
        };
        return Err(RdmaError::NoDevice { detail });
    }
    let mut names = Vec::with_capacity(n.max(0) as usize);
    for i in 0..n.max(0) as usize {
        // SAFETY: the array has `n` valid entries followed by NULL.
        let dev = unsafe { *list.add(i) };
        if dev.is_null() {
            break;
        }
        // SAFETY: `dev` is a device of the live list; the name is copied before the list is freed.
        names.push(c_str(unsafe { ibv_get_device_name(dev) }));
    }
    // SAFETY: `list` came from ibv_get_device_list and is freed once; no entry is used afterwards.
    unsafe { ibv_free_device_list(list) };
    if names.is_empty() {
        return Err(RdmaError::NoDevice {
            detail: "ibv_get_device_list returned no devices".into(),
        });
    }
    Ok(names)
}

/// `(is_active, state name)` of `port` on an open context.
///
/// # Safety
/// `ctx` must be a live `ibv_context`.
pub(super) unsafe fn query_port(
    ctx: *mut ibv_context,
    port: u8,
) -> Result<(bool, String), RdmaError> {
    let mut attr: ibv_port_attr = std::mem::zeroed();
    let rc = ___ibv_query_port(ctx, port, &mut attr);
    if rc != 0 {
        let err = if rc > 0 {
            std::io::Error::from_raw_os_error(rc)
        } else {
            last_error()
        };
        return Err(RdmaError::verbs("ibv_query_port", err));
    }
    Ok((
        attr.state == ibv_port_state::IBV_PORT_ACTIVE,
        c_str(ibv_port_state_str(attr.state)),
    ))
}

/// Port state by device name (opens the device briefly): `(is_active, state name)`.
pub fn port_state(device: &str, port: u8) -> Result<(bool, String), RdmaError> {
    let mut n: libc::c_int = 0;
    // SAFETY: as in list_devices; the list is freed on every path below.
    let list = unsafe { ibv_get_device_list(&mut n) };
    if list.is_null() {
        return Err(RdmaError::NoDevice {
            detail: format!("ibv_get_device_list: {}", last_error()),
        });
    }
    let mut result = Err(RdmaError::NoDevice {
        detail: format!("no device named {device}"),
    });
    for i in 0..n.max(0) as usize {
        // SAFETY: entry i < n of the live list.
        let dev = unsafe { *list.add(i) };
        // SAFETY: live device of the list.
        if dev.is_null() || c_str(unsafe { ibv_get_device_name(dev) }) != device {
            continue;
        }
        // SAFETY: opening a live device; the context is closed below exactly once.
        let ctx = unsafe { ibv_open_device(dev) };
        if ctx.is_null() {
            result = Err(RdmaError::verbs("ibv_open_device", last_error()));
            break;
        }
        // SAFETY: ctx is live until ibv_close_device below.
        result = unsafe { query_port(ctx, port) };
        // SAFETY: ctx came from ibv_open_device, closed once, not used afterwards.
        unsafe { ibv_close_device(ctx) };
        break;
    }
    // SAFETY: freed once; no entry used afterwards.
    unsafe { ibv_free_device_list(list) };
    result
}

//! Before a link exists: the device (and protection domain) an rdma_cm id runs on, checked
//! against the options, and [`prepare`], which builds a QP with its pools and posts every
//! receive before connect / accept.

use std::sync::Arc;

use crate::error::RdmaError;
use crate::options::{RdmaOptions, READS_IN_FLIGHT};
use crate::verbs::{BufferPool, CmId, CompChannel, Cq, Device, Qp, QpCaps};

use super::hello::fmt_gid;

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

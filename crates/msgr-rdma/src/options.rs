//! RDMA-specific settings (the facade maps the `[rdma]` TOML table onto this struct).

use std::time::Duration;

use crate::error::RdmaError;

/// Settings of the RDMA transport. See each field; [`RdmaOptions::validate`] checks ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdmaOptions {
    /// RDMA device to use (e.g. "rxe0", "mlx5_0"). None: whichever device serves the address.
    /// When set, addresses served by another device are refused, and a wildcard bind address
    /// is replaced by the first IP address of this device's netdev.
    pub device: Option<String>,
    /// Port of the device (1-based), checked to be ACTIVE.
    pub port: u8,
    /// GID table index. rdma_cm always uses the GID that matches the address; Some(i) is
    /// checked against it when a device is first used, and a mismatch is logged (warn) with
    /// both GIDs, so a wrong setting is visible rather than silently ignored.
    pub gid_index: Option<u8>,
    /// Size of each registered send / receive buffer: the largest chunk one SEND carries.
    pub buffer_size: usize,
    /// Registered send buffers per connection (sends in flight at once).
    pub send_buffers: usize,
    /// Registered receive buffers per connection: the credits the peer gets.
    pub recv_buffers: usize,
    /// Busy-poll the completion queues for this long after activity before sleeping on the
    /// completion channel fd (0 = never busy-poll). Trades CPU for latency.
    pub poll_us: u64,
    /// Work completions taken from a CQ per poll call.
    pub cq_batch: usize,
    /// Address / route resolution timeout.
    pub resolve_timeout: Duration,
    /// Transport retries before a send fails (0-7).
    pub retry_count: u8,
    /// Receiver-not-ready retries (0-6; 7 = forever). Credits make RNR impossible in normal
    /// operation, so a low value turns a flow-control bug into a visible error.
    pub rnr_retry: u8,
    /// Backlog of the rdma_cm listener.
    pub backlog: i32,
    /// Stream chunks (in practice a message's data section) of at least this many bytes are
    /// not copied through send buffers: the sender registers them (or finds them inside a
    /// [`crate::RegisteredBuffer`]) and the receiver fetches them with one RDMA READ
    /// straight into the buffer the message is decoded from. 0 = always copy.
    pub read_threshold: usize,
    /// Largest RDMA READ a peer may ask for (a longer request fails the link). The messenger
    /// sets it from its decode limits (largest data section).
    pub max_read: usize,
    /// Payload bytes a link keeps exposed for the peer's READs (announced, not reported done)
    /// before it announces another: bounds what a slow or misbehaving receiver can keep
    /// registered and alive on the sender. One payload may always be exposed, whatever its size.
    pub max_exposed: usize,
}

/// RDMA READs a link keeps posted at once (a device runs as many concurrently as rdma_cm
/// negotiated, its maximum; the rest wait in the send queue).
pub const READS_IN_FLIGHT: usize = 16;

impl Default for RdmaOptions {
    fn default() -> Self {
        RdmaOptions {
            device: None,
            port: 1,
            gid_index: None,
            buffer_size: 64 * 1024,
            send_buffers: 16,
            recv_buffers: 16,
            poll_us: 0,
            cq_batch: 32,
            resolve_timeout: Duration::from_secs(2),
            retry_count: 7,
            rnr_retry: 7,
            backlog: 128,
            read_threshold: 64 * 1024,
            max_read: 64 << 20,
            max_exposed: 64 << 20,
        }
    }
}

impl RdmaOptions {
    /// Check ranges; the error names the key.
    pub fn validate(&self) -> Result<(), RdmaError> {
        let bad = |key, detail: String| Err(RdmaError::BadOption { key, detail });
        if !(64..=(1 << 30)).contains(&self.buffer_size) {
            return bad(
                "buffer_size",
                format!("{} is outside 64 ..= 1073741824 bytes", self.buffer_size),
            );
        }
        if !(2..=65536).contains(&self.send_buffers) {
            return bad(
                "send_buffers",
                format!("{} is outside 2 ..= 65536", self.send_buffers),
            );
        }
        if !(4..=65536).contains(&self.recv_buffers) {
            return bad(
                "recv_buffers",
                format!(
                    "{} is outside 4 ..= 65536 (credit-based flow control needs at least 4)",
                    self.recv_buffers
                ),
            );
        }
        if self.port == 0 {
            return bad("port", "device ports are numbered from 1".into());
        }
        if self.cq_batch == 0 {
            return bad("cq_batch", "must be at least 1".into());
        }
        if self.retry_count > 7 {
            return bad("retry_count", format!("{} is above 7", self.retry_count));
        }
        if self.rnr_retry > 7 {
            return bad(
                "rnr_retry",
                format!("{} is above 7 (7 = retry forever)", self.rnr_retry),
            );
        }
        Ok(())
    }

    /// Bytes each connection registers (send + receive pools).
    pub fn registered_bytes_per_connection(&self) -> u64 {
        (self.buffer_size as u64) * (self.send_buffers + self.recv_buffers) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_errors_name_the_key() {
        RdmaOptions::default().validate().unwrap();
        let o = RdmaOptions {
            recv_buffers: 2,
            ..Default::default()
        };
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("`recv_buffers`"), "{e}");
        let o = RdmaOptions {
            buffer_size: 8,
            ..Default::default()
        };
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`buffer_size`"));
        let o = RdmaOptions {
            rnr_retry: 9,
            ..Default::default()
        };
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`rnr_retry`"));
    }
}

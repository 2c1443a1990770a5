//! Errors of the RDMA transport. Each says what went wrong and what to do about it.

use std::io;
use std::net::SocketAddr;

/// What the Soft-RoCE hint says, shared by the "no device" errors.
pub const NO_DEVICE_HINT: &str = "load a driver or Soft-RoCE: rdma link add rxe0 type rxe netdev ETH, or use transport = \"tcp\"";

/// Errors of the RDMA transport: each message says what failed and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RdmaError {
    /// `ibv_get_device_list` found nothing (or the kernel has no RDMA support at all).
    #[error("no RDMA device found ({detail}); {hint}", hint = NO_DEVICE_HINT)]
    NoDevice {
        /// What libibverbs said.
        detail: String,
    },

    /// Memory registration failed and the locked-memory limit is the likely reason.
    #[error(
        "cannot register {needed} bytes of memory with the RDMA device ({source}): the locked-memory \
         limit is {limit}; raise it to at least {needed} bytes (`ulimit -l unlimited`, or \
         LimitMEMLOCK=infinity for a systemd service) or lower buffer_size / send_buffers / recv_buffers"
    )]
    Memlock {
        /// Bytes the registration needed locked.
        needed: u64,
        /// `ulimit -l` as text ("65536 bytes", "unlimited").
        limit: String,
        /// The error `ibv_reg_mr` returned.
        #[source]
        source: io::Error,
    },

    /// The address to bind / listen on is not served by any RDMA device.
    #[error(
        "address {addr} is not on an RDMA device ({detail}); bind to the IP address of the netdev \
         under the RDMA device (see `rdma link show`), or use transport = \"tcp\""
    )]
    AddressNotRdma {
        /// The address asked for.
        addr: SocketAddr,
        /// What rdma_cm said.
        detail: String,
    },

    /// The configured device is not the one that serves the address.
    #[error(
        "address {addr} is served by RDMA device {actual}, but config asks for device {wanted}; \
         fix `device` or the address"
    )]
    WrongDevice {
        /// The address asked for.
        addr: SocketAddr,
        /// The device that serves it.
        actual: String,
        /// The device the configuration names (`device`).
        wanted: String,
    },

    /// A port of the device is not ACTIVE.
    #[error(
        "port {port} of RDMA device {device} is down (state {state}); check the link with \
         `ibv_devinfo -d {device}` / `rdma link show` and bring the netdev up"
    )]
    PortDown {
        /// The device's name.
        device: String,
        /// The port number (1-based).
        port: u8,
        /// The port state libibverbs reports (DOWN, INIT, ARMED ...).
        state: String,
    },

    /// The peer's rdma_cm rejected our connect (no listener, or its accept hook refused).
    #[error("RDMA peer {peer} refused the connection ({detail}); is msgr listening there with transport = \"rdma\"?")]
    Refused {
        /// The peer dialed.
        peer: SocketAddr,
        /// The reject reason (rdma_cm status, or the peer's reason in the private data).
        detail: String,
    },

    /// Address / route resolution or connect did not complete.
    #[error("cannot reach RDMA peer {peer}: {detail}; check that the address is on an RDMA-capable network")]
    Unreachable {
        /// The peer dialed.
        peer: SocketAddr,
        /// Which step failed and why.
        detail: String,
    },

    /// The peer's connect private data is not ours (another program, or another version).
    #[error("RDMA peer {peer} is not an msgr RDMA endpoint: {detail}")]
    BadPeer {
        /// The peer's address, as text.
        peer: String,
        /// What is wrong with its private data.
        detail: String,
    },

    /// Configuration value out of range.
    #[error("invalid RDMA option `{key}`: {detail}")]
    BadOption {
        /// The [`crate::RdmaOptions`] field (and `[rdma]` TOML key) at fault.
        key: &'static str,
        /// The value and the range allowed.
        detail: String,
    },

    /// Any other verbs / rdma_cm call failure.
    #[error("{call} failed: {source}")]
    Verbs {
        /// The C function that failed (`ibv_reg_mr`, `rdma_connect` ...).
        call: &'static str,
        /// The errno it left.
        #[source]
        source: io::Error,
    },
}

impl RdmaError {
    pub(crate) fn verbs(call: &'static str, source: io::Error) -> Self {
        RdmaError::Verbs { call, source }
    }
}

/// `ulimit -l` of this process, as text for error messages, and in bytes (None = unlimited).
pub fn memlock_limit() -> (String, Option<u64>) {
    match crate::verbs::memlock_soft_limit() {
        None => ("unlimited".to_string(), None),
        Some(b) => (format!("{b} bytes (ulimit -l {})", b / 1024), Some(b)),
    }
}

/// Classify a failed memory registration: errno ENOMEM / EPERM / EAGAIN with a limit below the
/// size are reported as [`RdmaError::Memlock`].
pub(crate) fn registration_error(source: io::Error, needed: u64, limit: Option<u64>) -> RdmaError {
    let limit_text = match limit {
        None => "unlimited".to_string(),
        Some(b) => format!("{b} bytes (ulimit -l {})", b / 1024),
    };
    let memlock_like = matches!(
        source.raw_os_error(),
        Some(libc::ENOMEM) | Some(libc::EPERM) | Some(libc::EAGAIN)
    );
    if memlock_like && limit.is_some_and(|l| l < needed) {
        RdmaError::Memlock {
            needed,
            limit: limit_text,
            source,
        }
    } else {
        RdmaError::verbs("ibv_reg_mr", source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_error_names_ulimit_and_size() {
        let e = registration_error(
            io::Error::from_raw_os_error(libc::ENOMEM),
            1 << 20,
            Some(65536),
        );
        let text = e.to_string();
        assert!(matches!(e, RdmaError::Memlock { .. }), "{text}");
        assert!(text.contains("ulimit -l"), "{text}");
        assert!(text.contains("1048576"), "{text}");
        assert!(text.contains("65536 bytes"), "{text}");
    }

    #[test]
    fn registration_error_with_enough_memlock_is_not_blamed_on_ulimit() {
        let e = registration_error(io::Error::from_raw_os_error(libc::ENOMEM), 4096, None);
        assert!(matches!(e, RdmaError::Verbs { .. }));
        let e = registration_error(
            io::Error::from_raw_os_error(libc::EINVAL),
            1 << 30,
            Some(10),
        );
        assert!(matches!(e, RdmaError::Verbs { .. }));
    }
}

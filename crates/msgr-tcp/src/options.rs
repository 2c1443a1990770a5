//! [`TcpOptions`]: socket options of every TCP link.

/// Socket options of every TCP link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    /// TCP_NODELAY on every socket (default true).
    pub nodelay: bool,
    /// SO_SNDBUF, in bytes (None: the kernel's default, auto-tuned).
    pub send_buffer: Option<usize>,
    /// SO_RCVBUF, in bytes (None: the kernel's default, auto-tuned).
    pub recv_buffer: Option<usize>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            nodelay: true,
            send_buffer: None,
            recv_buffer: None,
        }
    }
}

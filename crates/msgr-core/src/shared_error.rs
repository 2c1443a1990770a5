//! [`SharedError`]: a transport's own error inside a cloneable session error.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// A transport's error kept inside [`SessionError::Transport`](crate::session::SessionError):
/// cheap to clone, and [`SharedError::downcast_ref`] reaches the transport's own type (e.g.
/// `msgr_rdma::RdmaError::Memlock`).
#[derive(Clone)]
pub struct SharedError(Arc<dyn Error + Send + Sync + 'static>);

impl SharedError {
    /// Keep `error`.
    pub fn new(error: impl Error + Send + Sync + 'static) -> Self {
        SharedError(Arc::new(error))
    }

    /// The transport's error as its own type, if it is a `T`.
    pub fn downcast_ref<T: Error + 'static>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for SharedError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// Session errors compare by what they say (the same error, or one with the same message).
impl PartialEq for SharedError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for SharedError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("over the locked-memory limit")]
    struct Memlock;

    #[test]
    fn keeps_the_type_and_the_message() {
        let e = SharedError::new(Memlock);
        assert!(e.downcast_ref::<Memlock>().is_some());
        assert!(e.downcast_ref::<std::io::Error>().is_none());
        assert_eq!(e.to_string(), "over the locked-memory limit");
        assert_eq!(e.clone(), e);
        assert_ne!(e, SharedError::new(std::io::Error::other("else")));
    }
}

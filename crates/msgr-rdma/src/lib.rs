//! msgr1 over RDMA.

//! `CEPH_FEATURE_*` bits. TODO(wire helper): complete list.

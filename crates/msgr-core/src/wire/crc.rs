//! Ceph's crc32c: reflected CRC-32C (Castagnoli) with the given seed and no pre- or post-inversion.
//! `ceph_crc32c(0, b"")` is 0. The `crc32c` crate computes the standard (inverted) form, so we
//! invert around it: `!crc32c_append(!seed, data)`.

/// `ceph_crc32c(seed, data)`.
pub fn ceph_crc32c(seed: u32, data: &[u8]) -> u32 {
    // Most messages have an empty middle and data, or no data crc: skip the call's setup.
    if data.is_empty() {
        return seed;
    }
    !crc32c::crc32c_append(!seed, data)
}

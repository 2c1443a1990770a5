//! A bounds-checked cursor for little-endian fields: every read checks the length first, so a
//! decoder built on it cannot panic or over-read on any input.

/// A field ran past the end of the bytes that hold it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "truncated {what}: need {need} bytes, have {have} (the peer sent a short or corrupt structure)"
)]
pub struct ShortRead {
    /// The structure being decoded.
    pub what: &'static str,
    /// Bytes needed up to the end of the field.
    pub need: usize,
    /// Bytes available.
    pub have: usize,
}

/// Cursor over one structure's bytes.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `buf`, naming it `what` in errors.
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    /// Bytes not read yet.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[cold]
    fn short(&self, n: usize) -> ShortRead {
        ShortRead {
            what: self.what,
            need: self.pos.saturating_add(n),
            have: self.buf.len(),
        }
    }

    /// The next `n` bytes.
    // Per field of every frame: inlined across codegen units.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ShortRead> {
        if self.remaining() < n {
            return Err(self.short(n));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    #[inline]
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], ShortRead> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, ShortRead> {
        Ok(self.take(1)?[0])
    }

    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, ShortRead> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, ShortRead> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    #[inline]
    pub(crate) fn i32(&mut self) -> Result<i32, ShortRead> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    #[inline]
    pub(crate) fn u64(&mut self) -> Result<u64, ShortRead> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    #[inline]
    pub(crate) fn i64(&mut self) -> Result<i64, ShortRead> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A Ceph `bufferlist` or `string`: le32 length, then that many bytes.
    pub(crate) fn blob(&mut self) -> Result<&'a [u8], ShortRead> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A Ceph `vector<uint32_t>`: le32 count, then the values. The count is checked against the
    /// bytes left before anything is allocated.
    pub(crate) fn u32_vec(&mut self) -> Result<Vec<u32>, ShortRead> {
        let n = self.u32()? as usize;
        let bytes = self.take(n.saturating_mul(4))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Appends a Ceph `bufferlist` / `string`: le32 length and the bytes.
pub(crate) fn put_blob(out: &mut bytes::BytesMut, b: &[u8]) {
    use bytes::BufMut;
    out.put_u32_le(b.len() as u32);
    out.put_slice(b);
}

/// Appends a Ceph `vector<uint32_t>`.
pub(crate) fn put_u32_vec(out: &mut bytes::BytesMut, v: &[u32]) {
    use bytes::BufMut;
    out.put_u32_le(v.len() as u32);
    for x in v {
        out.put_u32_le(*x);
    }
}

//! RecordIO framing of Mesos streaming responses: `<decimal length>\n<record>`.

use bytes::{Buf, BytesMut};

/// Default bound on a single record a reader accepts (Mesos clients and
/// Corral use the same default).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Frames one record.
pub fn encode(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + 12);
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(record);
    out
}

/// Why a RecordIO stream is malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordIoError {
    /// The length prefix is not a decimal number.
    #[error("recordio: length prefix {0:?} is not a decimal number")]
    BadLength(String),
    /// The length prefix is zero, which Mesos never sends.
    #[error("recordio: zero-length record")]
    ZeroLength,
    /// The record is longer than the reader accepts.
    #[error("recordio: record of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The stream ended inside a record.
    #[error("recordio: stream ended inside a record ({0} bytes pending)")]
    Truncated(usize),
}

/// Incremental decoder: feed it bytes as they arrive, take records out.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max: usize,
    pending: Option<usize>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RECORD_BYTES)
    }
}

impl Decoder {
    /// A decoder accepting records of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max,
            pending: None,
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Returns the next complete record, `Ok(None)` when more bytes are needed.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>, RecordIoError> {
        if self.pending.is_none() {
            // The decimal prefix of a bounded length is at most 20 digits.
            let Some(nl) = self.buf.iter().take(21).position(|b| *b == b'\n') else {
                if self.buf.len() > 20 {
                    return Err(RecordIoError::BadLength(
                        String::from_utf8_lossy(&self.buf[..20]).into_owned(),
                    ));
                }
                if !self.buf.iter().all(u8::is_ascii_digit) {
                    return Err(RecordIoError::BadLength(
                        String::from_utf8_lossy(&self.buf).into_owned(),
                    ));
                }
                return Ok(None);
            };
            let prefix = &self.buf[..nl];
            let text = std::str::from_utf8(prefix)
                .map_err(|_| RecordIoError::BadLength(String::from_utf8_lossy(prefix).into()))?;
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RecordIoError::BadLength(text.to_string()));
            }
            let len: usize = text
                .parse()
                .map_err(|_| RecordIoError::BadLength(text.to_string()))?;
            if len == 0 {
                return Err(RecordIoError::ZeroLength);
            }
            if len > self.max {
                return Err(RecordIoError::TooLarge { len, max: self.max });
            }
            self.buf.advance(nl + 1);
            self.pending = Some(len);
        }
        let len = self.pending.unwrap_or_default();
        if self.buf.len() < len {
            return Ok(None);
        }
        self.pending = None;
        Ok(Some(self.buf.split_to(len).to_vec()))
    }

    /// Call at end of stream: errors if a record was cut off.
    pub fn finish(&self) -> Result<(), RecordIoError> {
        if self.buf.is_empty() && self.pending.is_none() {
            Ok(())
        } else {
            Err(RecordIoError::Truncated(self.buf.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_split_records() {
        let mut wire = encode(b"{\"a\":1}");
        wire.extend(encode(b"hello"));
        let mut d = Decoder::default();
        let mut got = vec![];
        for chunk in wire.chunks(3) {
            d.feed(chunk);
            while let Some(r) = d.next_record().unwrap() {
                got.push(r);
            }
        }
        assert_eq!(got, vec![b"{\"a\":1}".to_vec(), b"hello".to_vec()]);
        d.finish().unwrap();
    }

    #[test]
    fn rejects_oversized() {
        let mut d = Decoder::new(10);
        d.feed(b"11\nhello world");
        assert_eq!(
            d.next_record(),
            Err(RecordIoError::TooLarge { len: 11, max: 10 })
        );
    }

    #[test]
    fn rejects_non_numeric() {
        let mut d = Decoder::default();
        d.feed(b"1x\nab");
        assert!(matches!(d.next_record(), Err(RecordIoError::BadLength(_))));
        let mut d = Decoder::default();
        d.feed(b"abc");
        assert!(matches!(d.next_record(), Err(RecordIoError::BadLength(_))));
        let mut d = Decoder::default();
        d.feed(b"123456789012345678901234");
        assert!(matches!(d.next_record(), Err(RecordIoError::BadLength(_))));
        let mut d = Decoder::default();
        d.feed(b"0\n");
        assert_eq!(d.next_record(), Err(RecordIoError::ZeroLength));
    }

    #[test]
    fn rejects_truncated() {
        let mut d = Decoder::default();
        d.feed(b"10\nabc");
        assert_eq!(d.next_record(), Ok(None));
        assert_eq!(d.finish(), Err(RecordIoError::Truncated(3)));
    }
}

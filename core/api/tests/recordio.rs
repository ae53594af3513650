//! RecordIO framing: any record sequence, split anywhere, decodes back; bad
//! frames are rejected.

use corral_api::recordio::{self, Decoder, RecordIoError, DEFAULT_MAX_RECORD_BYTES};
use proptest::prelude::*;

/// Feeds `wire` in the given chunks, draining records after each chunk.
fn decode_chunks(wire: &[u8], cuts: &[usize], max: usize) -> Result<Vec<Vec<u8>>, RecordIoError> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    cuts.push(0);
    cuts.push(wire.len());
    cuts.sort_unstable();
    let mut d = Decoder::new(max);
    let mut out = Vec::new();
    for w in cuts.windows(2) {
        d.feed(&wire[w[0]..w[1]]);
        while let Some(r) = d.next_record()? {
            out.push(r);
        }
    }
    d.finish()?;
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn records_split_anywhere_decode_back(
        records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let wire: Vec<u8> = records.iter().flat_map(|r| recordio::encode(r)).collect();
        prop_assert_eq!(decode_chunks(&wire, &cuts, DEFAULT_MAX_RECORD_BYTES)?, records.clone());
        // Byte by byte too.
        let all: Vec<usize> = (0..wire.len()).collect();
        prop_assert_eq!(decode_chunks(&wire, &all, DEFAULT_MAX_RECORD_BYTES)?, records);
    }

    #[test]
    fn truncated_streams_are_rejected(
        records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..100), 1..6),
        cut in any::<usize>(),
    ) {
        let wire: Vec<u8> = records.iter().flat_map(|r| recordio::encode(r)).collect();
        // Cut strictly inside the last frame.
        let last = recordio::encode(records.last().unwrap()).len();
        let at = wire.len() - 1 - cut % (last - 1);
        let mut d = Decoder::default();
        d.feed(&wire[..at]);
        let mut n = 0;
        while let Some(_r) = d.next_record().unwrap() {
            n += 1;
        }
        prop_assert_eq!(n, records.len() - 1);
        prop_assert!(matches!(d.finish(), Err(RecordIoError::Truncated(_))));
    }

    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), max in 1usize..64) {
        let mut d = Decoder::new(max);
        d.feed(&bytes);
        for _ in 0..bytes.len() + 1 {
            match d.next_record() {
                Ok(Some(r)) => prop_assert!(!r.is_empty() && r.len() <= max),
                Ok(None) | Err(_) => break,
            }
        }
    }
}

#[test]
fn encode_is_decimal_length_newline_record() {
    assert_eq!(
        recordio::encode(b"{\"type\":\"HEARTBEAT\"}"),
        b"20\n{\"type\":\"HEARTBEAT\"}"
    );
    let big = vec![b'x'; 1234];
    assert!(recordio::encode(&big).starts_with(b"1234\nxxx"));
    // No separator between records.
    let mut wire = recordio::encode(b"a");
    wire.extend(recordio::encode(b"bc"));
    assert_eq!(wire, b"1\na2\nbc");
}

#[test]
fn oversized_records_are_rejected_before_buffering() {
    let mut d = Decoder::new(1024);
    d.feed(b"1025\n");
    assert_eq!(
        d.next_record(),
        Err(RecordIoError::TooLarge {
            len: 1025,
            max: 1024
        })
    );
    // At the limit is fine.
    let mut d = Decoder::new(4);
    d.feed(b"4\nabcd");
    assert_eq!(d.next_record(), Ok(Some(b"abcd".to_vec())));
    // A length that does not even fit in usize.
    let mut d = Decoder::default();
    d.feed(b"99999999999999999999\n");
    assert!(d.next_record().is_err());
    // The default bound applies.
    let mut d = Decoder::default();
    d.feed(format!("{}\n", DEFAULT_MAX_RECORD_BYTES + 1).as_bytes());
    assert!(matches!(
        d.next_record(),
        Err(RecordIoError::TooLarge { .. })
    ));
}

#[test]
fn non_numeric_lengths_are_rejected() {
    for bad in [
        &b"abc\n"[..],
        b"12a\nxx",
        b"-1\nx",
        b"+1\nx",
        b" 1\nx",
        b"1 \nx",
        b"\nx",
        b"0x10\n",
        b"\xff\n",
    ] {
        let mut d = Decoder::default();
        d.feed(bad);
        assert!(
            matches!(d.next_record(), Err(RecordIoError::BadLength(_))),
            "{bad:?}"
        );
    }
    // Detected before the newline arrives.
    let mut d = Decoder::default();
    d.feed(b"12x");
    assert!(matches!(d.next_record(), Err(RecordIoError::BadLength(_))));
    // A digit run longer than any bounded length, with no newline.
    let mut d = Decoder::default();
    d.feed(&[b'1'; 32]);
    assert!(matches!(d.next_record(), Err(RecordIoError::BadLength(_))));
    // Zero-length records are never sent.
    let mut d = Decoder::default();
    d.feed(b"0\n");
    assert_eq!(d.next_record(), Err(RecordIoError::ZeroLength));
}

#[test]
fn a_record_after_a_bad_frame_is_not_silently_resynced() {
    // The decoder keeps reporting the error rather than skipping ahead.
    let mut d = Decoder::default();
    d.feed(b"x\n3\nabc");
    assert!(d.next_record().is_err());
    assert!(d.next_record().is_err());
}

#[test]
fn partial_length_prefix_waits_for_more() {
    let mut d = Decoder::default();
    d.feed(b"1");
    assert_eq!(d.next_record(), Ok(None));
    d.feed(b"2");
    assert_eq!(d.next_record(), Ok(None));
    d.feed(b"\nhello");
    assert_eq!(d.next_record(), Ok(None));
    d.feed(b" world!");
    assert_eq!(d.next_record(), Ok(Some(b"hello world!".to_vec())));
    assert_eq!(d.next_record(), Ok(None));
    assert_eq!(d.finish(), Ok(()));
    // A stream that ends mid-prefix is truncated.
    d.feed(b"4");
    assert_eq!(d.next_record(), Ok(None));
    assert_eq!(d.finish(), Err(RecordIoError::Truncated(1)));
}

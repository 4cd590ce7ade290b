//! A table's content fingerprint: the item count and an order-independent hash of every item's
//! canonical encoding. Two copies of a table agree however they were read (any scan order, any
//! number of segments, an export read back, a restored table), and differ when any item
//! differs, is missing or is extra.
//!
//! The canonical encoding is DynamoDB JSON with map keys sorted (by their UTF-8 bytes), set
//! members sorted, and numbers normalised (`1.50`, `+1.5` and `15E-1` are all `1.5E0`), so that
//! values DynamoDB treats as equal hash equally. Each item's encoding is hashed with BLAKE3; the
//! 256-bit hashes are added lane by lane (four 64-bit lanes, wrapping), which is commutative and
//! associative: segments combine in any order. Pure: no I/O.

use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::ddbjson::{write_b64_bare, write_str, FormatError, Item};

/// Normalises a DynamoDB number: `[-]d[.ddd]E<exp>` with no leading or trailing zeros in the
/// digits, `0` for zero. `None` when the text is not a number.
pub fn normalize_number(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len() + 8);
    write_normalized(&mut out, text).then(|| String::from_utf8(out).expect("ASCII"))
}

/// Appends the normal form of a number (see [`normalize_number`]) without allocating; `false`
/// (and nothing appended) when the text is not a number.
fn write_normalized(out: &mut Vec<u8>, text: &str) -> bool {
    let t = text.trim().as_bytes();
    let (negative, rest) = match t.first() {
        None => return false,
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        Some(_) => (false, t),
    };
    let (mantissa, exp) = match rest.iter().position(|b| matches!(b, b'e' | b'E')) {
        Some(i) => {
            let e = &rest[i + 1..];
            let (sign, digits) = match e.first() {
                Some(b'-') => (-1i64, &e[1..]),
                Some(b'+') => (1, &e[1..]),
                _ => (1, e),
            };
            if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
                return false;
            }
            let v = digits
                .iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
            (&rest[..i], sign * v)
        }
        None => (rest, 0),
    };
    let (int, frac) = match mantissa.iter().position(|b| *b == b'.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, &mantissa[mantissa.len()..]),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.iter().all(u8::is_ascii_digit)
        || !frac.iter().all(u8::is_ascii_digit)
    {
        return false;
    }
    // The digits of int and frac as one run; value = 0.<run> × 10^(int.len() + exp).
    // `first` and `last` are the run's first and last non-zero digits.
    let first = match int.iter().position(|&d| d != b'0') {
        Some(i) => i,
        None => match frac.iter().position(|&d| d != b'0') {
            Some(i) => int.len() + i,
            None => {
                out.push(b'0');
                return true;
            }
        },
    };
    let last = match frac.iter().rposition(|&d| d != b'0') {
        Some(i) => int.len() + i,
        None => int.iter().rposition(|&d| d != b'0').unwrap_or(first),
    };
    out.reserve(last - first + 26);
    if negative {
        out.push(b'-');
    }
    // The run from first to last, copied as at most two slices (the point skipped).
    let run = |from: usize, to: usize, out: &mut Vec<u8>| {
        if from < int.len() {
            out.extend_from_slice(&int[from..to.min(int.len())]);
        }
        if to > int.len() {
            out.extend_from_slice(&frac[from.max(int.len()) - int.len()..to - int.len()]);
        }
    };
    run(first, first + 1, out);
    if last > first {
        out.push(b'.');
        run(first + 1, last + 1, out);
    }
    out.push(b'E');
    let sci = int.len() as i64 - first as i64 + exp - 1;
    push_int(out, sci);
    true
}

/// Appends a whole number in decimal (the formatter's machinery costs more than the number).
fn push_int(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    let mut n = v.unsigned_abs();
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// The first eight bytes of a key as a big-endian integer (zero-padded): comparing these orders
/// keys as their bytes do, up to ties, which [`sort_by_key_bytes`] settles with the whole keys.
fn key_prefix(k: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = k.len().min(8);
    b[..n].copy_from_slice(&k[..n]);
    u64::from_be_bytes(b)
}

/// Sorts `(key, value)` pairs by the keys' UTF-8 bytes. Items have a few dozen short keys at
/// most, so the sort is mostly integer compares of precomputed prefixes.
fn sort_by_key_bytes<'a, T>(
    pairs: impl ExactSizeIterator<Item = (&'a str, T)>,
) -> Vec<(u64, &'a str, T)> {
    let mut v: Vec<(u64, &str, T)> = Vec::with_capacity(pairs.len());
    v.extend(pairs.map(|(k, x)| (key_prefix(k.as_bytes()), k, x)));
    v.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()))
    });
    v
}

/// Appends an item's canonical encoding.
pub fn canonical(out: &mut Vec<u8>, item: &Item) -> Result<(), FormatError> {
    canonical_map(out, item)
}

/// Where an error sits, built only when there is one (the path is added on the way out).
fn at(key: &str, mut e: FormatError) -> FormatError {
    e.path = if e.path.is_empty() {
        key.to_owned()
    } else if e.path.starts_with('[') {
        format!("{key}{}", e.path)
    } else {
        format!("{key}.{}", e.path)
    };
    e
}

fn problem(text: &str) -> FormatError {
    FormatError {
        path: String::new(),
        problem: text.to_owned(),
    }
}

fn canonical_map(out: &mut Vec<u8>, map: &Item) -> Result<(), FormatError> {
    out.push(b'{');
    if map.len() == 1 {
        let (k, v) = map.iter().next().expect("one entry");
        write_str(out, k);
        out.push(b':');
        canonical_value(out, v).map_err(|e| at(k, e))?;
    } else {
        let keys = sort_by_key_bytes(map.iter().map(|(k, v)| (k.as_str(), v)));
        for (i, (_, k, v)) in keys.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, k);
            out.push(b':');
            canonical_value(out, v).map_err(|e| at(k, e))?;
        }
    }
    out.push(b'}');
    Ok(())
}

/// Appends a normalised number (see [`normalize_number`]) without allocating.
fn write_number(out: &mut Vec<u8>, text: &str) -> Result<(), FormatError> {
    if write_normalized(out, text) {
        Ok(())
    } else {
        Err(problem("N is not a number"))
    }
}

fn canonical_value(out: &mut Vec<u8>, v: &AttributeValue) -> Result<(), FormatError> {
    match v {
        AttributeValue::S(s) => {
            out.extend_from_slice(b"{\"S\":");
            write_str(out, s);
        }
        AttributeValue::N(n) => {
            out.extend_from_slice(b"{\"N\":\"");
            write_number(out, n)?;
            out.push(b'"');
        }
        AttributeValue::B(b) => {
            out.extend_from_slice(b"{\"B\":\"");
            write_b64_bare(out, b.as_ref());
            out.push(b'"');
        }
        AttributeValue::Bool(b) => out.extend_from_slice(if *b {
            b"{\"BOOL\":true"
        } else {
            b"{\"BOOL\":false"
        }),
        AttributeValue::Null(_) => out.extend_from_slice(b"{\"NULL\":true"),
        AttributeValue::Ss(set) => {
            let s = sort_by_key_bytes(set.iter().map(|x| (x.as_str(), ())));
            out.extend_from_slice(b"{\"SS\":[");
            for (i, (_, x, ())) in s.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, x);
            }
            out.push(b']');
        }
        AttributeValue::Ns(set) => {
            // Normal forms side by side in one buffer, then sorted as slices.
            let mut buf = Vec::with_capacity(set.len() * 12);
            let mut ends = Vec::with_capacity(set.len());
            for n in set {
                if !write_normalized(&mut buf, n) {
                    return Err(problem("NS holds a non-number"));
                }
                ends.push(buf.len());
            }
            let mut parts: Vec<&[u8]> = Vec::with_capacity(set.len());
            let mut start = 0;
            for end in ends {
                parts.push(&buf[start..end]);
                start = end;
            }
            parts.sort_unstable();
            out.extend_from_slice(b"{\"NS\":[");
            for (i, x) in parts.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(x);
                out.push(b'"');
            }
            out.push(b']');
        }
        AttributeValue::Bs(set) => {
            let mut s: Vec<&[u8]> = set.iter().map(|b| b.as_ref()).collect();
            s.sort_unstable();
            out.extend_from_slice(b"{\"BS\":[");
            for (i, x) in s.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                write_b64_bare(out, x);
                out.push(b'"');
            }
            out.push(b']');
        }
        AttributeValue::L(list) => {
            out.extend_from_slice(b"{\"L\":[");
            for (i, e) in list.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_value(out, e).map_err(|e| at(&format!("[{i}]"), e))?;
            }
            out.push(b']');
        }
        AttributeValue::M(map) => {
            out.extend_from_slice(b"{\"M\":");
            canonical_map(out, map)?;
        }
        _ => return Err(problem("an attribute type this version does not know")),
    }
    out.push(b'}');
    Ok(())
}

/// The fingerprint of a set of items: count, canonical bytes, and the lane-wise sum of their
/// hashes. Written as `v1:<items>:<bytes>:<64 hex digits>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub items: u64,
    /// Bytes of canonical encoding hashed.
    pub bytes: u64,
    sum: [u64; 4],
}

impl Fingerprint {
    /// Adds one item's hash, from its canonical encoding.
    pub fn add_canonical(&mut self, canonical: &[u8]) {
        let h = blake3::hash(canonical);
        let h = h.as_bytes();
        for (lane, chunk) in self.sum.iter_mut().zip(h.chunks_exact(8)) {
            *lane = lane.wrapping_add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        self.items += 1;
        self.bytes += canonical.len() as u64;
    }

    /// Combines two disjoint sets of items (segments, files), in any order.
    pub fn merge(&mut self, other: &Fingerprint) {
        for (a, b) in self.sum.iter_mut().zip(other.sum) {
            *a = a.wrapping_add(b);
        }
        self.items += other.items;
        self.bytes += other.bytes;
    }

    /// The 256-bit sum as hex: equal digests and counts mean equal content.
    pub fn digest(&self) -> String {
        self.sum.iter().map(|l| format!("{l:016x}")).collect()
    }

    /// Whether two fingerprints describe the same items (count and digest).
    pub fn same_content(&self, other: &Fingerprint) -> bool {
        self.items == other.items && self.sum == other.sum
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v1:{}:{}:{}", self.items, self.bytes, self.digest())
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{:?} is not a fingerprint (v1:<items>:<bytes>:<64 hex>)",
                crate::report::clip(s, 90)
            )
        };
        let mut parts = s.split(':');
        if parts.next() != Some("v1") {
            return Err(bad());
        }
        let items = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let bytes = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let hex = parts
            .next()
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        let mut sum = [0u64; 4];
        for (i, lane) in sum.iter_mut().enumerate() {
            *lane = u64::from_str_radix(&hex[i * 16..i * 16 + 16], 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint { items, bytes, sum })
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Fingerprints items one at a time, reusing one buffer.
#[derive(Debug, Default)]
pub struct Fingerprinter {
    pub fingerprint: Fingerprint,
    buf: Vec<u8>,
}

impl Fingerprinter {
    pub fn add(&mut self, item: &Item) -> Result<(), FormatError> {
        self.buf.clear();
        canonical(&mut self.buf, item)?;
        self.fingerprint.add_canonical(&self.buf);
        Ok(())
    }
}

/// The fingerprint of a list of items.
pub fn of_items<'a>(items: impl IntoIterator<Item = &'a Item>) -> Result<Fingerprint, FormatError> {
    let mut f = Fingerprinter::default();
    for i in items {
        f.add(i)?;
    }
    Ok(f.fingerprint)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_dynamodb::primitives::Blob;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn numbers_normalise_as_dynamodb_compares_them() {
        for (a, b) in [
            ("1.50", "1.5"),
            ("+1.5", "15E-1"),
            ("0.00", "-0"),
            ("100", "1e2"),
            ("00012.3400", "1.234E+1"),
            ("-0.001", "-1E-3"),
            (".5", "0.5"),
            ("5.", "5"),
        ] {
            assert_eq!(normalize_number(a), normalize_number(b), "{a} vs {b}");
        }
        assert_eq!(normalize_number("1.50").unwrap(), "1.5E0");
        assert_eq!(normalize_number("0").unwrap(), "0");
        assert_eq!(
            normalize_number("12345678901234567890123456789012345678").unwrap(),
            "1.2345678901234567890123456789012345678E37"
        );
        for bad in [
            "",
            "-",
            "e5",
            "1e",
            "1.2.3",
            "abc",
            "1e+",
            "1e9999999999",
            "--1",
            "0x10",
        ] {
            assert_eq!(normalize_number(bad), None, "{bad}");
        }
        assert_ne!(normalize_number("1"), normalize_number("-1"));
        // The allocation-free path for plain integers agrees with the general one.
        for n in [
            "1",
            "10",
            "100",
            "12345678901234567890123456789012345678",
            "7",
            "120",
        ] {
            let mut out = Vec::new();
            write_number(&mut out, n).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                normalize_number(n).unwrap(),
                "{n}"
            );
        }
        assert_ne!(normalize_number("1"), normalize_number("10"));
    }

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn equal_content_equal_fingerprint_and_any_difference_shows() {
        let a = item(&[
            ("pk", AttributeValue::S("a".into())),
            ("ns", AttributeValue::Ns(vec!["1.0".into(), "2".into()])),
            (
                "bs",
                AttributeValue::Bs(vec![Blob::new(vec![2]), Blob::new(vec![1])]),
            ),
        ]);
        let a2 = item(&[
            (
                "bs",
                AttributeValue::Bs(vec![Blob::new(vec![1]), Blob::new(vec![2])]),
            ),
            ("ns", AttributeValue::Ns(vec!["2".into(), "1".into()])),
            ("pk", AttributeValue::S("a".into())),
        ]);
        let b = item(&[("pk", AttributeValue::S("b".into()))]);
        let f1 = of_items([&a, &b]).unwrap();
        let f2 = of_items([&b, &a2]).unwrap();
        assert!(f1.same_content(&f2));
        assert_eq!(f1.to_string().parse::<Fingerprint>().unwrap(), f1);
        // A missing item, an extra item, a duplicate, a changed value: all differ.
        assert!(!f1.same_content(&of_items([&a]).unwrap()));
        // A malformed fingerprint (here: 64 bytes, not 64 hex digits) is an error, never a panic.
        let bad = format!("v1:1:2:{}", "é".repeat(32));
        assert!(bad.parse::<Fingerprint>().is_err());
        assert!(!f1.same_content(&of_items([&a, &b, &b]).unwrap()));
        let changed = item(&[("pk", AttributeValue::S("b ".into()))]);
        assert!(!f1.same_content(&of_items([&a, &changed]).unwrap()));
        // A string "1" is not the number 1; binary [] is not string "".
        let s1 = item(&[("x", AttributeValue::S("1".into()))]);
        let n1 = item(&[("x", AttributeValue::N("1".into()))]);
        assert!(!of_items([&s1])
            .unwrap()
            .same_content(&of_items([&n1]).unwrap()));
    }

    fn value() -> impl Strategy<Value = AttributeValue> {
        let leaf = prop_oneof![
            any::<String>().prop_map(AttributeValue::S),
            (any::<i64>(), 0u32..6)
                .prop_map(|(n, scale)| AttributeValue::N(format!("{n}e-{scale}"))),
            proptest::collection::vec(any::<u8>(), 0..8)
                .prop_map(|b| AttributeValue::B(Blob::new(b))),
            any::<bool>().prop_map(AttributeValue::Bool),
            Just(AttributeValue::Null(true)),
            proptest::collection::btree_set("[a-z]{0,4}", 1..4)
                .prop_map(|s| AttributeValue::Ss(s.into_iter().collect())),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(AttributeValue::L),
                proptest::collection::hash_map("[a-z]{1,3}", inner, 0..4)
                    .prop_map(AttributeValue::M),
            ]
        })
    }

    fn items() -> impl Strategy<Value = Vec<Item>> {
        proptest::collection::vec(
            proptest::collection::hash_map("[a-z]{1,3}", value(), 1..5),
            0..12,
        )
    }

    proptest! {
        /// Any split into segments and any order combine to the same fingerprint, and an export
        /// line read back fingerprints as the item it came from.
        #[test]
        fn segments_combine_in_any_order(items in items(), cut in 0usize..12, seed in any::<u64>()) {
            let whole = of_items(items.iter()).unwrap();
            let cut = cut.min(items.len());
            let mut a = of_items(items[..cut].iter()).unwrap();
            let b = of_items(items[cut..].iter()).unwrap();
            let mut shuffled = items.clone();
            let n = shuffled.len();
            if n > 1 { shuffled.swap((seed as usize) % n, 0); }
            a.merge(&b);
            prop_assert!(a.same_content(&whole));
            prop_assert!(of_items(shuffled.iter()).unwrap().same_content(&whole));
            let mut line = Vec::new();
            for i in &items {
                line.clear();
                crate::ddbjson::write_item_line(&mut line, i).unwrap();
                let back = crate::ddbjson::item_from_line(std::str::from_utf8(&line).unwrap().trim_end()).unwrap();
                prop_assert_eq!(&back, i);
            }
        }
    }

    #[test]
    fn empty_and_bad_numbers_never_panic() {
        let empty: Vec<Item> = vec![];
        assert_eq!(of_items(empty.iter()).unwrap().items, 0);
        let bad = item(&[("n", AttributeValue::N("1e".into()))]);
        let e = of_items([&bad]).unwrap_err();
        assert_eq!(e.path, "n");
        let nested = item(&[(
            "m",
            AttributeValue::M(HashMap::from([(
                "l".to_owned(),
                AttributeValue::L(vec![AttributeValue::Ns(vec!["x".into()])]),
            )])),
        )]);
        assert_eq!(of_items([&nested]).unwrap_err().path, "m.l[0]");
    }
}

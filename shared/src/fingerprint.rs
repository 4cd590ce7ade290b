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

use crate::ddbjson::{write_str, FormatError, Item};

/// Normalises a DynamoDB number: `[-]d[.ddd]E<exp>` with no leading or trailing zeros in the
/// digits, `0` for zero. `None` when the text is not a number.
pub fn normalize_number(text: &str) -> Option<String> {
    let t = text.trim();
    let (negative, rest) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => {
            let e = &rest[i + 1..];
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 9
            {
                return None;
            }
            (&rest[..i], e.parse::<i64>().ok()?)
        }
        None => (rest, 0),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((a, b)) => (a, b),
        None => (mantissa, ""),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // value = 0.<int><frac> × 10^(int.len() + exp), then strip leading zeros.
    let all: String = format!("{int}{frac}");
    let lead = all.bytes().take_while(|b| *b == b'0').count();
    let digits = all[lead..].trim_end_matches('0');
    if digits.is_empty() {
        return Some("0".to_owned());
    }
    let point = int.len() as i64 - lead as i64 + exp; // value = 0.<digits> × 10^point
    let sci = point - 1; // value = d.ddd × 10^sci
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    out.push('E');
    out.push_str(&sci.to_string());
    Some(out)
}

/// Appends an item's canonical encoding.
pub fn canonical(out: &mut Vec<u8>, item: &Item) -> Result<(), FormatError> {
    canonical_map(out, item, "")
}

fn canonical_map(out: &mut Vec<u8>, map: &Item, path: &str) -> Result<(), FormatError> {
    let mut keys: Vec<(&String, &AttributeValue)> = map.iter().collect();
    keys.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (k, v)) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        canonical_value(out, v, path, k)?;
    }
    out.push(b'}');
    Ok(())
}

fn bad(path: &str, key: &str, problem: &str) -> FormatError {
    FormatError {
        path: if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        },
        problem: problem.to_owned(),
    }
}

fn canonical_value(
    out: &mut Vec<u8>,
    v: &AttributeValue,
    path: &str,
    key: &str,
) -> Result<(), FormatError> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    match v {
        AttributeValue::S(s) => {
            out.extend_from_slice(b"{\"S\":");
            write_str(out, s);
        }
        AttributeValue::N(n) => {
            out.extend_from_slice(b"{\"N\":\"");
            let norm = normalize_number(n).ok_or_else(|| bad(path, key, "N is not a number"))?;
            out.extend_from_slice(norm.as_bytes());
            out.push(b'"');
        }
        AttributeValue::B(b) => {
            out.extend_from_slice(b"{\"B\":\"");
            out.extend_from_slice(b64.encode(b.as_ref()).as_bytes());
            out.push(b'"');
        }
        AttributeValue::Bool(b) => out.extend_from_slice(if *b {
            b"{\"BOOL\":true"
        } else {
            b"{\"BOOL\":false"
        }),
        AttributeValue::Null(_) => out.extend_from_slice(b"{\"NULL\":true"),
        AttributeValue::Ss(set) => {
            let mut s: Vec<&str> = set.iter().map(String::as_str).collect();
            s.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.extend_from_slice(b"{\"SS\":[");
            for (i, x) in s.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, x);
            }
            out.push(b']');
        }
        AttributeValue::Ns(set) => {
            let mut s = set
                .iter()
                .map(|n| normalize_number(n).ok_or_else(|| bad(path, key, "NS holds a non-number")))
                .collect::<Result<Vec<String>, _>>()?;
            s.sort_unstable();
            out.extend_from_slice(b"{\"NS\":[");
            for (i, x) in s.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(x.as_bytes());
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
                out.extend_from_slice(b64.encode(x).as_bytes());
                out.push(b'"');
            }
            out.push(b']');
        }
        AttributeValue::L(list) => {
            out.extend_from_slice(b"{\"L\":[");
            let sub = if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            };
            for (i, e) in list.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_value(out, e, &sub, &format!("[{i}]"))?;
            }
            out.push(b']');
        }
        AttributeValue::M(map) => {
            out.extend_from_slice(b"{\"M\":");
            let sub = if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            };
            canonical_map(out, map, &sub)?;
        }
        _ => {
            return Err(bad(
                path,
                key,
                "an attribute type this version does not know",
            ))
        }
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
        assert_eq!(of_items([&nested]).unwrap_err().path, "m.l.[0]");
    }
}

//! Fingerprint throughput on one core: builds items in memory (about 1.1 KB of canonical
//! DynamoDB JSON each, every attribute type: strings, numbers, binary, booleans, null, the three
//! sets, maps and lists, nested), then times `Fingerprinter::add` over all of them, several
//! times, and prints the best repetition as items/s and MB/s.
//!
//! MB is 10^6 bytes of **canonical DynamoDB JSON**, the unit of the goal (≥ 300 MB/s): the
//! items written as JSON with map keys and set members sorted and numbers normalised (the form
//! fingerprints hashed up to version 1; `canonical_json` below, counted once, outside the timed
//! loops). Export lines (`backstop::ddbjson::write_item_line`) are a little longer (the `Item`
//! wrapper, a newline, numbers as written); their size is printed too. What the fingerprint
//! hashes now is the binary canonical encoding (`Fingerprint::bytes`, about two thirds of that
//! JSON), so every rate is also given in MB of it. Then, to show where the time goes, the
//! canonical encoding alone (one reused `Encoder`, as `Fingerprinter` has) and BLAKE3 alone over
//! the encoded bytes, timed the same way.
//!
//! Usage: cargo run --release -p backstop-shared --example fingerprint_bench -- [--items 200000] [--reps 5]
//! The last line is JSON for bench/export.py.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use backstop::ddbjson::{write_item_line, write_str, Item};
use backstop::fingerprint::{normalize_number, Encoder, Fingerprinter};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// An item as canonical DynamoDB JSON (version 1's canonical form: keys and set members sorted
/// by their bytes, numbers as `normalize_number` writes them, binary as base64): only counted,
/// to express the throughput in the goal's unit.
fn canonical_json(out: &mut Vec<u8>, item: &Item) {
    fn map(out: &mut Vec<u8>, m: &Item) {
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        out.push(b'{');
        for (i, k) in keys.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, k);
            out.push(b':');
            value(out, &m[k]);
        }
        out.push(b'}');
    }
    /// A set, its members already sorted by their raw bytes and written as JSON strings.
    fn set(out: &mut Vec<u8>, ty: &str, members: Vec<Vec<u8>>) {
        out.extend_from_slice(format!("{{\"{ty}\":[").as_bytes());
        out.extend_from_slice(&members.join(&b',')[..]);
        out.extend_from_slice(b"]}");
    }
    fn quoted(text: &str) -> Vec<u8> {
        format!("\"{text}\"").into_bytes()
    }
    fn number(n: &str) -> String {
        normalize_number(n).expect("every generated number is one")
    }
    fn value(out: &mut Vec<u8>, v: &AttributeValue) {
        match v {
            AttributeValue::S(s) => {
                out.extend_from_slice(b"{\"S\":");
                write_str(out, s);
                out.push(b'}');
            }
            AttributeValue::N(n) => {
                out.extend_from_slice(format!("{{\"N\":\"{}\"}}", number(n)).as_bytes())
            }
            AttributeValue::B(b) => out
                .extend_from_slice(format!("{{\"B\":\"{}\"}}", B64.encode(b.as_ref())).as_bytes()),
            AttributeValue::Bool(b) => {
                out.extend_from_slice(format!("{{\"BOOL\":{b}}}").as_bytes())
            }
            AttributeValue::Null(_) => out.extend_from_slice(b"{\"NULL\":true}"),
            AttributeValue::Ss(members) => {
                let mut raw: Vec<&str> = members.iter().map(String::as_str).collect();
                raw.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                let json = raw.into_iter().map(|m| {
                    let mut q = Vec::new();
                    write_str(&mut q, m);
                    q
                });
                set(out, "SS", json.collect())
            }
            AttributeValue::Ns(members) => {
                let mut normal: Vec<String> = members.iter().map(|n| number(n)).collect();
                normal.sort_unstable();
                set(out, "NS", normal.iter().map(|n| quoted(n)).collect())
            }
            AttributeValue::Bs(members) => {
                let mut raw: Vec<&[u8]> = members.iter().map(|b| b.as_ref()).collect();
                raw.sort_unstable();
                set(
                    out,
                    "BS",
                    raw.into_iter().map(|b| quoted(&B64.encode(b))).collect(),
                )
            }
            AttributeValue::L(l) => {
                out.extend_from_slice(b"{\"L\":[");
                for (i, e) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    value(out, e);
                }
                out.extend_from_slice(b"]}");
            }
            AttributeValue::M(m) => {
                out.extend_from_slice(b"{\"M\":");
                map(out, m);
                out.push(b'}');
            }
            _ => unreachable!("not generated"),
        }
    }
    map(out, item)
}

/// SplitMix64: deterministic items without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn word(&mut self, len: usize) -> String {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..len)
            .map(|_| LETTERS[self.below(LETTERS.len() as u64) as usize] as char)
            .collect()
    }

    /// Prose with spaces, now and then a character JSON escapes or a non-ASCII one.
    fn text(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len + 8);
        while s.len() < len {
            match self.below(40) {
                0 => s.push('"'),
                1 => s.push('é'),
                2 => s.push('\n'),
                _ => {
                    let w = 2 + self.below(8) as usize;
                    s.push_str(&self.word(w));
                    s.push(' ');
                }
            }
        }
        s
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn decimal(&mut self) -> String {
        format!("{}.{:02}", self.below(100_000), self.below(100))
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn make_item(i: u64, rng: &mut Rng) -> Item {
    let mut item: Item = HashMap::with_capacity(20);
    item.insert("pk".into(), s(format!("customer#{:08}", i / 7)));
    item.insert("sk".into(), s(format!("order#{i:010}")));
    item.insert("name".into(), s(rng.text(16)));
    item.insert("description".into(), s(rng.text(64)));
    item.insert("price".into(), n(rng.decimal()));
    item.insert("quantity".into(), n(rng.below(1000)));
    item.insert(
        "score".into(),
        n(format!(
            "-{}.{}E-{}",
            rng.below(10),
            rng.below(1000),
            rng.below(5)
        )),
    );
    item.insert("created".into(), n(1_700_000_000 + rng.below(50_000_000)));
    item.insert("active".into(), AttributeValue::Bool(rng.below(2) == 0));
    item.insert("deleted_at".into(), AttributeValue::Null(true));
    item.insert(
        "tags".into(),
        AttributeValue::Ss((0..5).map(|k| format!("{k}{}", rng.word(7))).collect()),
    );
    item.insert(
        "sizes".into(),
        AttributeValue::Ns((0..4).map(|k| format!("{k}{}", rng.decimal())).collect()),
    );
    item.insert(
        "thumbnail".into(),
        AttributeValue::B(Blob::new(rng.bytes(64))),
    );
    item.insert(
        "chunks".into(),
        AttributeValue::Bs(
            (0..2)
                .map(|k| Blob::new([vec![k as u8], rng.bytes(15)].concat()))
                .collect(),
        ),
    );
    item.insert(
        "address".into(),
        AttributeValue::M(HashMap::from([
            ("street".to_owned(), s(rng.text(16))),
            ("city".to_owned(), s(rng.word(10))),
            ("zip".to_owned(), s(format!("{:05}", rng.below(100_000)))),
            (
                "geo".to_owned(),
                AttributeValue::M(HashMap::from([
                    (
                        "lat".to_owned(),
                        n(format!("{}.{:06}", rng.below(90), rng.below(1_000_000))),
                    ),
                    (
                        "lon".to_owned(),
                        n(format!("-{}.{:06}", rng.below(180), rng.below(1_000_000))),
                    ),
                ])),
            ),
        ])),
    );
    item.insert(
        "history".into(),
        AttributeValue::L(
            (0..2)
                .map(|_| {
                    AttributeValue::M(HashMap::from([
                        (
                            "at".to_owned(),
                            s(format!(
                                "2026-{:02}-{:02}T10:00:00Z",
                                1 + rng.below(12),
                                1 + rng.below(28)
                            )),
                        ),
                        ("event".to_owned(), s(rng.word(12))),
                        ("amount".to_owned(), n(rng.decimal())),
                    ]))
                })
                .collect(),
        ),
    );
    item.insert(
        "ratings".into(),
        AttributeValue::L((0..4).map(|_| n(rng.below(6))).collect()),
    );
    item
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} takes a positive whole number")),
        None => default,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = arg(&args, "--items", 200_000);
    let reps = arg(&args, "--reps", 5).max(1);

    let mut rng = Rng(0x5eed);
    let t = Instant::now();
    let items: Vec<Item> = (0..count as u64).map(|i| make_item(i, &mut rng)).collect();
    eprintln!("built {count} items in {:.1} s", t.elapsed().as_secs_f64());

    // The sizes the rates are expressed in, counted once, outside the timed loops.
    let (mut json_bytes, mut line_bytes) = (0u64, 0u64);
    let mut buf = Vec::new();
    for item in &items {
        buf.clear();
        canonical_json(&mut buf, item);
        json_bytes += buf.len() as u64;
        buf.clear();
        write_item_line(&mut buf, item).expect("every generated item writes");
        line_bytes += buf.len() as u64;
    }

    let mut best = f64::INFINITY;
    let mut last = None;
    for rep in 1..=reps {
        let mut fp = Fingerprinter::default();
        let t = Instant::now();
        for item in &items {
            fp.add(black_box(item))
                .expect("every generated item encodes");
        }
        let secs = t.elapsed().as_secs_f64();
        let f = black_box(fp.fingerprint);
        eprintln!(
            "rep {rep}: {:.3} s, {:.0} MB/s of canonical JSON",
            secs,
            json_bytes as f64 / 1e6 / secs
        );
        if let Some(prev) = last {
            assert_eq!(prev, f, "the same items fingerprint the same every time");
        }
        last = Some(f);
        best = best.min(secs);
    }
    let f = last.expect("at least one repetition");
    let binary_bytes = f.bytes;
    let items_per_s = f.items as f64 / best;
    let rate = |bytes: u64, secs: f64| bytes as f64 / 1e6 / secs;

    // Where the time goes: the canonical encoding alone, then BLAKE3 alone over the same bytes.
    let mut encoder = Encoder::default();
    let mut encode_best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let mut bytes = 0usize;
        for item in &items {
            buf.clear();
            encoder
                .encode(&mut buf, black_box(item))
                .expect("every generated item encodes");
            bytes += buf.len();
        }
        encode_best = encode_best.min(t.elapsed().as_secs_f64());
        assert_eq!(black_box(bytes) as u64, binary_bytes);
    }
    let mut encoded = Vec::with_capacity(binary_bytes as usize);
    let mut ends = Vec::with_capacity(items.len());
    for item in &items {
        encoder
            .encode(&mut encoded, item)
            .expect("every generated item encodes");
        ends.push(encoded.len());
    }
    drop(items);
    let mut hash_best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let mut start = 0;
        let mut acc = 0u8;
        for &end in &ends {
            acc ^= blake3::hash(black_box(&encoded[start..end])).as_bytes()[0];
            start = end;
        }
        black_box(acc);
        hash_best = hash_best.min(t.elapsed().as_secs_f64());
    }
    let per_item = |bytes: u64| bytes as f64 / f.items as f64;
    println!(
        "{} items, {:.1} MB of canonical DynamoDB JSON ({:.0} bytes/item; export lines {:.0}), \
         {:.1} MB of binary canonical encoding hashed ({:.0} bytes/item)",
        f.items,
        json_bytes as f64 / 1e6,
        per_item(json_bytes),
        per_item(line_bytes),
        binary_bytes as f64 / 1e6,
        per_item(binary_bytes),
    );
    println!(
        "best of {reps}: {:.3} s = {:.0} items/s, {:.0} MB/s of canonical JSON ({:.0} MB/s of binary encoding)",
        best,
        items_per_s,
        rate(json_bytes, best),
        rate(binary_bytes, best),
    );
    println!(
        "of which: canonical encoding alone {:.3} s ({:.0} MB/s of JSON, {:.0} of binary), \
         BLAKE3 alone over the binary encoding {:.3} s ({:.0} MB/s of its input, {:.0} of JSON)",
        encode_best,
        rate(json_bytes, encode_best),
        rate(binary_bytes, encode_best),
        hash_best,
        rate(binary_bytes, hash_best),
        rate(json_bytes, hash_best),
    );
    println!(
        "{}",
        serde_json::json!({
            "items": f.items,
            "json_bytes": json_bytes,
            "line_bytes": line_bytes,
            "binary_bytes": binary_bytes,
            "reps": reps,
            "best_s": best,
            "items_per_s": items_per_s,
            "json_mb_per_s": rate(json_bytes, best),
            "binary_mb_per_s": rate(binary_bytes, best),
            "encode_s": encode_best,
            "encode_json_mb_per_s": rate(json_bytes, encode_best),
            "encode_binary_mb_per_s": rate(binary_bytes, encode_best),
            "hash_s": hash_best,
            "hash_mb_per_s": rate(binary_bytes, hash_best),
            "hash_json_mb_per_s": rate(json_bytes, hash_best),
            "fingerprint": f.to_string(),
        })
    );
}

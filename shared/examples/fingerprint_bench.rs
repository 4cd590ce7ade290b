//! Fingerprint throughput on one core: builds items in memory (about 1 KB of canonical encoding
//! each, every attribute type: strings, numbers, binary, booleans, null, the three sets, maps and
//! lists, nested), then times `Fingerprinter::add` over all of them, several times, and prints
//! the best repetition as items/s and MB/s, where MB is 10^6 bytes of canonical encoding hashed
//! (`Fingerprint::bytes`). Then, to show where the time goes, the canonical encoding alone and
//! BLAKE3 alone over the same bytes, timed the same way.
//!
//! Usage: cargo run --release -p backstop-shared --example fingerprint_bench -- [--items 200000] [--reps 5]
//! The last line is JSON for bench/export.py.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use backstop::ddbjson::Item;
use backstop::fingerprint::{canonical, Fingerprinter};

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
            "rep {rep}: {:.3} s, {:.0} MB/s",
            secs,
            f.bytes as f64 / 1e6 / secs
        );
        if let Some(prev) = last {
            assert_eq!(prev, f, "the same items fingerprint the same every time");
        }
        last = Some(f);
        best = best.min(secs);
    }
    let f = last.expect("at least one repetition");
    let items_per_s = f.items as f64 / best;
    let mb_per_s = f.bytes as f64 / 1e6 / best;

    // Where the time goes: the canonical encoding alone, then BLAKE3 alone over the same bytes.
    let mut buf = Vec::new();
    let mut encode_best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let mut bytes = 0usize;
        for item in &items {
            buf.clear();
            canonical(&mut buf, black_box(item)).expect("every generated item encodes");
            bytes += buf.len();
        }
        encode_best = encode_best.min(t.elapsed().as_secs_f64());
        assert_eq!(black_box(bytes) as u64, f.bytes);
    }
    let mut encoded = Vec::with_capacity(f.bytes as usize);
    let mut ends = Vec::with_capacity(items.len());
    for item in &items {
        canonical(&mut encoded, item).expect("every generated item encodes");
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
    let encode_mb_per_s = f.bytes as f64 / 1e6 / encode_best;
    let hash_mb_per_s = f.bytes as f64 / 1e6 / hash_best;
    println!(
        "{} items, {:.1} MB of canonical encoding ({:.0} bytes/item), best of {reps}: {:.3} s = {:.0} items/s, {:.0} MB/s",
        f.items,
        f.bytes as f64 / 1e6,
        f.bytes as f64 / f.items as f64,
        best,
        items_per_s,
        mb_per_s
    );
    println!(
        "of which: canonical encoding alone {:.3} s ({:.0} MB/s), BLAKE3 alone {:.3} s ({:.0} MB/s)",
        encode_best, encode_mb_per_s, hash_best, hash_mb_per_s
    );
    println!(
        "{}",
        serde_json::json!({
            "items": f.items,
            "bytes": f.bytes,
            "reps": reps,
            "best_s": best,
            "items_per_s": items_per_s,
            "mb_per_s": mb_per_s,
            "encode_s": encode_best,
            "encode_mb_per_s": encode_mb_per_s,
            "hash_s": hash_best,
            "hash_mb_per_s": hash_mb_per_s,
            "fingerprint": f.to_string(),
        })
    );
}

//! DynamoDB JSON, exactly: the format of AWS's native exports and of ImportTable
//! (`{"Item":{"pk":{"S":"a"},"n":{"N":"1.50"},"b":{"B":"AAE="}}}`, one item per line).
//!
//! Every type round-trips unchanged: strings, numbers as their digits (never a float), binary as
//! base64 wherever it sits (top level, in maps, in lists, in binary sets), sets, empty maps and
//! lists, null and booleans. Pure: no I/O.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;

/// One item as the SDK holds it.
pub type Item = HashMap<String, AttributeValue>;

/// Why a value cannot be written or read, with where it sits (`attr.path[3]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FormatError {
    pub path: String,
    pub problem: String,
}

fn err(path: &str, problem: impl Into<String>) -> FormatError {
    FormatError {
        path: if path.is_empty() {
            "item".into()
        } else {
            path.to_owned()
        },
        problem: problem.into(),
    }
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Appends `s` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Most strings need no escape: one pass without early exit (the compiler vectorizes it),
    // then one copy.
    if !bytes.iter().fold(false, |acc, &b| acc | needs_escape(b)) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_b64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    write_b64_bare(out, bytes);
    out.push(b'"');
}

/// Appends `bytes` as base64, without quotes.
pub(crate) fn write_b64_bare(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    let n = B64
        .encode_slice(bytes, &mut out[start..])
        .unwrap_or_default();
    out.truncate(start + n);
}

/// Adds where an error sits on its way out (built only when there is an error).
fn at(key: &str, mut e: FormatError) -> FormatError {
    e.path = if e.path.is_empty() || e.path == "item" {
        key.to_owned()
    } else if e.path.starts_with('[') {
        format!("{key}{}", e.path)
    } else {
        format!("{key}.{}", e.path)
    };
    e
}

/// Appends one attribute value in DynamoDB JSON.
pub fn write_value(out: &mut Vec<u8>, v: &AttributeValue) -> Result<(), FormatError> {
    match v {
        AttributeValue::S(s) => {
            out.extend_from_slice(b"{\"S\":");
            write_str(out, s);
        }
        AttributeValue::N(n) => {
            out.extend_from_slice(b"{\"N\":");
            write_str(out, n);
        }
        AttributeValue::B(b) => {
            out.extend_from_slice(b"{\"B\":");
            write_b64(out, b.as_ref());
        }
        AttributeValue::Bool(b) => {
            out.extend_from_slice(if *b {
                b"{\"BOOL\":true"
            } else {
                b"{\"BOOL\":false"
            });
        }
        AttributeValue::Null(_) => out.extend_from_slice(b"{\"NULL\":true"),
        AttributeValue::Ss(set) | AttributeValue::Ns(set) => {
            out.extend_from_slice(if matches!(v, AttributeValue::Ss(_)) {
                b"{\"SS\":["
            } else {
                b"{\"NS\":["
            });
            for (i, s) in set.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, s);
            }
            out.push(b']');
        }
        AttributeValue::Bs(set) => {
            out.extend_from_slice(b"{\"BS\":[");
            for (i, b) in set.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_b64(out, b.as_ref());
            }
            out.push(b']');
        }
        AttributeValue::L(list) => {
            out.extend_from_slice(b"{\"L\":[");
            for (i, e) in list.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, e).map_err(|e| at(&format!("[{i}]"), e))?;
            }
            out.push(b']');
        }
        AttributeValue::M(map) => {
            out.extend_from_slice(b"{\"M\":");
            write_map(out, map)?;
        }
        _ => {
            return Err(err(
                "",
                "an attribute type this version of Backstop does not know",
            ))
        }
    }
    out.push(b'}');
    Ok(())
}

fn write_map(out: &mut Vec<u8>, map: &Item) -> Result<(), FormatError> {
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v).map_err(|e| at(k, e))?;
    }
    out.push(b'}');
    Ok(())
}

/// Appends one export line: `{"Item":{…}}\n`.
pub fn write_item_line(out: &mut Vec<u8>, item: &Item) -> Result<(), FormatError> {
    out.extend_from_slice(b"{\"Item\":");
    write_map(out, item)?;
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// Appends one export line from an item's DynamoDB JSON text as a Scan answer holds it
/// (`{"pk":{"S":"a"}}`, already valid JSON): the text without the whitespace between its
/// tokens, strings copied byte for byte, so that the line is one line.
pub fn write_text_item_line(out: &mut Vec<u8>, item_json: &str) {
    out.extend_from_slice(b"{\"Item\":");
    push_minified(out, item_json.as_bytes());
    out.extend_from_slice(b"}\n");
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// Appends a JSON string (its quotes included). One with escapes is written as [`write_str`]
/// writes its text, so that a service's own escapes (`\u00e9` for `é`, `\/`) never reach the
/// file: the line is what Backstop writes for that value however the answer spelled it.
fn push_string(out: &mut Vec<u8>, quoted: &[u8], escaped: bool) {
    if escaped {
        if let Ok(text) = serde_json::from_slice::<String>(quoted) {
            write_str(out, &text);
            return;
        }
    }
    out.extend_from_slice(quoted);
}

/// Appends valid JSON without insignificant whitespace, strings with escapes re-escaped as
/// Backstop escapes them. Text with neither whitespace nor backslashes (as DynamoDB sends most
/// items) is copied in one piece.
fn push_minified(out: &mut Vec<u8>, json: &[u8]) {
    if !json
        .iter()
        .fold(false, |acc, &b| acc | is_space(b) | (b == b'\\'))
    {
        out.extend_from_slice(json);
        return;
    }
    out.reserve(json.len());
    let n = json.len();
    let mut i = 0;
    while i < n {
        // Outside strings: up to the next quote or whitespace.
        let run = json[i..]
            .iter()
            .position(|&b| b == b'"' || is_space(b))
            .map_or(n, |p| i + p);
        out.extend_from_slice(&json[i..run]);
        i = run;
        if i == n {
            break;
        }
        if json[i] != b'"' {
            i += 1;
            continue;
        }
        // A string, through its closing quote (an escape's next byte is never the end).
        let start = i;
        let mut escaped = false;
        i += 1;
        while let Some(p) = memchr::memchr2(b'"', b'\\', &json[i..]) {
            i += p;
            if json[i] == b'"' {
                i += 1;
                break;
            }
            escaped = true;
            i += 2;
            if i >= n {
                break;
            }
        }
        let end = i.min(n);
        push_string(out, &json[start..end], escaped);
        i = end;
    }
}

/// An item's key attributes (or any map) as a DynamoDB JSON object, for checkpoints.
pub fn item_to_json(item: &Item) -> Result<String, FormatError> {
    let mut out = Vec::new();
    write_map(&mut out, item)?;
    String::from_utf8(out).map_err(|_| err("", "not UTF-8"))
}

/// Reads a DynamoDB JSON object (`{"pk":{"S":"a"}}`) back into an item.
pub fn item_from_json(text: &str) -> Result<Item, FormatError> {
    let v: Value = serde_json::from_str(text).map_err(|e| err("", format!("not JSON: {e}")))?;
    map_from_value(&v, "")
}

/// Reads one export line (`{"Item":{…}}`); blank lines are not items and are refused.
pub fn item_from_line(line: &str) -> Result<Item, FormatError> {
    let v: Value = serde_json::from_str(line).map_err(|e| err("", format!("not JSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(err("", "a line must be a JSON object {\"Item\":{…}}"));
    };
    let Some(item) = obj.get("Item") else {
        return Err(err("", "the line has no \"Item\""));
    };
    if obj.len() != 1 {
        return Err(err("", "the line holds more than \"Item\""));
    }
    map_from_value(item, "")
}

/// Reads one line of a native incremental export (`{"Metadata":{…},"Keys":{…},"NewImage":{…},
/// "OldImage":{…}}`, AWS's DynamoDB JSON change record) as one map, `Keys` and the images it
/// holds as nested maps, so that the fingerprint can count and hash the change set. A deleted
/// item has no `NewImage`; with the `NEW_AND_OLD_IMAGES` view a new one has no `OldImage`.
pub fn change_from_line(line: &str) -> Result<Item, FormatError> {
    let v: Value = serde_json::from_str(line).map_err(|e| err("", format!("not JSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(err(
            "",
            "a change record must be a JSON object {\"Keys\":{…},…}",
        ));
    };
    let mut out = HashMap::with_capacity(3);
    for (k, v) in obj {
        match k.as_str() {
            "Metadata" => {}
            "Keys" | "NewImage" | "OldImage" => {
                out.insert(k.clone(), AttributeValue::M(map_from_value(v, k)?));
            }
            other => {
                return Err(err(
                    "",
                    format!(
                    "a change record holds {:?}, not only Metadata, Keys, NewImage and OldImage",
                    crate::report::clip(other, 40)
                ),
                ))
            }
        }
    }
    if !out.contains_key("Keys") {
        return Err(err("", "the change record has no \"Keys\""));
    }
    Ok(out)
}

fn map_from_value(v: &Value, path: &str) -> Result<Item, FormatError> {
    let Some(obj) = v.as_object() else {
        return Err(err(path, "expected an object of attributes"));
    };
    let mut out = HashMap::with_capacity(obj.len());
    for (k, v) in obj {
        let sub = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        out.insert(k.clone(), value_from_json(v, &sub)?);
    }
    Ok(out)
}

fn str_of<'a>(v: &'a Value, path: &str, ty: &str) -> Result<&'a str, FormatError> {
    v.as_str()
        .ok_or_else(|| err(path, format!("{ty} must hold a string")))
}

fn b64_of(v: &Value, path: &str) -> Result<Blob, FormatError> {
    let s = str_of(v, path, "B")?;
    B64.decode(s)
        .map(Blob::new)
        .map_err(|e| err(path, format!("B is not base64: {e}")))
}

fn list_of<'a>(v: &'a Value, path: &str, ty: &str) -> Result<&'a Vec<Value>, FormatError> {
    v.as_array()
        .ok_or_else(|| err(path, format!("{ty} must hold a list")))
}

/// Reads one typed value (`{"S":"a"}`).
pub fn value_from_json(v: &Value, path: &str) -> Result<AttributeValue, FormatError> {
    let Some(obj) = v.as_object() else {
        return Err(err(path, "expected a typed value such as {\"S\":\"…\"}"));
    };
    if obj.len() != 1 {
        return Err(err(
            path,
            format!(
                "a typed value has exactly one type key, this has {}",
                obj.len()
            ),
        ));
    }
    let (ty, inner) = obj.iter().next().expect("one entry");
    Ok(match ty.as_str() {
        "S" => AttributeValue::S(str_of(inner, path, ty)?.to_owned()),
        "N" => {
            let n = str_of(inner, path, ty)?;
            if crate::fingerprint::normalize_number(n).is_none() {
                return Err(err(path, "N is not a number"));
            }
            AttributeValue::N(n.to_owned())
        }
        "B" => AttributeValue::B(b64_of(inner, path)?),
        "BOOL" => AttributeValue::Bool(
            inner
                .as_bool()
                .ok_or_else(|| err(path, "BOOL must hold true or false"))?,
        ),
        "NULL" => {
            if inner != &Value::Bool(true) {
                return Err(err(path, "NULL must hold true"));
            }
            AttributeValue::Null(true)
        }
        "SS" | "NS" => {
            let mut out = Vec::new();
            for (i, e) in list_of(inner, path, ty)?.iter().enumerate() {
                let s = str_of(e, &format!("{path}[{i}]"), ty)?;
                if ty == "NS" && crate::fingerprint::normalize_number(s).is_none() {
                    return Err(err(&format!("{path}[{i}]"), "NS holds a non-number"));
                }
                out.push(s.to_owned());
            }
            if ty == "SS" {
                AttributeValue::Ss(out)
            } else {
                AttributeValue::Ns(out)
            }
        }
        "BS" => {
            let mut out = Vec::new();
            for (i, e) in list_of(inner, path, ty)?.iter().enumerate() {
                out.push(b64_of(e, &format!("{path}[{i}]"))?);
            }
            AttributeValue::Bs(out)
        }
        "L" => {
            let mut out = Vec::new();
            for (i, e) in list_of(inner, path, ty)?.iter().enumerate() {
                out.push(value_from_json(e, &format!("{path}[{i}]"))?);
            }
            AttributeValue::L(out)
        }
        "M" => AttributeValue::M(map_from_value(inner, path)?),
        other => {
            return Err(err(
                path,
                format!(
                    "unknown type {:?} (S, N, B, BOOL, NULL, SS, NS, BS, L, M)",
                    crate::report::clip(other, 20)
                ),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_type() -> Item {
        let mut inner = HashMap::new();
        inner.insert(
            "bin".to_owned(),
            AttributeValue::B(Blob::new(vec![0, 1, 255])),
        );
        inner.insert("empty".to_owned(), AttributeValue::M(HashMap::new()));
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S("a\"b\\c\n\u{1}é".into())),
            (
                "n".to_owned(),
                AttributeValue::N("12345678901234567890123456789012345678".into()),
            ),
            ("b".to_owned(), AttributeValue::B(Blob::new(vec![]))),
            (
                "ss".to_owned(),
                AttributeValue::Ss(vec!["x".into(), "y".into()]),
            ),
            (
                "ns".to_owned(),
                AttributeValue::Ns(vec!["1".into(), "-2.5E3".into()]),
            ),
            (
                "bs".to_owned(),
                AttributeValue::Bs(vec![Blob::new(vec![1]), Blob::new(vec![2, 3])]),
            ),
            ("m".to_owned(), AttributeValue::M(inner)),
            (
                "l".to_owned(),
                AttributeValue::L(vec![
                    AttributeValue::B(Blob::new(vec![9])),
                    AttributeValue::L(vec![]),
                    AttributeValue::Null(true),
                    AttributeValue::Bool(false),
                ]),
            ),
        ])
    }

    #[test]
    fn every_type_round_trips() {
        let item = every_type();
        let mut line = Vec::new();
        write_item_line(&mut line, &item).unwrap();
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.ends_with("}\n"));
        assert_eq!(item_from_line(text.trim_end()).unwrap(), item);
        // serde_json agrees with the hand-written writer.
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            v["Item"]["n"]["N"],
            "12345678901234567890123456789012345678"
        );
    }

    #[test]
    fn a_text_item_line_is_the_item_without_whitespace_and_reads_back() {
        let item = every_type();
        let mut compact = Vec::new();
        write_map(&mut compact, &item).unwrap();
        let compact = String::from_utf8(compact).unwrap();
        // As moto sends it: a space after every colon and comma, and a newline for good measure.
        let spaced =
            serde_json::to_string_pretty(&serde_json::from_str::<Value>(&compact).unwrap())
                .unwrap();
        assert!(spaced.contains('\n'));
        for text in [compact.as_str(), spaced.as_str()] {
            let mut line = Vec::new();
            write_text_item_line(&mut line, text);
            let line = String::from_utf8(line).unwrap();
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert!(line.ends_with("}\n"));
            assert_eq!(item_from_line(line.trim_end()).unwrap(), item);
        }
        // A service's escapes become Backstop's: `\u00e9` is written `é`, `\/` is `/`, and
        // control characters, quotes and backslashes stay escaped.
        let mut line = Vec::new();
        write_text_item_line(&mut line, r#"{"a":{"S":"caf\u00e9 \/ \u0001 \" \\"}}"#);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"Item\":{\"a\":{\"S\":\"café / \\u0001 \\\" \\\\\"}}}\n"
        );
        // Strings keep their spaces, escapes and escaped quotes.
        let mut line = Vec::new();
        write_text_item_line(&mut line, "{ \"a b\" : {\"S\": \" x \\\" \\\\ y\\n\"} }");
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"Item\":{\"a b\":{\"S\":\" x \\\" \\\\ y\\n\"}}}\n"
        );
    }

    #[test]
    fn malformed_lines_name_what_is_wrong() {
        for (line, want) in [
            ("", "not JSON"),
            ("[]", "JSON object"),
            ("{\"Itm\":{}}", "no \"Item\""),
            ("{\"Item\":{\"a\":{\"X\":1}}}", "a: unknown type"),
            ("{\"Item\":{\"a\":{\"N\":\"1e\"}}}", "a: N is not a number"),
            (
                "{\"Item\":{\"a\":{\"M\":{\"b\":{\"B\":\"!!\"}}}}}",
                "a.b: B is not base64",
            ),
            (
                "{\"Item\":{\"a\":{\"L\":[{\"S\":1}]}}}",
                "a[0]: S must hold a string",
            ),
            (
                "{\"Item\":{\"a\":{\"S\":\"x\",\"N\":\"1\"}}}",
                "exactly one type key",
            ),
        ] {
            let e = item_from_line(line).unwrap_err().to_string();
            assert!(e.contains(want), "{line}: {e}");
        }
    }
}

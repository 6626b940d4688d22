//! The JSON fast path (sonic-rs) against the reference decoder (serde_json alone, `decode_reference`):
//! for every hostile variant of a valid event of each kind — each field's value replaced by a malformed,
//! out-of-range or oddly written JSON value, an unknown field holding one, the document cut, padded or
//! followed by something — `decode` must return exactly what the reference returns: the same event, or
//! the same rejection (reason and detail). The fast path may refuse more than serde_json (such values
//! fall back to it); it must never accept a value serde_json refuses, nor read one differently.

use chrono::{DateTime, Utc};
use sluice_schemas::codec::decode_reference;
use sluice_schemas::{decode, Encoding, EventKind, Limits};

fn now() -> DateTime<Utc> {
    "2026-06-15T12:00:00Z".parse().unwrap()
}

/// A valid event of each kind, as (field, JSON value) pairs in document order.
fn fields(kind: EventKind) -> Vec<(&'static str, &'static str)> {
    let common = [
        ("schema_version", "1"),
        ("event_id", r#""k-1""#),
        ("tenant_id", r#""t""#),
        ("occurred_at", r#""2026-06-15T11:00:00.123456Z""#),
    ];
    let rest: &[(&str, &str)] = match kind {
        EventKind::Rank => &[
            ("campaign_id", r#""c""#),
            ("keyword", r#""running shoes""#),
            ("geo", r#""us""#),
            ("engine", r#""google""#),
            ("device", r#""desktop""#),
            ("url", r#""https://a.example/x""#),
            ("position", "7"),
        ],
        EventKind::Crawl => &[
            ("campaign_id", r#""c""#),
            ("url", r#""https://WWW.Example.com/p?q=1""#),
            ("status_code", "200"),
            ("fetch_ms", "183"),
            ("bytes", "48213"),
            ("content_hash", r#""9f86d081""#),
        ],
        EventKind::Click => &[
            ("short_code", r#""aB3""#),
            ("referrer", r#""https://r.example/""#),
            ("country", r#""de""#),
            ("user_agent", r#""Mozilla/5.0 (X11)""#),
            ("visitor_id", r#""v-1""#),
        ],
    };
    common.iter().chain(rest).copied().collect()
}

fn document(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

/// Values to put where a field's value goes: valid and invalid JSON, strings with every kind of escape
/// and raw control character, numbers at and beyond every integer width and float range, nesting.
fn values() -> Vec<String> {
    let mut v: Vec<String> = [
        // Literals and near-literals.
        "null",
        "true",
        "false",
        "nul",
        "nulll",
        "tru",
        "True",
        "NULL",
        "NaN",
        "Infinity",
        "-Infinity",
        // Integers and non-integers of every form.
        "0",
        "1",
        "2",
        "7",
        "-0",
        "-1",
        "+1",
        "01",
        "00",
        "-01",
        "1.",
        ".5",
        "1.0",
        "1e0",
        "1E1",
        "1e+1",
        "1e-1",
        "1e",
        "1e+",
        "-",
        "0x10",
        "200",
        "200.0",
        "2e2",
        "4294967295",
        "4294967296",
        "2147483647",
        "2147483648",
        "-2147483649",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "340282366920938463463374607431768211456",
        "1e300",
        "1e308",
        "1e309",
        "1e400",
        "-1e400",
        "1e-400",
        "4.9e-324",
        "123456789012345678901234567890",
        // Strings: plain, empty, escapes valid and not, surrogates paired and lone, control characters.
        r#""""#,
        r#""s""#,
        r#""a\"b""#,
        r#""a\\b""#,
        r#""a\/b""#,
        r#""\b\f\n\r\t""#,
        r#""\u0041""#,
        r#""\u00e9""#,
        r#""\u0000""#,
        r#""a\u0000b""#,
        r#""\ud83d\ude00""#,
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud800x""#,
        r#""\ud800\u0041""#,
        r#""\udc00\ud800""#,
        r#""\ud800\ud800""#,
        r#""\uDBFF\uDFFF""#,
        r#""\x41""#,
        r#""\u12""#,
        r#""\u12G4""#,
        r#""\U0041""#,
        r#""\a""#,
        r#""\'""#,
        r#""abc"#,
        r#""abc\"#,
        "'s'",
        // sonic-rs skips an unknown field's `\u` with any four bytes after it, a quote among them.
        r#""\uZZZZ""#,
        r#""\u 123""#,
        r#""\u-123""#,
        r#""\u+123""#,
        r#""\u123""#,
        r#""\u""#,
        r#""\uab"}""#,
        r#""\uab","y":"""#,
        r#""\u0""x""#,
        r#""\\u12G4""#,
        r#""\\\u12G4""#,
        r#""\\""#,
        r#""\"\u0041""#,
        "\"a\u{1}b\"",
        "\"a\tb\"",
        "\"a\nb\"",
        "\"a\u{1f}b\"",
        "\"a\u{7f}b\"",
        "\"a\u{0}b\"",
        "\"\u{feff}s\"",
        "\"é😀\"",
        // Timestamps, in a string or escaped.
        r#""2026-06-15T11:00:00Z""#,
        r#""2026-06-15T11:00:00+02:00""#,
        r#""2026-06-15 11:00:00Z""#,
        r#""2026\u002d06-15T11:00:00Z""#,
        r#""2026-06-15T11:00:00""#,
        r#""2026-06-15T23:59:60Z""#,
        // Containers, well formed and not.
        "[]",
        "{}",
        "[1]",
        r#"{"a":1}"#,
        "[1,]",
        "[,1]",
        "[1,,2]",
        "[1 2]",
        r#"{"a":1,}"#,
        r#"{"a"}"#,
        r#"{"a":}"#,
        r#"{a:1}"#,
        r#"{"a":1 "b":2}"#,
        r#"{"a":[tru]}"#,
        r#"["\ud800"]"#,
        "[\"a\u{1}\"]",
        r#"["\x"]"#,
        r#"[1e400]"#,
        r#"[-]"#,
        r#"[01]"#,
        "[",
        "{",
        "]",
        "}",
        // Whitespace JSON does not know.
        "\u{c}1",
        "\u{b}1",
        "\u{a0}1",
        "\u{0}1",
        "/*c*/1",
        "//c\n1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Nesting deeper than serde_json's recursion limit (128) and far deeper.
    for depth in [127, 128, 129, 2_000] {
        v.push(format!("{}1{}", "[".repeat(depth), "]".repeat(depth)));
        v.push(format!(
            "{}1{}",
            r#"{"a":"#.repeat(depth),
            "}".repeat(depth)
        ));
        v.push(format!("{}1{}", "[".repeat(depth), "]".repeat(depth - 1)));
    }
    v
}

fn check(kind: EventKind, doc: &[u8]) -> usize {
    let limits = Limits::default();
    let fast = decode(kind, Encoding::Json, doc, &limits, now());
    let reference = decode_reference(kind, Encoding::Json, doc, &limits, now());
    assert_eq!(
        fast,
        reference,
        "{kind} {:?}",
        String::from_utf8_lossy(&doc[..doc.len().min(300)])
    );
    usize::from(reference.is_ok())
}

#[test]
fn every_field_holding_every_value_decodes_as_the_reference_does() {
    let (mut total, mut accepted) = (0, 0);
    for kind in EventKind::ALL {
        let base = fields(kind);
        let owned: Vec<(&str, String)> = base.iter().map(|(k, v)| (*k, v.to_string())).collect();
        assert_eq!(check(kind, document(&owned).as_bytes()), 1, "{kind} base");
        for value in values() {
            // Each known field holding the value.
            for i in 0..owned.len() {
                let mut doc = owned.clone();
                doc[i].1 = value.clone();
                accepted += check(kind, document(&doc).as_bytes());
                total += 1;
            }
            // An unknown field holding it, first and last; a field of the value's name (an odd key).
            for at in [0, owned.len()] {
                let mut doc = owned.clone();
                doc.insert(at, ("x", value.clone()));
                accepted += check(kind, document(&doc).as_bytes());
                total += 1;
            }
        }
    }
    // Both outcomes occur: the corpus exercises the fast path's acceptances and its fallbacks.
    assert!(
        accepted > 500 && accepted < total - 500,
        "{accepted} of {total}"
    );
}

#[test]
fn documents_cut_padded_or_followed_by_something_decode_as_the_reference_does() {
    for kind in EventKind::ALL {
        let owned: Vec<(&str, String)> = fields(kind)
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        let doc = document(&owned);
        let mut variants: Vec<Vec<u8>> = Vec::new();
        for suffix in [
            "", " ", "\n", "\r\n\t ", "x", "}", "]", ",", " {}", "{}", "\u{0}", "\u{c}", "\u{a0}",
            "//", "/**/", " 1", "null",
        ] {
            variants.push(format!("{doc}{suffix}").into_bytes());
            variants.push(format!(" \t\r\n{doc}{suffix}").into_bytes());
        }
        // Every prefix of the document (a truncated record).
        for cut in 0..doc.len() {
            variants.push(doc.as_bytes()[..cut].to_vec());
        }
        // Whitespace of every kind around every token; keys escaped, duplicated, empty, missing.
        let spaced = document(&owned)
            .replace(':', " \n: \t")
            .replace(',', "\r\n, ");
        variants.push(spaced.into_bytes());
        for ws in ["\u{c}", "\u{b}", "\u{a0}", "\u{0}"] {
            variants.push(doc.replacen(',', &format!("{ws},"), 1).into_bytes());
            variants.push(doc.replacen(':', &format!(":{ws}"), 1).into_bytes());
        }
        let first = owned[1].0; // event_id
        for key in [
            r#""event\u005fid""#.to_string(),
            r#""\u0065vent_id""#.to_string(),
            r#""event_id ""#.to_string(),
            r#""Event_id""#.to_string(),
            r#""""#.to_string(),
            r#""event_id\u0000""#.to_string(),
            r#""\ud800""#.to_string(),
            "\"event\u{1}_id\"".to_string(),
            "event_id".to_string(),
            "'event_id'".to_string(),
            "1".to_string(),
            "null".to_string(),
        ] {
            variants.push(doc.replacen(&format!("\"{first}\""), &key, 1).into_bytes());
        }
        for (k, v) in &owned {
            // The field twice, with the same and with another value, and absent.
            let field = format!("\"{k}\":{v}");
            variants.push(
                doc.replacen(&field, &format!("{field},{field}"), 1)
                    .into_bytes(),
            );
            variants.push(
                doc.replacen(&field, &format!("{field},\"{k}\":null"), 1)
                    .into_bytes(),
            );
            let without: Vec<(&str, String)> =
                owned.iter().filter(|(n, _)| n != k).cloned().collect();
            variants.push(document(&without).into_bytes());
        }
        // A field with no value or no name; separators doubled or missing.
        variants.push(doc.replacen(",", ",,", 1).into_bytes());
        variants.push(doc.replacen(",", "", 1).into_bytes());
        variants.push(doc.replacen(",", r#","":1,"#, 1).into_bytes());
        variants.push(doc.replacen(",", r#",:1,"#, 1).into_bytes());
        variants.push(doc.replacen(",", r#","y":,"#, 1).into_bytes());
        variants.push(doc.replacen(":", "::", 1).into_bytes());
        variants.push(doc.replacen("{", "{,", 1).into_bytes());
        variants.push(format!("{},}}", &doc[..doc.len() - 1]).into_bytes());
        for bytes in &variants {
            check(kind, bytes);
        }
    }
}

/// A small deterministic generator (xorshift64*): the same mutations on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

#[test]
fn randomly_mutated_documents_decode_as_the_reference_does() {
    // Bytes that matter to a JSON lexer, and a few that do not.
    let alphabet: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"\\u",
        b"\\ud800",
        b"\\udc00",
        b"u",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"0",
        b"1",
        b"9",
        b"-",
        b"+",
        b".",
        b"e",
        b"E",
        b"t",
        b"f",
        b"n",
        b"r",
        b"l",
        b" ",
        b"\t",
        b"\n",
        b"\x00",
        b"\x01",
        b"\x1f",
        b"\x0c",
        b"a",
        b"G",
        b"\"x\":",
        b"null",
        b"1e400",
        "é".as_bytes(),
        "😀".as_bytes(),
    ];
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut accepted = 0;
    for round in 0..30_000 {
        let kind = EventKind::ALL[round % 3];
        let mut owned: Vec<(&str, String)> = fields(kind)
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        // An unknown field too in half the documents, where the fast parser skips rather than reads.
        if rng.below(2) == 0 {
            owned.insert(
                rng.below(owned.len() + 1),
                ("x", r#""u\u0041 \"q\" [1]""#.into()),
            );
        }
        let mut doc = document(&owned).into_bytes();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(doc.len() + 1);
            match rng.below(3) {
                0 => {
                    let piece = alphabet[rng.below(alphabet.len())];
                    doc.splice(at..at, piece.iter().copied());
                }
                1 if at < doc.len() => {
                    doc.remove(at);
                }
                _ if at < doc.len() => {
                    doc[at] = alphabet[rng.below(alphabet.len())][0];
                }
                _ => {}
            }
        }
        accepted += check(kind, &doc);
    }
    assert!(accepted > 1_000, "{accepted} mutated documents accepted");
}

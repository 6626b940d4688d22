//! The Rust side of the shared producer test vectors (`schemas/vectors/events.json`, README beside it):
//! every valid vector decodes and validates, re-encodes to the very JSON the vector holds, carries the
//! vector's record key, and hashes (Kafka murmur2, the `murmur2` crate ingest's routing uses) to the
//! vector's partition; every invalid vector is refused, by the decoder and by the JSON Schema files,
//! with an error naming the vector's `field`. The expected partitions were computed by Kafka's Java
//! client, not by this code.

mod support;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice_schemas::{decode, encode, encode_into, Encoding, EventKind, Limits};
use support::{decode_json, schema};

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/events.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The vector days are 2000-01-01 and 2000-01-02: validate as if it were the morning after.
fn now() -> DateTime<Utc> {
    "2000-01-03T00:00:00Z".parse().unwrap()
}

fn kind(v: &Value) -> EventKind {
    v["kind"].as_str().unwrap().parse().unwrap()
}

fn kafka_partition(key: &[u8], partitions: u32) -> i64 {
    i64::from((murmur2::murmur2(key, murmur2::KAFKA_SEED) & 0x7fff_ffff) % partitions)
}

#[test]
fn the_vectors_cover_all_kinds_and_spread_over_partitions() {
    let v = vectors();
    let valid = v["valid"].as_array().unwrap();
    let invalid = v["invalid"].as_array().unwrap();
    for k in EventKind::ALL {
        assert!(valid.iter().any(|x| kind(x) == k), "no valid {k} vector");
        assert!(
            invalid.iter().any(|x| kind(x) == k),
            "no invalid {k} vector"
        );
    }
    let partitions: std::collections::BTreeSet<i64> = valid
        .iter()
        .map(|x| x["partition"].as_i64().unwrap())
        .collect();
    assert_eq!(partitions.len(), 6, "partitions used: {partitions:?}");
}

#[test]
fn valid_vectors_decode_reencode_key_and_partition_as_the_vectors_say() {
    let v = vectors();
    let partitions = v["partitions"].as_u64().unwrap() as u32;
    for vector in v["valid"].as_array().unwrap() {
        let name = vector["name"].as_str().unwrap();
        let bytes = serde_json::to_vec(&vector["event"]).unwrap();
        let event = decode_json(kind(vector), &bytes, now())
            .unwrap_or_else(|e| panic!("{name}: refused: {e}"));
        let reencoded: Value = serde_json::from_slice(&encode(&event, Encoding::Json)).unwrap();
        assert_eq!(
            reencoded, vector["event"],
            "{name}: the Rust producer writes other JSON"
        );
        let key = event.partition_key();
        assert_eq!(key, vector["key"].as_str().unwrap(), "{name}: key");
        assert_eq!(
            kafka_partition(key.as_bytes(), partitions),
            vector["partition"].as_i64().unwrap(),
            "{name}: partition of {key:?}"
        );
        let errors: Vec<String> = schema(kind(vector))
            .iter_errors(&vector["event"])
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{name}: JSON Schema refuses it: {errors:?}"
        );
    }
}

/// The buffer-reusing forms a producer calls per record: each vector's key and value written over the
/// previous vector's (and, first, over longer leftovers) come out exactly as the vectors say, and the
/// bincode value decodes back to the same event.
#[test]
fn reused_buffers_give_each_vector_its_own_key_and_value() {
    let v = vectors();
    let mut key = "a key left over from a much longer record than any vector".to_owned();
    let mut json =
        br#"{"left_over":"from a much longer record than any of the vectors","n":1234567890}"#
            .repeat(8);
    let mut bin = vec![0xAB; 4096];
    for vector in v["valid"].as_array().unwrap() {
        let name = vector["name"].as_str().unwrap();
        let bytes = serde_json::to_vec(&vector["event"]).unwrap();
        let event = decode_json(kind(vector), &bytes, now()).unwrap();

        event.partition_key_into(&mut key);
        assert_eq!(key, vector["key"].as_str().unwrap(), "{name}: key");

        encode_into(&event, Encoding::Json, &mut json);
        let written: Value = serde_json::from_slice(&json)
            .unwrap_or_else(|e| panic!("{name}: not one JSON value ({e})"));
        assert_eq!(written, vector["event"], "{name}: JSON value");

        encode_into(&event, Encoding::Bincode, &mut bin);
        let back = decode(
            kind(vector),
            Encoding::Bincode,
            &bin,
            &Limits::default(),
            now(),
        )
        .unwrap_or_else(|e| panic!("{name}: bincode value refused: {e}"));
        assert_eq!(back, event, "{name}: bincode value");
        assert_eq!(
            bin,
            encode(&event, Encoding::Bincode),
            "{name}: bincode bytes"
        );
    }
}

#[test]
fn invalid_vectors_are_refused_naming_the_field() {
    let v = vectors();
    for vector in v["invalid"].as_array().unwrap() {
        let name = vector["name"].as_str().unwrap();
        let field = vector["field"].as_str().unwrap();
        let bytes = serde_json::to_vec(&vector["event"]).unwrap();
        let rejection = decode_json(kind(vector), &bytes, now())
            .err()
            .unwrap_or_else(|| panic!("{name}: the decoder accepted it"));
        assert!(
            rejection.detail.contains(field),
            "{name}: rejection does not name {field}: {rejection}"
        );
        // The schema names the field either in the instance path (/position) or, for a missing
        // required one, in the message ("\"position\" is a required property").
        let errors: Vec<String> = schema(kind(vector))
            .iter_errors(&vector["event"])
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.iter().any(|e| e.contains(field)),
            "{name}: JSON Schema errors do not name {field}: {errors:?}"
        );
    }
}

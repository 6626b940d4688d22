//! The error every sink returns. Errors are split by what to do about them: a transient
//! error (connection refused, timeout, deadlock, server restarting) is retried with backoff; a data
//! error (the database refused the content of some rows: a constraint, a value it cannot parse or hold)
//! sends the flush looking for the offending events, which are dead-lettered while the rest commits
//! (`flush`); a permanent one (schema mismatch, bad SQL, missing privilege) is not retried, because
//! retrying cannot fix it. Every error keeps the database's own code (SQLSTATE or ClickHouse error code)
//! next to its message, which is redacted (no password of a connection string).

/// What to do about a sink error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Infrastructure trouble that may pass: retry with backoff.
    Transient,
    /// Configuration or schema trouble: retrying cannot help, ingest stops.
    Permanent,
    /// The database refused the content of the rows: isolate the events that cause it.
    Data,
}

impl ErrorClass {
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Data => "data",
        }
    }
}

/// A sink failure, classified for the retry policy, with the database's error code when it gave one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{sink}: {} error{}: {message}", class.label(), code.as_ref().map(|c| format!(" {c}")).unwrap_or_default())]
pub struct SinkError {
    pub sink: &'static str,
    pub class: ErrorClass,
    /// PostgreSQL SQLSTATE (`23514`), ClickHouse error code (`6`), or a Kafka error name.
    pub code: Option<String>,
    /// The database's message, redacted.
    pub message: String,
}

impl SinkError {
    /// An error of `sink` of the given class.
    pub fn new(
        sink: &'static str,
        class: ErrorClass,
        code: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        SinkError {
            sink,
            class,
            code,
            message: message.into(),
        }
    }

    pub fn transient(sink: &'static str, message: impl Into<String>) -> Self {
        Self::new(sink, ErrorClass::Transient, None, message)
    }

    pub fn permanent(sink: &'static str, message: impl Into<String>) -> Self {
        Self::new(sink, ErrorClass::Permanent, None, message)
    }

    pub fn is_transient(&self) -> bool {
        self.class == ErrorClass::Transient
    }

    pub fn is_data(&self) -> bool {
        self.class == ErrorClass::Data
    }

    pub fn sink(&self) -> &'static str {
        self.sink
    }

    /// The dead-letter detail of an event this error refused: sink, code and message.
    pub fn detail(&self) -> String {
        format!(
            "{} refused the event: code {}: {}",
            self.sink,
            self.code.as_deref().unwrap_or("none"),
            self.message
        )
    }
}

/// The class of a PostgreSQL error by its SQLSTATE: 22 (data exception: out of range, invalid text,
/// NUL byte…), 23 (integrity constraint violation: CHECK, NOT NULL, unique, foreign key) and 54
/// (program limit exceeded: index row too large, too many columns) are the content of the rows; 08
/// (connection), 40001/40P01 (serialization failure, deadlock), 53 (insufficient resources), 57P
/// (admin/crash shutdown, cannot connect now) and 25006 (read-only transaction: a standby whose
/// promotion has not finished, reached through a pooler re-pointed at it during a failover) are
/// transient; anything else (42 syntax or missing table,
/// 28 authorization…) is permanent.
pub fn postgres_class(sqlstate: &str) -> ErrorClass {
    let class = sqlstate.get(..2).unwrap_or("");
    if matches!(class, "22" | "23" | "54") {
        ErrorClass::Data
    } else if class == "08"
        || class == "53"
        || sqlstate == "40001"
        || sqlstate == "40P01"
        || sqlstate == "25006"
        || sqlstate.starts_with("57P")
    {
        ErrorClass::Transient
    } else {
        ErrorClass::Permanent
    }
}

/// ClickHouse error codes (src/Common/ErrorCodes.cpp) that mean the server could not take the content
/// of a row: CANNOT_PARSE_TEXT (6), CANNOT_PARSE_ESCAPE_SEQUENCE (25), CANNOT_PARSE_QUOTED_STRING (26),
/// CANNOT_PARSE_INPUT_ASSERTION_FAILED (27), CANNOT_PARSE_DATE (38), CANNOT_PARSE_DATETIME (41),
/// ARGUMENT_OUT_OF_BOUND (69), CANNOT_CONVERT_TYPE (70), CANNOT_PARSE_NUMBER (72), INCORRECT_DATA (117),
/// TOO_LARGE_STRING_SIZE (131), VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE (321),
/// CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN (349), CANNOT_PARSE_UUID (376),
/// FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (395), DECIMAL_OVERFLOW (407), CANNOT_PARSE_BOOL (467),
/// VIOLATED_CONSTRAINT (469).
pub const CLICKHOUSE_DATA_CODES: &[u32] = &[
    6, 25, 26, 27, 38, 41, 69, 70, 72, 117, 131, 321, 349, 376, 395, 407, 467, 469,
];

/// ClickHouse error codes worth retrying: TIMEOUT_EXCEEDED (159), TOO_MANY_SIMULTANEOUS_QUERIES (202),
/// SOCKET_TIMEOUT (209), NETWORK_ERROR (210), MEMORY_LIMIT_EXCEEDED (241), TABLE_IS_READ_ONLY (242,
/// during a restart, or a replica that lost ZooKeeper), TOO_MANY_PARTS (252), and those of a replicated
/// table whose ZooKeeper is away: NO_ZOOKEEPER (225), UNEXPECTED_ZOOKEEPER_ERROR (244: 18.16's answer
/// when the ZooKeeper session expires while a block is being committed — "Unrecoverable network error
/// while adding block …: Session expired"; the server rolls the part back, so the same block again is
/// a fresh insert), UNKNOWN_STATUS_OF_INSERT (319: the insert may or may not have landed — the same
/// blocks again are deduplicated), KEEPER_EXCEPTION (999: connection loss, session expired).
pub const CLICKHOUSE_TRANSIENT_CODES: &[u32] =
    &[159, 202, 209, 210, 225, 241, 242, 244, 252, 319, 999];

/// The class of a ClickHouse server error by its code.
pub fn clickhouse_class(code: u32) -> ErrorClass {
    if CLICKHOUSE_DATA_CODES.contains(&code) {
        ErrorClass::Data
    } else if CLICKHOUSE_TRANSIENT_CODES.contains(&code) {
        ErrorClass::Transient
    } else {
        ErrorClass::Permanent
    }
}

/// The error code in a ClickHouse exception text: `Code: 6, e.displayText() = …` (18.16) or
/// `Code: 6. DB::Exception: …` (current releases).
pub fn clickhouse_code(message: &str) -> Option<u32> {
    let at = message.find("Code: ")? + "Code: ".len();
    let digits: String = message[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Masks anything that looks like a password in a connection string inside an error message.
pub fn redact(text: &str) -> String {
    // postgres://user:secret@host → postgres://user:***@host
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme + 3);
        out.push_str(head);
        // ',' ends one URL of a list (clickhouse_url's replicas).
        let authority_end = tail.find(['/', ' ', '?', '"', ',']).unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

pub type Result<T, E = SinkError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_postgres_sqlstates() {
        let cases: [(ErrorClass, &[&str]); 3] = [
            // Content: CHECK violation, not-null, unique, out of range, NUL in text, index row too large.
            (
                ErrorClass::Data,
                &[
                    "23514", "23502", "23505", "22003", "22021", "22P05", "54000",
                ],
            ),
            // Infrastructure that passes: connection, deadlock, serialization, no space, shutdown, and
            // a server still in recovery (a standby being promoted: read-only transactions until then).
            (
                ErrorClass::Transient,
                &[
                    "08006", "08001", "40P01", "40001", "53100", "53300", "57P01", "57P03", "25006",
                ],
            ),
            // Configuration: undefined table/column, privilege, syntax, authentication; other 40/57.
            (
                ErrorClass::Permanent,
                &[
                    "42P01", "42703", "42501", "42601", "28P01", "40002", "57014", "",
                ],
            ),
        ];
        for (class, sqlstates) in cases {
            for sqlstate in sqlstates {
                assert_eq!(postgres_class(sqlstate), class, "{sqlstate}");
            }
        }
    }

    #[test]
    fn classifies_clickhouse_codes() {
        // 18.16's text for a view that cannot parse a value, and a current release's.
        let old = "bad response: Code: 6, e.displayText() = DB::Exception: Cannot parse string 'xx' as UInt32";
        let new = "Code: 321. DB::Exception: Value 300 is out of range of UInt8. (VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE)";
        assert_eq!(clickhouse_code(old), Some(6));
        assert_eq!(clickhouse_code(new), Some(321));
        assert_eq!(clickhouse_code("connection reset"), None);
        let cases: [(ErrorClass, &[u32]); 3] = [
            (
                ErrorClass::Data,
                &[6, 27, 38, 41, 69, 72, 117, 131, 321, 349, 395, 407, 469],
            ),
            (
                ErrorClass::Transient,
                &[159, 202, 209, 210, 225, 241, 242, 244, 252, 319, 999],
            ),
            // Unknown table (60), unknown database (81), authentication (516), no such column (16),
            // type mismatch of the schema (53), syntax (62).
            (ErrorClass::Permanent, &[60, 81, 516, 16, 53, 62]),
        ];
        for (class, codes) in cases {
            for &code in codes {
                assert_eq!(clickhouse_class(code), class, "{code}");
            }
        }
    }

    #[test]
    fn the_message_names_class_and_code() {
        let e = SinkError::new(
            "postgres",
            ErrorClass::Data,
            Some("23514".into()),
            "violates check",
        );
        assert_eq!(e.to_string(), "postgres: data error 23514: violates check");
        assert_eq!(
            e.detail(),
            "postgres refused the event: code 23514: violates check"
        );
        assert_eq!(
            SinkError::transient("dead_letter", "timed out").to_string(),
            "dead_letter: transient error: timed out"
        );
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact("error connecting to postgres://sluice:s3cret@127.0.0.1:5432/sluice now"),
            "error connecting to postgres://sluice:***@127.0.0.1:5432/sluice now"
        );
        assert_eq!(
            redact("http://127.0.0.1:8123/ ok"),
            "http://127.0.0.1:8123/ ok"
        );
        assert_eq!(redact("no url here"), "no url here");
        // A list of replica URLs (clickhouse_url) hides every password.
        assert_eq!(
            redact("https://u:s3cret@a:18443,https://u:s3cret@b:28443"),
            "https://u:***@a:18443,https://u:***@b:28443"
        );
    }
}

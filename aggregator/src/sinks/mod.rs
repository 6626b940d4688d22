//! The two sinks and the error type they share. Errors are split by what to do about them: a transient
//! error (connection refused, timeout, deadlock, server restarting) is retried with backoff; a permanent
//! one (schema mismatch, bad SQL) is not, because retrying cannot fix it.

pub mod clickhouse;
pub mod dead_letter;
pub mod postgres;

/// A sink failure, classified for the retry policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    #[error("{sink}: transient error: {message}")]
    Transient { sink: &'static str, message: String },
    #[error("{sink}: permanent error: {message}")]
    Permanent { sink: &'static str, message: String },
}

impl SinkError {
    /// A transient or permanent error of `sink`.
    pub fn new(sink: &'static str, transient: bool, message: String) -> Self {
        if transient {
            SinkError::Transient { sink, message }
        } else {
            SinkError::Permanent { sink, message }
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient { .. })
    }

    pub fn sink(&self) -> &'static str {
        match self {
            SinkError::Transient { sink, .. } | SinkError::Permanent { sink, .. } => sink,
        }
    }
}

pub type Result<T, E = SinkError> = std::result::Result<T, E>;

//! Field rules applied to every decoded event before it may touch an aggregate: required text is
//! non-empty, lengths are bounded ([`Limits`]), no text holds U+0000 (PostgreSQL `text` cannot), numbers
//! are in range, crawl URLs are absolute http(s) URLs with a host, and `occurred_at` lies within a window
//! around now. Failures name the field.
//!
//! The rules are chosen so that both databases can store every event that passes them: every number fits
//! its ClickHouse column (`UInt8`/`UInt16`/`UInt32`/`UInt64`, `DateTime` from 1970 to 2106) and its
//! PostgreSQL one, no sum of accepted values can wrap (docs/events.md gives the bound per column), and
//! [`Limits::check`] refuses lengths that would let an aggregate's primary key exceed PostgreSQL's B-tree
//! entry limit.

use chrono::{DateTime, TimeDelta, Utc};

use crate::codec::{RejectReason, Rejection};
use crate::event::Event;

/// Bounds on what a record may contain. Defaults suit SEO and click traffic; all are configurable.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Whole record value, in bytes.
    pub max_record_bytes: usize,
    /// Identifiers: event_id, tenant_id, campaign_id, short_code, visitor_id.
    pub max_id_len: usize,
    /// Short labels: geo, engine, device, country.
    pub max_label_len: usize,
    /// Free text: keyword, url, referrer, user_agent, content_hash.
    pub max_text_len: usize,
    /// How far before now `occurred_at` may be.
    pub max_past: TimeDelta,
    /// How far after now `occurred_at` may be (clock skew).
    pub max_future: TimeDelta,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: 64 * 1024,
            max_id_len: 128,
            max_label_len: 64,
            max_text_len: 2048,
            max_past: TimeDelta::days(366),
            max_future: TimeDelta::hours(1),
        }
    }
}

/// The most key text bytes an aggregate's primary key may hold for PostgreSQL to index it whatever the
/// bytes are. A B-tree entry may be at most 2704 bytes with 8 kB pages (`BTMaxItemSize`, "index row size
/// … exceeds btree version 4 maximum 2704"); an entry is an 8-byte header, then per text column up to 3
/// bytes of alignment and a 4-byte length header, the 4- or 8-byte day or hour, all rounded up to 8.
/// For `rank_daily`'s seven columns that is at most 8 + 6 × 7 + 7 + 7 = 64 bytes besides the text, so
/// 2704 − 64 = 2640 bytes of text always fit, even where compression cannot help (random bytes).
/// `consumers/tests/it/boundaries.rs` inserts keys of exactly this many random bytes.
pub const PG_KEY_TEXT_BYTES: usize = 2640;

/// The widest `max_past` [`Limits::check`] accepts: ten years, so that accepted event times stay well
/// inside ClickHouse's `DateTime` (1970-01-01 to 2106-02-07 UTC).
pub const MAX_PAST_LIMIT: TimeDelta = TimeDelta::days(3650);

/// The widest `max_future` [`Limits::check`] accepts: 366 days (ten years ahead would still fit
/// ClickHouse `DateTime`; a year is already far beyond any clock skew).
pub const MAX_FUTURE_LIMIT: TimeDelta = TimeDelta::days(366);

/// First and last second ClickHouse's `DateTime` (a `UInt32` of Unix seconds) can hold.
const CLICKHOUSE_DATETIME_SECS: (i64, i64) = (0, u32::MAX as i64);

impl Limits {
    /// Refuses limits under which a validated event could still be refused by a database: a length of
    /// zero, key lengths that add up past [`PG_KEY_TEXT_BYTES`], or a time window wider than
    /// [`MAX_PAST_LIMIT`] / [`MAX_FUTURE_LIMIT`]. The error names the limit and the accepted range.
    pub fn check(&self) -> Result<(), String> {
        if self.max_record_bytes == 0 {
            return Err("max_record_bytes must be at least 1".into());
        }
        for (name, value) in [
            ("max_id_len", self.max_id_len),
            ("max_label_len", self.max_label_len),
            ("max_text_len", self.max_text_len),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        // rank_daily (tenant_id, campaign_id, keyword, geo, engine, device, day) is the widest key;
        // crawl_hourly (tenant_id, campaign_id, domain, hour) has a domain no longer than its url.
        let rank_key = self
            .max_id_len
            .saturating_mul(2)
            .saturating_add(self.max_text_len)
            .saturating_add(self.max_label_len.saturating_mul(3));
        if rank_key > PG_KEY_TEXT_BYTES {
            return Err(format!(
                "2 × max_id_len ({}) + max_text_len ({}) + 3 × max_label_len ({}) = {rank_key} bytes: \
                 the rank_daily primary key (tenant_id, campaign_id, keyword, geo, engine, device) must \
                 fit PostgreSQL's B-tree entry, so this sum must be at most {PG_KEY_TEXT_BYTES}",
                self.max_id_len, self.max_text_len, self.max_label_len
            ));
        }
        if self.max_past < TimeDelta::zero() || self.max_past > MAX_PAST_LIMIT {
            return Err(format!(
                "max_past ({} hours) must be between 0 and {} hours",
                self.max_past.num_hours(),
                MAX_PAST_LIMIT.num_hours()
            ));
        }
        if self.max_future < TimeDelta::zero() || self.max_future > MAX_FUTURE_LIMIT {
            return Err(format!(
                "max_future ({} minutes) must be between 0 and {} minutes",
                self.max_future.num_minutes(),
                MAX_FUTURE_LIMIT.num_minutes()
            ));
        }
        Ok(())
    }
}

/// The host of a crawl URL, lowercased: the `domain` of crawl aggregates. `None` if the URL is not an
/// absolute http(s) URL with a host.
pub fn crawl_domain(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    parsed.host_str().map(|h| h.to_ascii_lowercase())
}

pub(crate) fn validate(
    event: &Event,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    let v = Checker { limits };
    v.id("event_id", event.event_id())?;
    v.id("tenant_id", event.tenant_id())?;
    let at = event.occurred_at();
    let secs = at.timestamp();
    if at < now - limits.max_past
        || at > now + limits.max_future
        || secs < CLICKHOUSE_DATETIME_SECS.0
        || secs > CLICKHOUSE_DATETIME_SECS.1
    {
        return Err(Rejection::new(
            RejectReason::TimestampOutOfRange,
            format!(
                "occurred_at {} is outside [now - {}s, now + {}s]",
                at.to_rfc3339(),
                limits.max_past.num_seconds(),
                limits.max_future.num_seconds()
            ),
        ));
    }
    match event {
        Event::Rank(e) => {
            v.id("campaign_id", &e.campaign_id)?;
            v.text("keyword", &e.keyword, limits.max_text_len, true)?;
            v.text("geo", &e.geo, limits.max_label_len, true)?;
            v.text("engine", &e.engine, limits.max_label_len, true)?;
            v.text("device", &e.device, limits.max_label_len, true)?;
            if let Some(url) = &e.url {
                v.text("url", url, limits.max_text_len, false)?;
            }
            if let Some(p) = e.position {
                range("position", i64::from(p), 1, 100)?;
            }
        }
        Event::Crawl(e) => {
            v.id("campaign_id", &e.campaign_id)?;
            v.text("url", &e.url, limits.max_text_len, true)?;
            if crawl_domain(&e.url).is_none() {
                return Err(Rejection::new(
                    RejectReason::InvalidField,
                    format!("url {:?} is not an absolute http(s) URL with a host", e.url),
                ));
            }
            range("status_code", i64::from(e.status_code), 100, 599)?;
            range("fetch_ms", e.fetch_ms, 0, i64::from(u32::MAX))?;
            range("bytes", e.bytes, 0, i64::from(u32::MAX))?;
            if let Some(h) = &e.content_hash {
                v.text("content_hash", h, limits.max_text_len, false)?;
            }
        }
        Event::Click(e) => {
            v.id("short_code", &e.short_code)?;
            for (name, value, max) in [
                ("referrer", &e.referrer, limits.max_text_len),
                ("country", &e.country, limits.max_label_len),
                ("user_agent", &e.user_agent, limits.max_text_len),
                ("visitor_id", &e.visitor_id, limits.max_id_len),
            ] {
                if let Some(value) = value {
                    v.text(name, value, max, false)?;
                }
            }
        }
    }
    Ok(())
}

struct Checker<'a> {
    limits: &'a Limits,
}

impl Checker<'_> {
    fn id(&self, field: &str, value: &str) -> Result<(), Rejection> {
        self.text(field, value, self.limits.max_id_len, true)
    }

    fn text(&self, field: &str, value: &str, max: usize, required: bool) -> Result<(), Rejection> {
        if required && value.is_empty() {
            return Err(Rejection::new(
                RejectReason::InvalidField,
                format!("{field} must not be empty"),
            ));
        }
        if value.len() > max {
            return Err(Rejection::new(
                RejectReason::Oversized,
                format!("{field} is {} bytes, the limit is {max}", value.len()),
            ));
        }
        // PostgreSQL text cannot hold U+0000; every other character is stored as sent.
        if let Some(at) = value.find('\0') {
            return Err(Rejection::new(
                RejectReason::InvalidField,
                format!("{field} contains U+0000 (NUL) at byte {at}, which PostgreSQL text cannot store"),
            ));
        }
        Ok(())
    }
}

fn range(field: &str, value: i64, min: i64, max: i64) -> Result<(), Rejection> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Rejection::new(
            RejectReason::InvalidField,
            format!("{field}={value} is outside {min}..={max}"),
        ))
    }
}

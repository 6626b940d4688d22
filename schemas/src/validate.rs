//! Field rules applied to every decoded event before it may touch an aggregate: required text is
//! non-empty, lengths are bounded ([`Limits`]), numbers are in range, crawl URLs are absolute http(s)
//! URLs with a host, and `occurred_at` lies within a window around now. Failures name the field.

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
    if at < now - limits.max_past || at > now + limits.max_future {
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
            range("bytes", e.bytes, 0, i64::MAX)?;
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

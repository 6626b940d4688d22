//! The three event types, the enum that carries any of them, and the two derived facts every consumer
//! needs: which topic a kind travels on by default and which record key keeps an entity's events in order
//! on one partition. Field order matters: bincode writes fields in declaration order, and
//! `schema_version` comes first so that a decoder can tell an unknown version from a corrupt record.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// The only schema version this build understands.
pub const SCHEMA_VERSION: u32 = 1;

/// A keyword position check by a rank tracker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankEvent {
    pub schema_version: u32,
    /// Idempotency key chosen by the producer: the same check re-sent carries the same id.
    pub event_id: String,
    pub tenant_id: String,
    #[serde(with = "crate::time")]
    pub occurred_at: DateTime<Utc>,
    pub campaign_id: String,
    pub keyword: String,
    pub geo: String,
    pub engine: String,
    pub device: String,
    /// The ranking URL, when the check found one.
    #[serde(default)]
    pub url: Option<String>,
    /// 1–100, or `null` when the keyword did not rank. Required in JSON (explicit `null`).
    #[serde(deserialize_with = "required_nullable")]
    pub position: Option<i32>,
}

/// One page fetch by a crawler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlEvent {
    pub schema_version: u32,
    pub event_id: String,
    pub tenant_id: String,
    #[serde(with = "crate::time")]
    pub occurred_at: DateTime<Utc>,
    pub campaign_id: String,
    /// Absolute http(s) URL; its lowercased host is the `domain` of the crawl aggregates.
    pub url: String,
    pub status_code: i32,
    pub fetch_ms: i64,
    pub bytes: i64,
    #[serde(default)]
    pub content_hash: Option<String>,
}

/// One click on a short link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickEvent {
    pub schema_version: u32,
    pub event_id: String,
    pub tenant_id: String,
    #[serde(with = "crate::time")]
    pub occurred_at: DateTime<Utc>,
    pub short_code: String,
    #[serde(default)]
    pub referrer: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub visitor_id: Option<String>,
}

/// Which of the three event types a record carries. The topic tells, not the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Rank,
    Crawl,
    Click,
}

impl EventKind {
    pub const ALL: [EventKind; 3] = [EventKind::Rank, EventKind::Crawl, EventKind::Click];

    /// Lowercase name, used in metric labels, CLI flags and the NDJSON `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Rank => "rank",
            EventKind::Crawl => "crawl",
            EventKind::Click => "click",
        }
    }

    /// The default topic of this kind (configurable everywhere it is used).
    pub fn default_topic(self) -> &'static str {
        match self {
            EventKind::Rank => "rank-events",
            EventKind::Crawl => "crawl-events",
            EventKind::Click => "click-events",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rank" => Ok(EventKind::Rank),
            "crawl" => Ok(EventKind::Crawl),
            "click" => Ok(EventKind::Click),
            other => Err(format!(
                "unknown event kind {other:?}; accepted: rank, crawl, click"
            )),
        }
    }
}

/// Any event. Serialized as the bare inner object: the topic names the kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Rank(RankEvent),
    Crawl(CrawlEvent),
    Click(ClickEvent),
}

/// The `rank_daily` primary key as a tuple: tenant, campaign, keyword, geo, engine, device, UTC day.
pub type RankDailyTuple = (String, String, String, String, String, String, NaiveDate);

impl RankEvent {
    /// The `rank_daily` row this check folds into (docs/events.md, "Aggregates"), for code that checks
    /// the aggregates independently of the aggregator (tests, the load verifier).
    pub fn rank_daily_key(&self) -> RankDailyTuple {
        let text = [
            &self.tenant_id,
            &self.campaign_id,
            &self.keyword,
            &self.geo,
            &self.engine,
        ];
        let [tenant, campaign, keyword, geo, engine] = text.map(String::clone);
        let day = self.occurred_at.date_naive();
        (
            tenant,
            campaign,
            keyword,
            geo,
            engine,
            self.device.clone(),
            day,
        )
    }
}

impl ClickEvent {
    /// The `click_daily` row this click counts in (tenant, short code, UTC day), for the independent
    /// checks of the aggregates.
    pub fn click_daily_key(&self) -> (String, String, NaiveDate) {
        let day = self.occurred_at.date_naive();
        (self.tenant_id.clone(), self.short_code.clone(), day)
    }

    /// A click of the current schema version with only the required fields (referrer, country, user
    /// agent and visitor `None`).
    pub fn new(
        event_id: impl Into<String>,
        tenant_id: impl Into<String>,
        occurred_at: DateTime<Utc>,
        short_code: impl Into<String>,
    ) -> Self {
        ClickEvent {
            schema_version: SCHEMA_VERSION,
            event_id: event_id.into(),
            tenant_id: tenant_id.into(),
            occurred_at,
            short_code: short_code.into(),
            referrer: None,
            country: None,
            user_agent: None,
            visitor_id: None,
        }
    }
}

/// `$body` with `$e` bound to the inner event, whatever its kind (for the fields every kind has).
macro_rules! each_kind {
    ($event:expr, $e:ident => $body:expr) => {
        match $event {
            Event::Rank($e) => $body,
            Event::Crawl($e) => $body,
            Event::Click($e) => $body,
        }
    };
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Rank(_) => EventKind::Rank,
            Event::Crawl(_) => EventKind::Crawl,
            Event::Click(_) => EventKind::Click,
        }
    }

    pub fn event_id(&self) -> &str {
        each_kind!(self, e => &e.event_id)
    }

    pub fn tenant_id(&self) -> &str {
        each_kind!(self, e => &e.tenant_id)
    }

    pub fn occurred_at(&self) -> DateTime<Utc> {
        each_kind!(self, e => e.occurred_at)
    }

    pub fn schema_version(&self) -> u32 {
        each_kind!(self, e => e.schema_version)
    }

    /// The entity whose events must stay in order: the campaign for rank and crawl, the link for clicks.
    pub fn entity(&self) -> &str {
        match self {
            Event::Rank(e) => &e.campaign_id,
            Event::Crawl(e) => &e.campaign_id,
            Event::Click(e) => &e.short_code,
        }
    }

    /// The Kafka record key: `"{tenant_id}/{entity}"`. Kafka hashes it to pick the partition, so one
    /// tenant's campaign (or link) always lands on one partition, and a re-sent event on the same one.
    pub fn partition_key(&self) -> String {
        partition_key(self.tenant_id(), self.entity())
    }

    /// [`Event::partition_key`] written into `out` (cleared first), for a producer that reuses one
    /// buffer for every record instead of allocating a key per event.
    pub fn partition_key_into(&self, out: &mut String) {
        out.clear();
        push_partition_key(out, self.tenant_id(), self.entity());
    }
}

/// The record key for a tenant's entity; see [`Event::partition_key`].
pub fn partition_key(tenant_id: &str, entity: &str) -> String {
    let mut key = String::with_capacity(tenant_id.len() + 1 + entity.len());
    push_partition_key(&mut key, tenant_id, entity);
    key
}

fn push_partition_key(out: &mut String, tenant_id: &str, entity: &str) {
    out.push_str(tenant_id);
    out.push('/');
    out.push_str(entity);
}

/// Whether `key` is exactly [`partition_key`]`(tenant_id, entity)`, compared in place (ingest checks
/// every record's key with it, so it allocates nothing).
pub fn is_partition_key(key: &[u8], tenant_id: &str, entity: &str) -> bool {
    let (t, e) = (tenant_id.as_bytes(), entity.as_bytes());
    key.len() == t.len() + 1 + e.len()
        && key.starts_with(t)
        && key[t.len()] == b'/'
        && key.ends_with(e)
}

/// A field that must be present but may be `null` (serde treats a bare `Option` as optional).
fn required_nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

//! Aggregate rows and their merge rules. These are the semantics promised to product APIs:
//!
//! - `click_daily (tenant_id, short_code, day)` → `clicks`: a sum.
//! - `rank_daily (tenant_id, campaign_id, keyword, geo, engine, device, day)` → `last_position` follows
//!   the check with the greatest `(occurred_at, event_id)` (the id breaks ties so that the result does not
//!   depend on arrival order), `best_position` = min of non-null positions, `worst_position` = max of
//!   non-null positions, `checks` counts every check, ranked or not.
//! - `crawl_hourly (tenant_id, campaign_id, domain, hour)` → `pages`, per-class status counts, fetch-time
//!   sum and max, byte sum. `domain` is the URL host, lowercased; status 1xx counts only as a page.
//!
//! Day and hour are UTC buckets of `occurred_at`. Every merge is associative and commutative, so partial
//! aggregates from any split of the events combine to the same row — PostgreSQL applies the same rules in
//! its `ON CONFLICT` clauses.
//!
//! Sums never wrap. Validation bounds `fetch_ms` and `bytes` to 0..=4294967295, so an `i64` sum
//! overflows only after 2^31 events of the maximum in one row; in memory that is one batch, which the
//! buffer budget flushes long before (a crawl event counts at least 192 bytes of it: 2^31 of them would
//! be over 412 GB), and in PostgreSQL `bigint` addition raises SQLSTATE 22003 instead of wrapping.
//! The in-memory additions are checked all the same ([`add`]): release builds do not check `+`, and a
//! wrapped sum would be stored as if it were true.

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};

/// The UTC calendar day of an instant.
pub fn day_of(ts: DateTime<Utc>) -> NaiveDate {
    ts.date_naive()
}

/// The start of the UTC hour of an instant.
pub fn hour_of(ts: DateTime<Utc>) -> DateTime<Utc> {
    ts.duration_trunc(TimeDelta::hours(1)).unwrap_or(ts)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankDaily {
    pub last_position: Option<i16>,
    pub last_occurred_at: DateTime<Utc>,
    pub last_event_id: String,
    pub best_position: Option<i16>,
    pub worst_position: Option<i16>,
    pub checks: i64,
}

impl RankDaily {
    pub fn single(position: Option<i16>, occurred_at: DateTime<Utc>, event_id: &str) -> Self {
        RankDaily {
            last_position: position,
            last_occurred_at: occurred_at,
            last_event_id: event_id.to_owned(),
            best_position: position,
            worst_position: position,
            checks: 1,
        }
    }

    /// Folds one more check into the row.
    pub fn add(&mut self, position: Option<i16>, occurred_at: DateTime<Utc>, event_id: &str) {
        self.checks = add(self.checks, 1, "rank_daily.checks");
        self.best_position = min_opt(self.best_position, position);
        self.worst_position = max_opt(self.worst_position, position);
        if (occurred_at, event_id) > (self.last_occurred_at, self.last_event_id.as_str()) {
            self.last_position = position;
            self.last_occurred_at = occurred_at;
            event_id.clone_into(&mut self.last_event_id);
        }
    }

    /// Merges another partial aggregate of the same key.
    pub fn merge(&mut self, other: &RankDaily) {
        self.checks = add(self.checks, other.checks, "rank_daily.checks");
        self.best_position = min_opt(self.best_position, other.best_position);
        self.worst_position = max_opt(self.worst_position, other.worst_position);
        if (other.last_occurred_at, other.last_event_id.as_str())
            > (self.last_occurred_at, self.last_event_id.as_str())
        {
            self.last_position = other.last_position;
            self.last_occurred_at = other.last_occurred_at;
            self.last_event_id.clone_from(&other.last_event_id);
        }
    }
}

/// An aggregate key (the primary key of its table): the owned key a batch's map holds and a borrowed
/// view (`…Ref`) for looking a row up without cloning its strings — a batch clones a key only when its
/// row is new. Text fields first, then the time bucket, in the table key's order. The view hashes
/// exactly as the owned key does (same fields, same order, `&str` hashes as `String`), which
/// `borrowed_keys_hash_and_compare_like_owned` checks.
macro_rules! aggregate_key {
    ($name:ident, $view:ident { $($text:ident),+ ; $time:ident: $time_ty:ty }) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name {
            $(pub $text: String,)+
            pub $time: $time_ty,
        }

        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) struct $view<'a> {
            $(pub $text: &'a str,)+
            pub $time: $time_ty,
        }

        impl hashbrown::Equivalent<$name> for $view<'_> {
            fn equivalent(&self, k: &$name) -> bool {
                // The time bucket first: the cheapest comparison.
                self.$time == k.$time $(&& self.$text == k.$text)+
            }
        }

        impl From<&$view<'_>> for $name {
            fn from(k: &$view<'_>) -> Self {
                $name {
                    $($text: k.$text.to_owned(),)+
                    $time: k.$time,
                }
            }
        }
    };
}

aggregate_key!(ClickDailyKey, ClickDailyKeyRef { tenant_id, short_code; day: NaiveDate });
aggregate_key!(RankDailyKey, RankDailyKeyRef {
    tenant_id, campaign_id, keyword, geo, engine, device; day: NaiveDate
});
aggregate_key!(CrawlHourlyKey, CrawlHourlyKeyRef {
    tenant_id, campaign_id, domain; hour: DateTime<Utc>
});

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrawlHourly {
    pub pages: i64,
    pub status_2xx: i64,
    pub status_3xx: i64,
    pub status_4xx: i64,
    pub status_5xx: i64,
    pub fetch_ms_sum: i64,
    pub fetch_ms_max: i64,
    pub bytes_sum: i64,
}

impl CrawlHourly {
    /// The values in `crawl_hourly`'s column order: pages, status_2xx … status_5xx, fetch_ms_sum,
    /// fetch_ms_max, bytes_sum.
    pub fn columns(&self) -> [i64; 8] {
        [
            self.pages,
            self.status_2xx,
            self.status_3xx,
            self.status_4xx,
            self.status_5xx,
            self.fetch_ms_sum,
            self.fetch_ms_max,
            self.bytes_sum,
        ]
    }

    pub fn add(&mut self, status_code: i32, fetch_ms: i64, bytes: i64) {
        let mut one = CrawlHourly {
            pages: 1,
            fetch_ms_sum: fetch_ms,
            fetch_ms_max: fetch_ms,
            bytes_sum: bytes,
            ..CrawlHourly::default()
        };
        match status_code / 100 {
            2 => one.status_2xx = 1,
            3 => one.status_3xx = 1,
            4 => one.status_4xx = 1,
            5 => one.status_5xx = 1,
            _ => {}
        }
        self.merge(&one);
    }

    pub fn merge(&mut self, o: &CrawlHourly) {
        self.pages = add(self.pages, o.pages, "crawl_hourly.pages");
        self.status_2xx = add(self.status_2xx, o.status_2xx, "crawl_hourly.status_2xx");
        self.status_3xx = add(self.status_3xx, o.status_3xx, "crawl_hourly.status_3xx");
        self.status_4xx = add(self.status_4xx, o.status_4xx, "crawl_hourly.status_4xx");
        self.status_5xx = add(self.status_5xx, o.status_5xx, "crawl_hourly.status_5xx");
        self.fetch_ms_sum = add(
            self.fetch_ms_sum,
            o.fetch_ms_sum,
            "crawl_hourly.fetch_ms_sum",
        );
        self.fetch_ms_max = self.fetch_ms_max.max(o.fetch_ms_max);
        self.bytes_sum = add(self.bytes_sum, o.bytes_sum, "crawl_hourly.bytes_sum");
    }
}

/// `a + b` for an aggregate `column`. Overflow is out of reach (see the module documentation); should
/// it happen anyway, ingest stops with the column named instead of storing a wrapped sum.
pub fn add(a: i64, b: i64, column: &str) -> i64 {
    a.checked_add(b).unwrap_or_else(|| {
        panic!("aggregate {column} overflows i64 ({a} + {b}): refusing to store a wrapped sum")
    })
}

fn min_opt(a: Option<i16>, b: Option<i16>) -> Option<i16> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn max_opt(a: Option<i16>, b: Option<i16>) -> Option<i16> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// `view` hashes like `owned`, compares equal to it and converts to it; `other` (one field moved
    /// or changed) does not compare equal.
    fn same_row<K, V>(owned: &K, view: V, other: V)
    where
        K: std::hash::Hash + Eq + std::fmt::Debug + for<'a> From<&'a V>,
        V: std::hash::Hash + hashbrown::Equivalent<K>,
    {
        use std::hash::BuildHasher;
        let state = hashbrown::DefaultHashBuilder::default();
        assert_eq!(state.hash_one(owned), state.hash_one(&view));
        assert!(view.equivalent(owned));
        assert_eq!(&K::from(&view), owned);
        assert!(!other.equivalent(owned));
    }

    #[test]
    fn borrowed_keys_hash_and_compare_like_owned() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let click = ClickDailyKey {
            tenant_id: "t1".into(),
            short_code: "abc".into(),
            day,
        };
        let click_ref = ClickDailyKeyRef {
            tenant_id: "t1",
            short_code: "abc",
            day,
        };
        // Moving a byte between fields changes both the hash input and the equality.
        let shifted = ClickDailyKeyRef {
            tenant_id: "t1a",
            short_code: "bc",
            day,
        };
        same_row(&click, click_ref, shifted);

        let rank = RankDailyKey {
            tenant_id: "t".into(),
            campaign_id: "c".into(),
            keyword: "k w".into(),
            geo: "us".into(),
            engine: "google".into(),
            device: "mobile".into(),
            day,
        };
        let rank_ref = RankDailyKeyRef {
            tenant_id: "t",
            campaign_id: "c",
            keyword: "k w",
            geo: "us",
            engine: "google",
            device: "mobile",
            day,
        };
        let other_device = RankDailyKeyRef {
            device: "desktop",
            ..rank_ref
        };
        same_row(&rank, rank_ref, other_device);

        let hour = t("2026-11-24T10:00:00Z");
        let crawl = CrawlHourlyKey {
            tenant_id: "t".into(),
            campaign_id: "c".into(),
            domain: "example.com".into(),
            hour,
        };
        let crawl_ref = CrawlHourlyKeyRef {
            tenant_id: "t",
            campaign_id: "c",
            domain: "example.com",
            hour,
        };
        let next_hour = CrawlHourlyKeyRef {
            hour: t("2026-11-24T11:00:00Z"),
            ..crawl_ref
        };
        same_row(&crawl, crawl_ref, next_hour);
    }

    #[test]
    fn buckets_are_utc() {
        // 23:30 at -02:00 is 01:30 UTC the next day.
        let ts = DateTime::parse_from_rfc3339("2026-03-01T23:30:00-02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(day_of(ts), NaiveDate::from_ymd_opt(2026, 3, 2).unwrap());
        assert_eq!(hour_of(ts), t("2026-03-02T01:00:00Z"));
        assert_eq!(
            hour_of(t("2026-03-02T01:59:59.999999Z")),
            t("2026-03-02T01:00:00Z")
        );
    }

    #[test]
    fn rank_last_follows_newest_and_ignores_arrival_order() {
        let checks = [
            (Some(5), "2026-01-01T10:00:00Z", "a"),
            (None, "2026-01-01T12:00:00Z", "b"),
            (Some(9), "2026-01-01T08:00:00Z", "c"),
            (Some(2), "2026-01-01T11:00:00Z", "d"),
        ];
        // Expected by hand: newest is "b" (unranked), best 2, worst 9, 4 checks.
        let expected = RankDaily {
            last_position: None,
            last_occurred_at: t("2026-01-01T12:00:00Z"),
            last_event_id: "b".into(),
            best_position: Some(2),
            worst_position: Some(9),
            checks: 4,
        };
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
            let (p, ts, id) = checks[order[0]];
            let mut row = RankDaily::single(p, t(ts), id);
            for &i in &order[1..] {
                let (p, ts, id) = checks[i];
                row.add(p, t(ts), id);
            }
            assert_eq!(row, expected, "order {order:?}");
        }
        // Split into two partials and merge, both ways.
        let mut a = RankDaily::single(Some(5), t("2026-01-01T10:00:00Z"), "a");
        a.add(None, t("2026-01-01T12:00:00Z"), "b");
        let mut b = RankDaily::single(Some(9), t("2026-01-01T08:00:00Z"), "c");
        b.add(Some(2), t("2026-01-01T11:00:00Z"), "d");
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, expected);
        assert_eq!(ba, expected);
    }

    #[test]
    fn rank_ties_on_time_break_by_event_id() {
        let mut row = RankDaily::single(Some(3), t("2026-01-01T10:00:00Z"), "m");
        row.add(Some(7), t("2026-01-01T10:00:00Z"), "z");
        row.add(Some(1), t("2026-01-01T10:00:00Z"), "a");
        assert_eq!(row.last_position, Some(7));
        assert_eq!(row.last_event_id, "z");
    }

    #[test]
    fn unranked_only_day_has_null_best_and_worst() {
        let mut row = RankDaily::single(None, t("2026-01-01T10:00:00Z"), "a");
        row.add(None, t("2026-01-01T11:00:00Z"), "b");
        assert_eq!(
            (row.best_position, row.worst_position, row.checks),
            (None, None, 2)
        );
    }

    #[test]
    fn sums_at_the_extremes_are_exact_and_never_wrap() {
        // 2^31 - 1 events of the largest fetch_ms and bytes, as one partial row, plus one more: exact.
        let max = i64::from(u32::MAX);
        let n = i64::from(i32::MAX);
        let mut row = CrawlHourly {
            pages: n,
            status_5xx: n,
            fetch_ms_sum: n * max,
            fetch_ms_max: max,
            bytes_sum: n * max,
            ..CrawlHourly::default()
        };
        row.add(599, max, max);
        let expected = i128::from(n + 1) * i128::from(max);
        assert_eq!(i128::from(row.bytes_sum), expected);
        assert_eq!(i128::from(row.fetch_ms_sum), expected);
        assert_eq!(
            (row.pages, row.status_5xx, row.fetch_ms_max),
            (n + 1, n + 1, max)
        );
        // The next one would pass i64::MAX: it stops with the column named instead of wrapping.
        let over = std::panic::catch_unwind(move || {
            let mut row = row;
            row.add(200, 0, i64::MAX - row.bytes_sum + 1);
        });
        let message = *over.unwrap_err().downcast::<String>().unwrap();
        assert!(
            message.starts_with("aggregate crawl_hourly.bytes_sum overflows i64"),
            "{message}"
        );
        let merged = std::panic::catch_unwind(|| {
            let mut a = RankDaily::single(Some(1), t("2026-01-01T10:00:00Z"), "a");
            a.checks = i64::MAX;
            a.merge(&RankDaily::single(Some(1), t("2026-01-01T10:00:00Z"), "b"));
        });
        assert!(merged.is_err());
    }

    #[test]
    fn crawl_counts_status_classes_and_combines() {
        let mut a = CrawlHourly::default();
        a.add(200, 120, 1000);
        a.add(301, 80, 0);
        a.add(103, 5, 0);
        let mut b = CrawlHourly::default();
        b.add(404, 30, 10);
        b.add(503, 900, 20);
        b.add(204, 10, 0);
        a.merge(&b);
        let expected = CrawlHourly {
            pages: 6,
            status_2xx: 2,
            status_3xx: 1,
            status_4xx: 1,
            status_5xx: 1,
            fetch_ms_sum: 120 + 80 + 5 + 30 + 900 + 10,
            fetch_ms_max: 900,
            bytes_sum: 1030,
        };
        assert_eq!(a, expected);
    }
}

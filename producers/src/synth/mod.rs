//! Deterministic synthetic traffic: a seeded generator of realistic rank, crawl and click events for
//! load tests and end-to-end checks. A [`SynthConfig`] (seed, tenant and catalogue sizes, the kind
//! [`Mix`]) plus a run id go in; [`Synth::next`] hands out one [`Event`] at a time, the same sequence for
//! the same seed, run id and clock. Popular keywords, links and visitors are Zipf-skewed ([`Zipf`]);
//! timestamps spread over the last `days_back` days; some fields are absent, some crawl hosts come in
//! mixed case, and every HTTP status class shows up, so that aggregation edge cases are exercised.

use chrono::{DateTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice_schemas::time::truncate_to_micros;
use sluice_schemas::{ClickEvent, CrawlEvent, Event, EventKind, RankEvent, SCHEMA_VERSION};

mod mix;
mod vocab;

pub use mix::{Mix, MixError, Zipf};
use vocab::*;

/// A synthetic configuration that cannot generate events.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SynthError {
    /// A catalogue size (tenants, campaigns, ...) of zero.
    #[error("{0} must be at least 1")]
    Empty(&'static str),
    /// A Zipf exponent that is negative, NaN or infinite.
    #[error("zipf exponent {0} must be finite and >= 0")]
    BadExponent(f64),
    /// A mix whose weights are all zero.
    #[error("mix {0} has no positive weight")]
    EmptyMix(Mix),
}

/// Shape of the synthetic traffic. `Default` is a medium-sized, realistic catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Seed of the random sequence: same seed, run id and clock, same events.
    pub seed: u64,
    pub tenants: usize,
    pub campaigns_per_tenant: usize,
    /// Distinct keywords a campaign tracks; drawn Zipf-skewed (a few head terms dominate).
    pub keywords_per_campaign: usize,
    /// Distinct short links of a tenant; drawn Zipf-skewed.
    pub links_per_tenant: usize,
    /// Distinct hosts a campaign crawls (and ranks with).
    pub domains_per_campaign: usize,
    /// Size of a tenant's visitor pool; drawn Zipf-skewed, so visitors return and unique visitors
    /// stay below clicks.
    pub visitors_per_tenant: usize,
    /// `occurred_at` is uniform over `[now - days_back days, now]`.
    pub days_back: u32,
    /// Skew of keyword, link and visitor popularity.
    pub zipf_exponent: f64,
    pub mix: Mix,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 42,
            tenants: 20,
            campaigns_per_tenant: 5,
            keywords_per_campaign: 50,
            links_per_tenant: 200,
            domains_per_campaign: 8,
            visitors_per_tenant: 1000,
            days_back: 3,
            zipf_exponent: 1.1,
            mix: Mix::default(),
        }
    }
}

/// The generator. Not `Clone` on purpose: two copies would hand out the same event ids.
#[derive(Debug)]
pub struct Synth {
    cfg: SynthConfig,
    run_id: String,
    seq: u64,
    rng: StdRng,
    keywords: Zipf,
    links: Zipf,
    visitors: Zipf,
}

impl Synth {
    /// A generator whose events carry ids `"{run_id}-{seq}"`, `seq` counting from 0.
    pub fn new(cfg: SynthConfig, run_id: &str) -> Result<Synth, SynthError> {
        for (name, n) in [
            ("tenants", cfg.tenants),
            ("campaigns_per_tenant", cfg.campaigns_per_tenant),
            ("domains_per_campaign", cfg.domains_per_campaign),
        ] {
            if n == 0 {
                return Err(SynthError::Empty(name));
            }
        }
        if cfg.mix.total() == 0 {
            return Err(SynthError::EmptyMix(cfg.mix));
        }
        let zipf = |n: usize, name: &'static str| {
            Zipf::new(n, cfg.zipf_exponent).map_err(|e| match e {
                SynthError::Empty(_) => SynthError::Empty(name),
                other => other,
            })
        };
        let keywords = zipf(cfg.keywords_per_campaign, "keywords_per_campaign")?;
        let links = zipf(cfg.links_per_tenant, "links_per_tenant")?;
        let visitors = zipf(cfg.visitors_per_tenant, "visitors_per_tenant")?;
        Ok(Synth {
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            run_id: run_id.to_owned(),
            seq: 0,
            keywords,
            links,
            visitors,
        })
    }

    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// How many events have been generated so far.
    pub fn generated(&self) -> u64 {
        self.seq
    }

    /// The next event, of a kind drawn from the mix, with `occurred_at` in `[now - days_back, now]`
    /// (whole microseconds, never after `now`).
    pub fn next(&mut self, now: DateTime<Utc>) -> Event {
        let kind = self.cfg.mix.pick(&mut self.rng);
        self.next_of(kind, now)
    }

    /// The next event of a given kind (ignores the mix; same id sequence).
    pub fn next_of(&mut self, kind: EventKind, now: DateTime<Utc>) -> Event {
        let event_id = format!("{}-{}", self.run_id, self.seq);
        self.seq += 1;
        let occurred_at = self.occurred_at(now);
        let tenant = self.rng.random_range(0..self.cfg.tenants);
        let tenant_id = format!("tenant-{tenant:03}");
        match kind {
            EventKind::Rank => Event::Rank(self.rank(event_id, tenant_id, tenant, occurred_at)),
            EventKind::Crawl => Event::Crawl(self.crawl(event_id, tenant_id, tenant, occurred_at)),
            EventKind::Click => Event::Click(self.click(event_id, tenant_id, tenant, occurred_at)),
        }
    }

    fn occurred_at(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        let now = truncate_to_micros(now);
        let span_us = i64::from(self.cfg.days_back) * 86_400 * 1_000_000;
        let back_us = if span_us > 0 {
            self.rng.random_range(0..=span_us)
        } else {
            0
        };
        now - TimeDelta::microseconds(back_us)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    /// With probability `p`, one of `items` (the coin is tossed first, then the item picked).
    fn maybe_pick(&mut self, p: f64, items: &[&str]) -> Option<String> {
        self.rng.random_bool(p).then(|| self.pick(items).to_owned())
    }

    fn rank(
        &mut self,
        event_id: String,
        tenant_id: String,
        tenant: usize,
        occurred_at: DateTime<Utc>,
    ) -> RankEvent {
        let campaign = self.rng.random_range(0..self.cfg.campaigns_per_tenant);
        let keyword = keyword_text(
            tenant,
            campaign,
            self.keywords.sample(&mut self.rng),
            self.cfg.campaigns_per_tenant,
        );
        let geo = self.pick(&GEOS).to_owned();
        let engine = if self.rng.random_bool(0.75) {
            "google"
        } else {
            "bing"
        }
        .to_owned();
        let device = if self.rng.random_bool(0.55) {
            "desktop"
        } else {
            "mobile"
        }
        .to_owned();
        let ranked = !self.rng.random_bool(0.15);
        let (position, url) = if ranked {
            let position = self.rng.random_range(1..=100);
            let domain = self.rng.random_range(0..self.cfg.domains_per_campaign);
            let path = self.rng.random_range(0..1000);
            let host = host(tenant, campaign, domain, false);
            (Some(position), Some(format!("https://{host}/path/{path}")))
        } else {
            (None, None)
        };
        RankEvent {
            schema_version: SCHEMA_VERSION,
            event_id,
            tenant_id,
            occurred_at,
            campaign_id: campaign_id(campaign),
            keyword,
            geo,
            engine,
            device,
            url,
            position,
        }
    }

    fn crawl(
        &mut self,
        event_id: String,
        tenant_id: String,
        tenant: usize,
        occurred_at: DateTime<Utc>,
    ) -> CrawlEvent {
        let campaign = self.rng.random_range(0..self.cfg.campaigns_per_tenant);
        let domain = self.rng.random_range(0..self.cfg.domains_per_campaign);
        // Every third host is sometimes spelled in mixed case: only lowercasing groups it correctly.
        let odd_case = domain % 3 == 0 && self.rng.random_bool(0.5);
        let host = host(tenant, campaign, domain, odd_case);
        let path = self.rng.random_range(0..1000);
        let status_code = self.status_code();
        let fetch_ms = self.rng.random_range(5..=5000);
        let bytes = match status_code {
            100..=199 | 204 | 304 => 0,
            300..=399 => self.rng.random_range(0..=2_000),
            _ => self.rng.random_range(0..=2_000_000),
        };
        let content_hash =
            if (200..300).contains(&status_code) && bytes > 0 && self.rng.random_bool(0.8) {
                Some(format!(
                    "{:016x}{:016x}",
                    self.rng.random::<u64>(),
                    self.rng.random::<u64>()
                ))
            } else {
                None
            };
        CrawlEvent {
            schema_version: SCHEMA_VERSION,
            event_id,
            tenant_id,
            occurred_at,
            campaign_id: campaign_id(campaign),
            url: format!("https://{host}/path/{path}"),
            status_code,
            fetch_ms,
            bytes,
            content_hash,
        }
    }

    fn status_code(&mut self) -> i32 {
        let total: u32 = STATUS_CLASSES.iter().map(|(w, _)| w).sum();
        let mut r = self.rng.random_range(0..total);
        for (weight, codes) in STATUS_CLASSES {
            if r < weight {
                return self.pick(codes);
            }
            r -= weight;
        }
        200
    }

    fn click(
        &mut self,
        event_id: String,
        tenant_id: String,
        tenant: usize,
        occurred_at: DateTime<Utc>,
    ) -> ClickEvent {
        let link = self.links.sample(&mut self.rng);
        let referrer = self.maybe_pick(0.7, &REFERRERS);
        let country = self.maybe_pick(0.9, &COUNTRIES);
        let user_agent = self.maybe_pick(0.9, &USER_AGENTS);
        let visitor_id = self
            .rng
            .random_bool(0.85)
            .then(|| format!("v-{tenant:03}-{:06}", self.visitors.sample(&mut self.rng)));
        ClickEvent {
            schema_version: SCHEMA_VERSION,
            event_id,
            tenant_id,
            occurred_at,
            short_code: short_code(tenant, link),
            referrer,
            country,
            user_agent,
            visitor_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashSet};

    use chrono::TimeZone;
    use sluice_schemas::{decode, encode, Encoding, Limits};

    use super::*;

    fn now() -> DateTime<Utc> {
        // Sub-microsecond digits on purpose: generated times must still be whole microseconds <= now.
        Utc.with_ymd_and_hms(2025, 3, 14, 15, 9, 26)
            .single()
            .map(|t| t + TimeDelta::nanoseconds(535_897_932))
            .unwrap()
    }

    fn generate(cfg: SynthConfig, run_id: &str, n: usize) -> Vec<Event> {
        let mut synth = Synth::new(cfg, run_id).unwrap();
        (0..n).map(|_| synth.next(now())).collect()
    }

    #[test]
    fn mix_parses_good_input() {
        assert_eq!(
            "rank=2,crawl=1,click=7".parse::<Mix>(),
            Ok(Mix {
                rank: 2,
                crawl: 1,
                click: 7
            })
        );
        assert_eq!(
            " click = 3 , rank=0 ".parse::<Mix>(),
            Ok(Mix {
                rank: 0,
                crawl: 0,
                click: 3
            })
        );
        assert_eq!(
            "crawl=1".parse::<Mix>(),
            Ok(Mix {
                rank: 0,
                crawl: 1,
                click: 0
            })
        );
        let mix = Mix {
            rank: 5,
            crawl: 0,
            click: 1,
        };
        assert_eq!(mix.to_string(), "rank=5,crawl=0,click=1");
        assert_eq!(mix.to_string().parse::<Mix>(), Ok(mix));
    }

    #[test]
    fn mix_rejects_bad_input_naming_accepted_keys() {
        assert_eq!("".parse::<Mix>(), Err(MixError::Empty));
        assert_eq!(
            "rank=1,view=2".parse::<Mix>(),
            Err(MixError::UnknownKey("view".into()))
        );
        assert_eq!(
            "rank".parse::<Mix>(),
            Err(MixError::NotAPair("rank".into()))
        );
        assert_eq!(
            "rank=-1".parse::<Mix>(),
            Err(MixError::BadWeight {
                key: "rank".into(),
                value: "-1".into()
            })
        );
        assert_eq!(
            "rank=x".parse::<Mix>(),
            Err(MixError::BadWeight {
                key: "rank".into(),
                value: "x".into()
            })
        );
        assert_eq!(
            "rank=1,rank=2".parse::<Mix>(),
            Err(MixError::Duplicate("rank".into()))
        );
        assert_eq!("rank=0,click=0".parse::<Mix>(), Err(MixError::AllZero));
        let msg = "rank=1,view=2".parse::<Mix>().unwrap_err().to_string();
        assert_eq!(
            msg,
            r#"unknown key "view" in mix; accepted keys: rank, crawl, click"#
        );
    }

    #[test]
    fn mix_weights_drive_kind_frequencies() {
        let mut rng = StdRng::seed_from_u64(7);
        let mix = Mix {
            rank: 2,
            crawl: 1,
            click: 7,
        };
        let mut counts = BTreeMap::new();
        for _ in 0..100_000 {
            *counts.entry(mix.pick(&mut rng)).or_insert(0u32) += 1;
        }
        // Expected 20k / 10k / 70k; binomial sd <= 145, so +-1000 is > 6 sd.
        for (kind, expected) in [
            (EventKind::Rank, 20_000),
            (EventKind::Crawl, 10_000),
            (EventKind::Click, 70_000),
        ] {
            let got = i64::from(counts[&kind]);
            assert!((got - expected).abs() < 1000, "{kind}: {got} vs {expected}");
        }
        let only_click = Mix {
            rank: 0,
            crawl: 0,
            click: 1,
        };
        assert!((0..1000).all(|_| only_click.pick(&mut rng) == EventKind::Click));
    }

    #[test]
    fn zipf_cdf_matches_closed_form() {
        // n=3, s=1: weights 1, 1/2, 1/3, total 11/6 -> p = 6/11, 3/11, 2/11.
        let z = Zipf::new(3, 1.0).unwrap();
        let expected = [6.0 / 11.0, 9.0 / 11.0, 1.0];
        for (got, want) in z.cdf.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert_eq!(Zipf::new(0, 1.0), Err(SynthError::Empty("zipf item count")));
        assert!(matches!(
            Zipf::new(3, -0.5),
            Err(SynthError::BadExponent(_))
        ));
        assert!(matches!(
            Zipf::new(3, f64::NAN),
            Err(SynthError::BadExponent(_))
        ));
        let one = Zipf::new(1, 1.1).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        assert!((0..100).all(|_| one.sample(&mut rng) == 0));
    }

    #[test]
    fn zipf_frequencies_follow_rank() {
        let (n, s, draws) = (50usize, 1.1f64, 200_000usize);
        let z = Zipf::new(n, s).unwrap();
        let mut rng = StdRng::seed_from_u64(42);
        let mut counts = vec![0usize; n];
        for _ in 0..draws {
            let i = z.sample(&mut rng);
            assert!(i < n, "draw {i} out of range");
            counts[i] += 1;
        }
        let max = counts.iter().copied().max().unwrap();
        assert_eq!(
            counts[0], max,
            "rank 1 must be the most frequent: {counts:?}"
        );
        // Adjacent head ranks differ by > 6 sd at this sample size, so the order is strict.
        for i in 0..10 {
            assert!(
                counts[i] > counts[i + 1],
                "rank {} vs {}: {counts:?}",
                i + 1,
                i + 2
            );
        }
        // Each frequency is within 5 sd of the exact probability.
        let h: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
        for (i, &c) in counts.iter().enumerate() {
            let p = ((i + 1) as f64).powf(-s) / h;
            let mean = p * draws as f64;
            let sd = (draws as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (c as f64 - mean).abs() < 5.0 * sd,
                "rank {}: {c} vs {mean:.0}",
                i + 1
            );
        }
        // The tail is reached too.
        assert!(counts[n - 1] > 0);
    }

    #[test]
    fn same_seed_and_run_id_give_same_events() {
        let a = generate(SynthConfig::default(), "run-a", 2000);
        let b = generate(SynthConfig::default(), "run-a", 2000);
        assert_eq!(a, b);
        let other_seed = generate(
            SynthConfig {
                seed: 43,
                ..SynthConfig::default()
            },
            "run-a",
            2000,
        );
        assert_ne!(a, other_seed);
        assert_eq!(a[0].event_id(), "run-a-0");
        assert_eq!(a[1999].event_id(), "run-a-1999");
    }

    #[test]
    fn events_decode_and_round_trip_in_both_encodings() {
        let limits = Limits::default();
        for event in generate(SynthConfig::default(), "rt", 5000) {
            for encoding in [Encoding::Json, Encoding::Bincode] {
                let bytes = encode(&event, encoding);
                let decoded = decode(event.kind(), encoding, &bytes, &limits, now());
                assert_eq!(
                    decoded.as_ref(),
                    Ok(&event),
                    "{encoding:?}: {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
    }

    #[test]
    fn ids_unique_times_in_window_and_whole_micros() {
        let events = generate(SynthConfig::default(), "w", 20_000);
        let ids: HashSet<&str> = events.iter().map(Event::event_id).collect();
        assert_eq!(ids.len(), events.len());
        let upper = truncate_to_micros(now());
        let lower = upper - TimeDelta::days(3);
        let mut hours = BTreeSet::new();
        for e in &events {
            let at = e.occurred_at();
            assert!(
                at >= lower && at <= upper,
                "{at} outside [{lower}, {upper}]"
            );
            assert_eq!(
                at.timestamp_subsec_nanos() % 1000,
                0,
                "{at} is not whole microseconds"
            );
            hours.insert(at.timestamp() / 3600);
        }
        // 3 days back from 15:09 spans 73 distinct clock hours; 20k draws hit all of them.
        assert_eq!(hours.len(), 73);
        let days: BTreeSet<_> = events
            .iter()
            .map(|e| e.occurred_at().date_naive())
            .collect();
        assert_eq!(days.len(), 4, "{days:?}");

        let same_instant = generate(
            SynthConfig {
                days_back: 0,
                ..SynthConfig::default()
            },
            "z",
            100,
        );
        assert!(same_instant.iter().all(|e| e.occurred_at() == upper));
    }

    #[test]
    fn crawl_events_cover_every_status_class_and_odd_case_hosts() {
        let mut synth = Synth::new(SynthConfig::default(), "c").unwrap();
        let mut classes = BTreeMap::new();
        let (mut mixed_case, mut hashes) = (0, 0);
        for _ in 0..10_000 {
            let Event::Crawl(c) = synth.next_of(EventKind::Crawl, now()) else {
                panic!("not a crawl event")
            };
            *classes.entry(c.status_code / 100).or_insert(0u32) += 1;
            assert!((5..=5000).contains(&c.fetch_ms), "{}", c.fetch_ms);
            assert!((0..=2_000_000).contains(&c.bytes), "{}", c.bytes);
            let host = sluice_schemas::validate::crawl_domain(&c.url).unwrap();
            let raw_host = &c.url["https://".len().."https://".len() + host.len()];
            assert_eq!(raw_host.to_ascii_lowercase(), host);
            assert!(
                c.url["https://".len() + host.len()..].starts_with("/path/"),
                "{}",
                c.url
            );
            if raw_host != host {
                mixed_case += 1;
            }
            hashes += usize::from(c.content_hash.is_some());
        }
        assert_eq!(
            classes.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert!(classes[&2] > 7000, "{classes:?}");
        assert!(mixed_case > 0 && hashes > 0 && hashes < 10_000);
        // brand (3 + 1 * 7 + 0 * 13) % 8 = 2 -> "news"; tld (3 + 0) % 5 = 3 -> "co.uk".
        assert_eq!(host(3, 1, 0, true), "WWW.News-3-1-0.CO.UK");
        assert_eq!(host(3, 1, 0, false), "www.news-3-1-0.co.uk");
    }

    #[test]
    fn rank_and_click_fields_have_realistic_gaps() {
        let mut synth = Synth::new(SynthConfig::default(), "rc").unwrap();
        let ranks: Vec<RankEvent> = (0..5000)
            .map(|_| match synth.next_of(EventKind::Rank, now()) {
                Event::Rank(r) => r,
                other => panic!("{other:?}"),
            })
            .collect();
        let unranked = ranks.iter().filter(|r| r.position.is_none()).count();
        // 15% of 5000 = 750, sd ~25.
        assert!((600..900).contains(&unranked), "{unranked}");
        assert!(ranks
            .iter()
            .all(|r| r.position.is_none() == r.url.is_none()));
        assert!(ranks
            .iter()
            .filter_map(|r| r.position)
            .all(|p| (1..=100).contains(&p)));
        let engines: BTreeSet<&str> = ranks.iter().map(|r| r.engine.as_str()).collect();
        assert_eq!(engines, BTreeSet::from(["bing", "google"]));
        let devices: BTreeSet<&str> = ranks.iter().map(|r| r.device.as_str()).collect();
        assert_eq!(devices, BTreeSet::from(["desktop", "mobile"]));

        let clicks: Vec<ClickEvent> = (0..5000)
            .map(|_| match synth.next_of(EventKind::Click, now()) {
                Event::Click(c) => c,
                other => panic!("{other:?}"),
            })
            .collect();
        let visitors: HashSet<&str> = clicks
            .iter()
            .filter_map(|c| c.visitor_id.as_deref())
            .collect();
        let with_visitor = clicks.iter().filter(|c| c.visitor_id.is_some()).count();
        assert!(
            with_visitor < clicks.len() && visitors.len() < with_visitor / 2,
            "{} {with_visitor}",
            visitors.len()
        );
        assert!(
            clicks.iter().any(|c| c.referrer.is_none())
                && clicks.iter().any(|c| c.referrer.is_some())
        );
        assert!(
            clicks.iter().any(|c| c.country.is_none())
                && clicks.iter().any(|c| c.user_agent.is_none())
        );
        let tenants: HashSet<&str> = clicks.iter().map(|c| c.tenant_id.as_str()).collect();
        assert_eq!(tenants.len(), 20);
    }

    #[test]
    fn helpers_produce_expected_shapes() {
        assert_eq!(keyword_text(0, 0, 0, 5), "best running shoes");
        assert_eq!(keyword_text(0, 1, 12, 5), "buy standing desk");
        assert_eq!(keyword_text(0, 0, 160, 5), "best running shoes 1");
        let codes: HashSet<String> = (0..20)
            .flat_map(|t| (0..200).map(move |l| short_code(t, l)))
            .collect();
        assert_eq!(codes.len(), 4000);
        assert!(codes
            .iter()
            .all(|c| c.len() == 7 && c.bytes().all(|b| b.is_ascii_alphanumeric())));
        assert_eq!(short_code(3, 17), short_code(3, 17));
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = |cfg: SynthConfig| Synth::new(cfg, "x").unwrap_err();
        assert_eq!(
            bad(SynthConfig {
                tenants: 0,
                ..SynthConfig::default()
            }),
            SynthError::Empty("tenants")
        );
        assert_eq!(
            bad(SynthConfig {
                links_per_tenant: 0,
                ..SynthConfig::default()
            }),
            SynthError::Empty("links_per_tenant")
        );
        let zero = Mix {
            rank: 0,
            crawl: 0,
            click: 0,
        };
        assert_eq!(
            bad(SynthConfig {
                mix: zero,
                ..SynthConfig::default()
            }),
            SynthError::EmptyMix(zero)
        );
    }
}

//! The vocabulary of synthetic traffic: keyword parts, brands, hosts, countries, referrers, user agents,
//! HTTP status classes, and the deterministic names of campaigns, keywords, hosts and short codes.

pub(super) const MODIFIERS: [&str; 10] = [
    "best",
    "cheap",
    "buy",
    "how to choose",
    "top",
    "review",
    "near me",
    "vs",
    "sale",
    "guide",
];
pub(super) const TOPICS: [&str; 16] = [
    "running shoes",
    "espresso machine",
    "standing desk",
    "noise cancelling headphones",
    "hiking backpack",
    "electric bike",
    "mechanical keyboard",
    "air fryer",
    "yoga mat",
    "gaming monitor",
    "winter jacket",
    "robot vacuum",
    "crm software",
    "seo audit tool",
    "vpn service",
    "project management app",
];
pub(super) const BRANDS: [&str; 8] = [
    "example", "shop", "news", "blog", "acme", "globex", "initech", "umbrella",
];
pub(super) const TLDS: [&str; 5] = ["com", "de", "fr", "co.uk", "io"];
pub(super) const GEOS: [&str; 6] = ["us", "us", "de", "fr", "gb", "es"];
pub(super) const COUNTRIES: [&str; 8] = ["us", "us", "us", "de", "fr", "gb", "in", "br"];
pub(super) const REFERRERS: [&str; 6] = [
    "https://www.google.com/",
    "https://t.co/",
    "https://news.ycombinator.com/",
    "https://www.facebook.com/",
    "https://www.reddit.com/r/programming/",
    "https://duckduckgo.com/",
];
pub(super) const USER_AGENTS: [&str; 5] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
];
/// Status codes by class with the class weights (per mille): mostly 2xx, every class present.
pub(super) const STATUS_CLASSES: [(u32, &[i32]); 5] = [
    (10, &[100, 101, 103]),
    (800, &[200, 200, 200, 200, 201, 204, 206]),
    (80, &[301, 302, 304, 307, 308]),
    (70, &[400, 401, 403, 404, 404, 404, 410, 429]),
    (40, &[500, 502, 503, 504]),
];
pub(super) const BASE62: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub(super) fn campaign_id(campaign: usize) -> String {
    format!("campaign-{campaign:02}")
}

/// Keyword `k` of a campaign: a modifier and a topic (distinct for `k < 10 * 16`), numbered beyond.
pub(super) fn keyword_text(
    tenant: usize,
    campaign: usize,
    k: usize,
    campaigns_per_tenant: usize,
) -> String {
    let topic_base = tenant * campaigns_per_tenant + campaign;
    let modifier = MODIFIERS[k % MODIFIERS.len()];
    let topic = TOPICS[(topic_base + k / MODIFIERS.len()) % TOPICS.len()];
    let round = k / (MODIFIERS.len() * TOPICS.len());
    if round == 0 {
        format!("{modifier} {topic}")
    } else {
        format!("{modifier} {topic} {round}")
    }
}

/// Host `domain` of a campaign, e.g. `www.acme-3-1-0.de`, or in mixed case `WWW.Acme-3-1-0.DE`.
pub(super) fn host(tenant: usize, campaign: usize, domain: usize, odd_case: bool) -> String {
    let brand = BRANDS[(tenant + campaign * 7 + domain * 13) % BRANDS.len()];
    let tld = TLDS[(tenant + domain) % TLDS.len()];
    if odd_case {
        let mut chars = brand.chars();
        let capitalized: String = chars
            .next()
            .map(|c| c.to_ascii_uppercase())
            .into_iter()
            .chain(chars)
            .collect();
        format!(
            "WWW.{capitalized}-{tenant}-{campaign}-{domain}.{}",
            tld.to_ascii_uppercase()
        )
    } else {
        format!("www.{brand}-{tenant}-{campaign}-{domain}.{tld}")
    }
}

/// A 7-character base62 short code, unique per (tenant, link) and stable across runs.
pub(super) fn short_code(tenant: usize, link: usize) -> String {
    // SplitMix64 finalizer: a bijection on u64, so distinct inputs give distinct codes as long as the
    // 62^7 code space is not exhausted modulo collisions of the truncation (rare at these sizes).
    let mut x = ((tenant as u64) << 32 | link as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let mut code = [0u8; 7];
    for c in &mut code {
        *c = BASE62[(x % 62) as usize];
        x /= 62;
    }
    String::from_utf8_lossy(&code).into_owned()
}

//! The demo's sample queries: two product queries on PostgreSQL and an analyst query on ClickHouse,
//! printed as tables — PostgreSQL's as psql prints them by default, ClickHouse's in its own
//! `PrettyCompactNoEscapes` format.

use anyhow::Context;
use sqlx::{PgPool, Row};

use super::{say, Counts};

/// Two product queries on PostgreSQL and an analyst query on ClickHouse, printed as tables.
pub(super) async fn sample_queries(counts: &Counts) -> anyhow::Result<()> {
    say("sample product query (PostgreSQL): today's top links");
    print_pg(
        &counts.pg,
        "SELECT tenant_id, short_code, clicks FROM click_daily
          WHERE day = (now() AT TIME ZONE 'UTC')::date ORDER BY clicks DESC, tenant_id, short_code LIMIT 5",
        &["tenant_id", "short_code", "clicks"],
    )
    .await?;
    say("sample product query (PostgreSQL): a keyword's rank history");
    print_pg(
        &counts.pg,
        "SELECT day, engine, device, last_position, best_position, worst_position, checks
           FROM rank_daily WHERE (tenant_id, campaign_id, keyword) = (SELECT tenant_id, campaign_id, keyword
                FROM rank_daily ORDER BY checks DESC LIMIT 1)
          ORDER BY day DESC, engine, device LIMIT 8",
        &[
            "day",
            "engine",
            "device",
            "last_position",
            "best_position",
            "worst_position",
            "checks",
        ],
    )
    .await?;
    say("sample analyst query (ClickHouse): crawl health per domain, last 24 h");
    let table = counts
        .ch
        .query(
            "SELECT domain, count() AS pages, countIf(status_code >= 500) AS errors_5xx,
                    round(avg(fetch_ms)) AS avg_fetch_ms, quantile(0.95)(fetch_ms) AS p95_fetch_ms
               FROM crawl_events FINAL WHERE occurred_at > now() - 86400
              GROUP BY domain ORDER BY pages DESC LIMIT 5",
        )
        .fetch_bytes("PrettyCompactNoEscapes")?
        .collect()
        .await
        .context("the ClickHouse sample query")?;
    print!("{}", String::from_utf8_lossy(&table));
    Ok(())
}

/// Runs `sql` and prints it as psql does by default.
async fn print_pg(pg: &PgPool, sql: &'static str, header: &[&str]) -> anyhow::Result<()> {
    let rows = sqlx::query(sql)
        .fetch_all(pg)
        .await
        .context("a PostgreSQL sample query")?;
    let mut cells: Vec<Vec<String>> = Vec::with_capacity(rows.len());
    let mut numeric = vec![false; header.len()];
    for row in &rows {
        let mut line = Vec::with_capacity(header.len());
        for (i, numeric) in numeric.iter_mut().enumerate() {
            let (text, number) = cell(row, i)?;
            *numeric |= number;
            line.push(text);
        }
        cells.push(line);
    }
    print!("{}", psql_table(header, &numeric, &cells));
    Ok(())
}

/// One value as psql shows it (NULL as nothing), and whether it is a number (right-aligned).
fn cell(row: &sqlx::postgres::PgRow, i: usize) -> anyhow::Result<(String, bool)> {
    fn show<T: ToString>(v: Option<T>) -> String {
        v.map(|v| v.to_string()).unwrap_or_default()
    }
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return Ok((show(v), false));
    }
    if let Ok(v) = row.try_get::<Option<chrono::NaiveDate>, _>(i) {
        return Ok((show(v), false));
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return Ok((show(v), true));
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
        return Ok((show(v), true));
    }
    let v = row
        .try_get::<Option<i16>, _>(i)
        .with_context(|| format!("column {i}: not text, a date or an integer"))?;
    Ok((show(v), true))
}

/// psql's aligned format: centred headers, a `-+-` rule, numbers right-aligned, a row count.
fn psql_table(header: &[&str], numeric: &[bool], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let cells: Vec<String> = header
        .iter()
        .zip(&widths)
        .map(|(h, w)| format!(" {h:^w$} "))
        .collect();
    out.push_str(cells.join("|").trim_end());
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    out.push_str(&rule.join("+"));
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .zip(numeric)
            .map(|((c, w), n)| {
                if *n {
                    format!(" {c:>w$} ")
                } else {
                    format!(" {c:<w$} ")
                }
            })
            .collect();
        out.push_str(cells.join("|").trim_end());
        out.push('\n');
    }
    let n = rows.len();
    out.push_str(&format!("({n} row{})\n\n", if n == 1 { "" } else { "s" }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_look_like_psql() {
        let rows = vec![
            vec!["acme".to_owned(), "x1".to_owned(), "120".to_owned()],
            vec!["globex".to_owned(), "promo".to_owned(), "7".to_owned()],
        ];
        assert_eq!(
            psql_table(
                &["tenant_id", "short_code", "clicks"],
                &[false, false, true],
                &rows
            ),
            " tenant_id | short_code | clicks\n\
             -----------+------------+--------\n \
             acme      | x1         |    120\n \
             globex    | promo      |      7\n\
             (2 rows)\n\n"
        );
        assert_eq!(psql_table(&["a"], &[false], &[]), " a\n---\n(0 rows)\n\n");
    }
}

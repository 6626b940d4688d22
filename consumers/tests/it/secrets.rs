//! Secrets never reach the logs. Ingest runs with its PostgreSQL password in a file (the URL carries
//! none), a SASL password among the librdkafka properties and another in `kafka_sasl_password_file`
//! (which wins), and debug logging on, librdkafka's too (its configuration dump included); it must work
//! (the password from the file is the one that logs in) and no secret may appear in anything it printed,
//! nor in `sluice-ingest config`.

use std::time::Duration;

use sluice_loadtest::verify::Expected;

use crate::support::{TestStack, TrafficShape};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_files_and_properties_never_reach_the_logs() -> anyhow::Result<()> {
    let stack = TestStack::new("secrets", 2).await?;
    let pg_secret = format!("pg-S3cr3t-{}", uuid::Uuid::new_v4().simple());
    let sasl_secret = format!("sasl-S3cr3t-{}", uuid::Uuid::new_v4().simple());
    let sasl_file_secret = format!("saslfile-S3cr3t-{}", uuid::Uuid::new_v4().simple());
    // A role of its own with a password nobody else uses, owning the test database.
    let role = format!("{}_writer", stack.name);
    for sql in [
        format!("CREATE ROLE {role} LOGIN PASSWORD '{pg_secret}'"),
        format!("GRANT {role} TO CURRENT_USER"),
        format!("ALTER DATABASE {} OWNER TO {role}", stack.name),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&stack.pg)
            .await?;
    }
    let password_file = stack.log_dir.join("pg-password");
    std::fs::write(&password_file, format!("{pg_secret}\n"))?;
    let sasl_password_file = stack.log_dir.join("kafka-password");
    std::fs::write(&sasl_password_file, format!("{sasl_file_secret}\n"))?;
    let config_file = stack.log_dir.join("sluice.toml");
    std::fs::write(
        &config_file,
        format!("[kafka_properties]\n\"sasl.password\" = \"{sasl_secret}\"\n\"sasl.username\" = \"sluice\"\n\"debug\" = \"conf,generic\"\n"),
    )?;
    let url = stack.pg_url.replace("sluice:sluice@", &format!("{role}@"));
    let file = password_file.display().to_string();
    let config = config_file.display().to_string();
    let sasl_file = sasl_password_file.display().to_string();
    let env = [
        ("SLUICE_KAFKA_SASL_PASSWORD_FILE", sasl_file.as_str()),
        ("SLUICE_POSTGRES_URL", url.as_str()),
        ("SLUICE_POSTGRES_PASSWORD_FILE", file.as_str()),
        ("SLUICE_CONFIG", config.as_str()),
        ("RUST_LOG", "debug"),
    ];

    let shown = stack.run_ingest_command(&["config"], &env)?;
    assert!(shown.contains("sasl.password"), "{shown}");
    assert!(
        shown.contains(&format!("kafka_sasl_password_file = {sasl_file:?}")),
        "{shown}"
    );
    let events = stack.publish(TrafficShape::seed(41).rate(5000).events(500).resends(0, 0))?;
    let ingest = stack.spawn_ingest("secret", &env)?;
    stack.wait_caught_up(Duration::from_secs(120)).await?;
    assert!(ingest.terminate(Duration::from_secs(30))?.success());
    stack
        .assert_matches(&Expected::from_events(&events))
        .await?;

    let log = std::fs::read_to_string(ingest_log(&stack))?;
    assert!(
        log.len() > 1000,
        "debug logging produced {} bytes",
        log.len()
    );
    // librdkafka dumped its configuration, password line and all, redacted.
    assert!(
        log.contains("sasl.password = [redacted]"),
        "no configuration dump"
    );
    for (name, secret) in [
        ("postgres", &pg_secret),
        ("sasl", &sasl_secret),
        ("sasl file", &sasl_file_secret),
    ] {
        assert!(
            !log.contains(secret.as_str()),
            "the {name} secret is in the ingest log"
        );
        assert!(
            !shown.contains(secret.as_str()),
            "the {name} secret is in `sluice-ingest config`"
        );
    }
    stack.cleanup().await?;
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&crate::support::postgres_admin_url())
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&admin)
        .await?;
    Ok(())
}

fn ingest_log(stack: &TestStack) -> std::path::PathBuf {
    stack.log_dir.join("ingest-secret.log")
}

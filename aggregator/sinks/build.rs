fn main() {
    // sqlx::migrate! embeds aggregator/sinks/migrations at compile time; rebuild when a migration is added.
    println!("cargo:rerun-if-changed=migrations");
}

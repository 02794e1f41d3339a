//! What the crate's documentation says of the crate itself.

/// The names in the `[features]` table of the manifest, `default` left out.
fn features() -> Vec<String> {
    let manifest = include_str!("../Cargo.toml");
    let table = manifest
        .split_once("\n[features]\n")
        .expect("a [features] table")
        .1;
    let table = table.split("\n[").next().unwrap_or(table);
    let mut names: Vec<String> = table
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
        .filter(|name| !name.is_empty() && !name.starts_with('#') && *name != "default")
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// The names in the first column of the crate docs' feature table.
fn documented_features() -> Vec<String> {
    let docs = include_str!("../src/lib.rs");
    let table = docs
        .split_once("//! # Features\n")
        .expect("a Features section in the crate docs")
        .1;
    let mut names: Vec<String> = table
        .lines()
        .take_while(|line| line.starts_with("//!"))
        .filter_map(|line| line.strip_prefix("//! | `"))
        .filter_map(|row| row.split_once('`').map(|(name, _)| name.to_owned()))
        .collect();
    names.sort();
    names
}

#[test]
fn the_crate_docs_name_every_feature() {
    let features = features();
    assert!(features.contains(&"lambda".to_owned()), "{features:?}");
    assert_eq!(documented_features(), features);
}

//! What the crate's documentation says of the crate itself.

use std::collections::BTreeMap;

/// The manifest's features, each with whether it is a default one.
fn features() -> BTreeMap<String, bool> {
    let manifest = include_str!("../Cargo.toml");
    let (_, table) = manifest
        .split_once("\n[features]\n")
        .expect("a [features] table");
    let table = table.split("\n[").next().unwrap_or(table);
    let entries: Vec<(&str, &str)> = table
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim(), value))
        .collect();
    let defaults = entries
        .iter()
        .find(|(name, _)| *name == "default")
        .map_or("", |(_, value)| value);
    entries
        .iter()
        .filter(|(name, _)| *name != "default")
        .map(|(name, _)| {
            let default = defaults.contains(&format!("\"{name}\""));
            ((*name).to_owned(), default)
        })
        .collect()
}

/// The rows of the table under `heading` in `text`, read as `| `name` | yes/no | ...`, from
/// lines that start with `prefix` (`//! ` in the crate docs).
fn feature_table(text: &str, heading: &str, prefix: &str) -> BTreeMap<String, bool> {
    let (_, after) = text
        .split_once(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    after
        .lines()
        .skip(1)
        .map_while(|line| line.trim_end().strip_prefix(prefix.trim_end()))
        .map(str::trim_start)
        .skip_while(|line| line.is_empty())
        .take_while(|line| line.starts_with('|'))
        .filter_map(|row| {
            let mut cells = row.split('|').map(str::trim).skip(1);
            let name = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_owned(), cells.next()? == "yes"))
        })
        .collect()
}

#[test]
fn the_crate_docs_name_every_feature_and_its_default() {
    let features = features();
    assert_eq!(features.get("axum"), Some(&true), "{features:?}");
    assert_eq!(features.get("lambda"), Some(&false), "{features:?}");
    let docs = feature_table(include_str!("../src/lib.rs"), "//! # Features", "//! ");
    assert_eq!(docs, features);
}

#[test]
fn the_readme_names_every_feature_and_its_default() {
    let readme = feature_table(include_str!("../README.md"), "\n## Features", "");
    assert_eq!(readme, features());
}

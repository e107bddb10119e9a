//! The one list of variables (`config::VARIABLES`) against the two files
//! rendered from it and against what the code reads.
//!
//! `UPDATE_DOCS=1 cargo test --test configuration` rewrites `.env.example`
//! and `docs/configuration.md` from the list.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use clickstream_gateway::config::{Config, Reader, VARIABLES, env_example, reference};

fn root(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn env_example_and_the_reference_are_rendered_from_the_list() {
    for (path, rendered) in [(".env.example", env_example()), ("docs/configuration.md", reference())] {
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(root(path), &rendered).unwrap();
        }
        let found = std::fs::read_to_string(root(path)).unwrap();
        assert!(
            found == rendered,
            "{path} is out of step with src/config/variables.rs: run UPDATE_DOCS=1 cargo test --test configuration"
        );
    }
}

/// The environments that make the code read every variable it can.
fn bases() -> Vec<HashMap<&'static str, &'static str>> {
    vec![
        HashMap::new(),
        HashMap::from([("SINK", "kinesis"), ("KINESIS_STREAM_NAME", "clicks")]),
        HashMap::from([
            ("SINK", "kafka"),
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            ("KAFKA_TOPIC", "t"),
        ]),
        HashMap::from([("SPILL_DIR", "/tmp/spill")]),
        HashMap::from([
            ("SINK", "pubsub"),
            ("PUBSUB_TOPIC", "clicks"),
            ("GOOGLE_CLOUD_PROJECT", "p"),
        ]),
    ]
}

fn read(base: &HashMap<&str, &str>, extra: Option<(&str, &str)>) -> (Config, BTreeSet<String>) {
    let asked = RefCell::new(BTreeSet::new());
    let config = Config::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        match extra {
            Some((n, v)) if n == name => Some(v.to_owned()),
            _ => base.get(name).map(|v| v.to_string()),
        }
    })
    .unwrap();
    (config, asked.into_inner())
}

#[test]
fn the_code_reads_exactly_the_listed_variables_with_the_listed_defaults() {
    let listed: BTreeSet<String> = VARIABLES
        .iter()
        .filter(|v| v.reader == Reader::Gateway && !v.name.ends_with('*'))
        .map(|v| v.name.to_owned())
        .collect();
    let mut asked = BTreeSet::new();
    for base in bases() {
        asked.extend(read(&base, None).1);
    }
    assert_eq!(asked, listed, "variables the code reads vs the list");

    // Setting a variable to its listed default changes nothing.
    for var in VARIABLES.iter().filter(|v| v.reader == Reader::Gateway) {
        let Some(default) = var.default else { continue };
        for base in bases() {
            let (plain, asked) = read(&base, None);
            if !asked.contains(var.name) {
                continue;
            }
            let (set, _) = read(&base, Some((var.name, default)));
            assert_eq!(set, plain, "{}={default} is not the code's default", var.name);
        }
    }
}

#[test]
fn every_subsystem_default_is_what_no_variables_give() {
    assert_eq!(Config::default(), Config::from_lookup(|_| None).unwrap());
}

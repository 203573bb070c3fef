//! `docs/configuration.md` against the settings types: every default the page states is the
//! default the service really has. (Each service's unit tests check that every one of its
//! settings is listed; this checks the values, for every service.)

use ledgerline_runtime::settings::{env_vars, load_from, Validate};
use serde::{de::DeserializeOwned, Serialize};

const DOC: &str = include_str!("../../docs/configuration.md");

/// Defaults the page names rather than spells out, with the name it must use.
const NAMED_DEFAULTS: &[(&str, &str)] = &[("LEDGERLINE_SIGNING__NAMESPACE", "DEFAULT_NAMESPACE")];

/// One table row: the `## ` section it is in, the variable, the default cell.
struct Row {
    section: String,
    variable: String,
    default: String,
}

fn rows() -> Vec<Row> {
    let mut section = String::new();
    let mut rows = Vec::new();
    for line in DOC.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading.trim().to_string();
        }
        let Some(rest) = line.strip_prefix("| `LEDGERLINE_") else {
            continue;
        };
        let cells: Vec<&str> = rest.split(" | ").collect();
        let variable = format!("LEDGERLINE_{}", cells[0].trim_end_matches('`'));
        rows.push(Row {
            section: section.clone(),
            variable,
            default: cells.get(1).map_or("", |c| c.trim()).to_string(),
        });
    }
    rows
}

/// The code spans of a cell, in order (`` `` `` is an empty one).
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// What the page says the default is for `service`: the first code span, unless the cell
/// names an exception for it, as in "`true` (ingress: `false`)"; `none` when it says none.
fn documented(cell: &str, service: &str) -> String {
    if let Some((_, after)) = cell.split_once(&format!("({service}: ")) {
        if let Some(value) = code_spans(after).first() {
            return (*value).to_string();
        }
    }
    match code_spans(cell).first() {
        Some(value) => (*value).to_string(),
        None => cell
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

/// A default as the page writes it: strings bare, `null` as `none`, the rest as JSON.
fn as_written(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Null) => "none".into(),
        _ => json.to_string(),
    }
}

/// Every mismatch between the page and `T`'s defaults for `service`.
fn mismatches<T: Serialize + Default>(service: &str) -> Vec<String> {
    let rows = rows();
    let mut out = Vec::new();
    for (variable, default) in env_vars::<T>() {
        // The service's own section wins; then the shared sections; then wherever the page
        // lists it (ingress reads the MongoDB settings listed under audit).
        let row = rows
            .iter()
            .filter(|r| r.variable == variable)
            .min_by_key(|r| match r.section.as_str() {
                s if s == service => 0,
                "Shared sections" => 1,
                _ => 2,
            });
        let Some(row) = row else {
            continue; // completeness is each service's own test
        };
        let stated = documented(&row.default, service);
        if let Some((_, name)) = NAMED_DEFAULTS.iter().find(|(v, _)| *v == variable) {
            if stated != *name {
                out.push(format!(
                    "{variable}: the page should name {name}, says {stated:?}"
                ));
            }
            continue;
        }
        let real = as_written(&default);
        if stated != real {
            out.push(format!(
                "{variable} ({service}): the page says {stated:?}, the default is {real:?}"
            ));
        }
    }
    out
}

#[test]
fn every_default_in_configuration_md_is_the_real_default_of_each_service() {
    let mut all = Vec::new();
    all.extend(mismatches::<ingress::Settings>("ingress"));
    all.extend(mismatches::<processor::Settings>("processor"));
    all.extend(mismatches::<ledger_writer::Settings>("ledger-writer"));
    all.extend(mismatches::<audit::Settings>("audit"));
    all.extend(mismatches::<reconciler::Settings>("reconciler"));
    assert!(all.is_empty(), "docs/configuration.md is wrong: {all:#?}");
}

/// What loading `T` from `LEDGERLINE_STATUS__RETENTION_HOURS=0` says, through the loader the
/// binaries use.
// figment's test jail returns its own (large) error type; boxing it is not ours to change.
#[allow(clippy::result_large_err)]
fn zero_status_retention<T: Serialize + DeserializeOwned + Default + Validate>() -> String {
    let mut refusal = String::new();
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("LEDGERLINE_STATUS__RETENTION_HOURS", "0");
        let env = figment::providers::Env::prefixed("LEDGERLINE_").split("__");
        refusal = match load_from::<T>(None, env) {
            Ok(_) => "loaded".into(),
            Err(e) => e.to_string(),
        };
        Ok(())
    });
    refusal
}

#[test]
fn every_service_that_reads_the_status_section_refuses_a_retention_of_zero() {
    for refusal in [
        zero_status_retention::<ingress::Settings>(),
        zero_status_retention::<processor::Settings>(),
        zero_status_retention::<ledger_writer::Settings>(),
        zero_status_retention::<reconciler::Settings>(),
    ] {
        assert!(refusal.contains("status.retention_hours"), "{refusal}");
    }
}

#[test]
fn the_named_namespace_default_is_the_contracts_constant() {
    assert_eq!(
        ingress::Settings::default().signing.namespace,
        ledgerline_contracts::ids::DEFAULT_NAMESPACE
    );
}

#[test]
fn the_page_lists_rows_for_every_pipeline_service() {
    // Guards the parser: a format change that made it find nothing would pass silently.
    let rows = rows();
    for section in [
        "Shared sections",
        "ingress",
        "processor",
        "ledger-writer",
        "audit",
        "reconciler",
    ] {
        assert!(
            rows.iter().filter(|r| r.section == section).count() >= 4,
            "no rows parsed in section {section}"
        );
    }
}

//! The shipped alert rules (issue 11): `promtool check rules` and `promtool check config` accept
//! `deploy/prometheus/`, `promtool test rules` passes `alerts_test.yml` (per alert: a series that
//! fires it and one that does not), and every alert has a test, a `severity` label, a summary
//! and a `runbook` annotation whose anchor is a row of deploy/README.md's runbook table.

use e2e::prometheus::{deploy_file, promtool_or_skip};
use std::process::Command;

fn promtool(bin: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(deploy_file("prometheus"))
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let test = "alert_rules_pass_promtool_check_and_unit_tests";
    let Some(bin) = promtool_or_skip(test) else {
        return;
    };
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["check", "config", "scrape.yml"][..],
        &["test", "rules", "alerts_test.yml"][..],
    ] {
        let (ok, text) = promtool(&bin, args);
        assert!(ok, "{test}: promtool {}:\n{text}", args.join(" "));
    }
}

/// One alert of alerts.yml, read line by line (the file's own layout: `- alert: Name`, then its
/// keys indented below it).
#[derive(Debug, Default)]
struct Alert {
    name: String,
    severity: Option<String>,
    summary: bool,
    runbook: Option<String>,
}

fn alerts() -> Vec<Alert> {
    let text = std::fs::read_to_string(deploy_file("prometheus/alerts.yml")).expect("alerts.yml");
    let mut out: Vec<Alert> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert:") {
            out.push(Alert {
                name: name.trim().to_string(),
                ..Alert::default()
            });
        } else if let Some(a) = out.last_mut() {
            let value = |k: &str| {
                line.strip_prefix(k)
                    .map(|v| v.trim().trim_matches('"').to_string())
            };
            if let Some(v) = value("severity:") {
                a.severity = Some(v);
            } else if let Some(v) = value("runbook:") {
                a.runbook = Some(v);
            } else if line.starts_with("summary:") {
                a.summary = true;
            }
        }
    }
    out
}

#[test]
fn every_alert_has_severity_runbook_and_a_unit_test() {
    let test = "every_alert_has_severity_runbook_and_a_unit_test";
    let tests =
        std::fs::read_to_string(deploy_file("prometheus/alerts_test.yml")).expect("alerts_test");
    let readme = std::fs::read_to_string(deploy_file("README.md")).expect("deploy/README.md");
    let alerts = alerts();
    assert!(alerts.len() >= 16, "{test}: {} alerts parsed", alerts.len());
    let mut problems = Vec::new();
    for a in &alerts {
        let name = &a.name;
        if !matches!(a.severity.as_deref(), Some("critical" | "warning")) {
            problems.push(format!("{name}: severity {:?}", a.severity));
        }
        if !a.summary {
            problems.push(format!("{name}: no summary"));
        }
        let anchor = format!("deploy/README.md#{}", name.to_ascii_lowercase());
        if a.runbook.as_deref() != Some(anchor.as_str()) {
            problems.push(format!("{name}: runbook {:?}, want {anchor}", a.runbook));
        }
        let row = format!("<a id=\"{}\"></a>", name.to_ascii_lowercase());
        if !readme
            .lines()
            .any(|l| l.starts_with('|') && l.contains(&row))
        {
            problems.push(format!(
                "{name}: no runbook row with {row} in deploy/README.md"
            ));
        }
        // The alert is evaluated by name and expected to fire at least once.
        let evaluated = format!("alertname: {name}\n");
        let fired = tests
            .split("alertname: ")
            .skip(1)
            .any(|t| t.starts_with(&format!("{name}\n")) && t.contains("exp_labels"));
        if !tests.contains(&evaluated) || !fired {
            problems.push(format!("{name}: no firing case in alerts_test.yml"));
        }
    }
    assert!(problems.is_empty(), "{test}:\n{}", problems.join("\n"));
}

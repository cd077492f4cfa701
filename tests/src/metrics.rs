//! Reading Prometheus text exposition (version 0.0.4) just far enough to assert on values:
//! `name{label="value",...} number` lines; comments and malformed lines are skipped.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True if every `(key, value)` in `want` is among this sample's labels (extra labels are
    /// fine, so tests survive new label dimensions).
    pub fn matches(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| self.label(k) == Some(v))
    }
}

pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

/// Samples of metric `name` whose labels include `want`.
pub fn select<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && s.matches(want))
        .collect()
}

/// Sum over the samples of `name` whose labels include `want`; `None` if there is no such sample.
pub fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let picked = select(samples, name, want);
    (!picked.is_empty()).then(|| picked.iter().map(|s| s.value).sum())
}

/// The largest single sample of `name` whose labels include `want`.
pub fn max(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    select(samples, name, want)
        .iter()
        .map(|s| s.value)
        .reduce(f64::max)
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line.get(..name_end)?.to_string();
    let mut rest = line.get(name_end..)?;
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after_brace)?;
        labels = parsed;
        rest = after;
    }
    // Value, then an optional timestamp.
    let value_text = rest.split_whitespace().next()?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `k="v",k2="v2"}` (after the opening brace); returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s.get(..eq)?.trim().to_string();
        s = s.get(eq + 1..)?.trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        };
        labels.push((key, value));
        s = s.get(end + 1..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP edge_sip_requests_total SIP requests
# TYPE edge_sip_requests_total counter
edge_sip_requests_total{method="INVITE",direction="in"} 2000
edge_sip_requests_total{direction="out",method="INVITE",transport="udp"} 2001
edge_sip_requests_total{method="BYE",direction="in"} 7
edge_transactions_active 3
weird_label{a="x\"y,}z"} 1.5e3 1700000000
garbage line
"#;

    #[test]
    fn parses_labels_values_and_skips_junk() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 5);
        assert_eq!(
            sum(&s, "edge_sip_requests_total", &[("method", "INVITE")]),
            Some(4001.0)
        );
        assert_eq!(
            max(&s, "edge_sip_requests_total", &[("method", "INVITE")]),
            Some(2001.0)
        );
        assert_eq!(sum(&s, "edge_transactions_active", &[]), Some(3.0));
        assert_eq!(
            sum(&s, "edge_sip_requests_total", &[("method", "CANCEL")]),
            None
        );
        let w = select(&s, "weird_label", &[]);
        assert_eq!(w.first().and_then(|x| x.label("a")), Some("x\"y,}z"));
        assert_eq!(w.first().map(|x| x.value), Some(1500.0));
    }
}

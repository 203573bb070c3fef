//! Reading a service's own Prometheus exposition, so benchmarks take progress from the service
//! instead of polling the stores (a `count(*)` per poll slows the very thing it measures).

/// The sum of every series of the metric `name` (any labels) in a text exposition; 0 when the
/// metric is absent, as it is before its first sample.
pub fn total(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            // `name` exactly, with or without labels: not `name_sum` or `name_count`.
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                return None;
            }
            rest.rsplit_once(' ')?.1.trim().parse::<f64>().ok()
        })
        .sum()
}

/// The `_sum` and `_count` of every histogram whose name starts with `prefix`, keyed by the
/// rest of the name (for a benchmark's "where the time went").
pub fn histogram_totals(exposition: &str, prefix: &str) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for line in exposition.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(rest) = series.strip_prefix(prefix) else {
            continue;
        };
        let name = rest.split('{').next().unwrap_or(rest);
        if !(name.ends_with("_sum") || name.ends_with("_count")) {
            continue;
        }
        if let Ok(v) = value.trim().parse::<f64>() {
            out.insert(
                rest.to_string(),
                serde_json::json!((v * 1000.0).round() / 1000.0),
            );
        }
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::total;

    const EXPOSITION: &str = "\
# TYPE t_total counter
t_total{decision=\"ACCEPTED\",reason=\"\"} 950
t_total{decision=\"DUPLICATE\",reason=\"\"} 50
t_total_other 7
h_seconds_sum 1.5
h_seconds_count 3
";

    #[test]
    fn every_labelled_series_of_the_metric_is_summed_and_no_other() {
        assert_eq!(total(EXPOSITION, "t_total"), 1000.0);
        assert_eq!(total(EXPOSITION, "h_seconds_sum"), 1.5);
        assert_eq!(total(EXPOSITION, "h_seconds"), 0.0);
    }

    #[test]
    fn histogram_totals_keep_each_sum_and_count_under_the_name_without_its_prefix() {
        let totals = super::histogram_totals(EXPOSITION, "h_");
        assert_eq!(
            totals,
            serde_json::json!({"seconds_sum": 1.5, "seconds_count": 3.0})
        );
    }

    #[test]
    fn a_metric_not_yet_recorded_totals_zero() {
        assert_eq!(total(EXPOSITION, "absent"), 0.0);
    }
}

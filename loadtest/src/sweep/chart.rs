//! A small hand-written SVG chart: accepted rate (left axis, linear) and p99 latency (right
//! axis, logarithmic) against offered rate, with the ideal "accepted = offered" line and the
//! knee marked.

use std::fmt::Write;

use crate::sweep::stats::StepReport;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 430.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 80.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 70.0;

const ACCEPTED_COLOUR: &str = "#1f6fb4";
const P99_COLOUR: &str = "#d9622b";
const IDEAL_COLOUR: &str = "#9a9a9a";
const KNEE_COLOUR: &str = "#2a8a3e";

/// A "nice" upper bound and tick step for an axis reaching `max` (1, 2 or 5 × 10^k steps).
pub fn nice_axis(max: f64, ticks: usize) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / ticks.max(1) as f64;
    let magnitude = 10_f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

/// Decades spanned by the log axis for latencies in `[min, max]` ms: `(low, high)` powers of
/// ten with `low < high`.
pub fn log_decades(min: f64, max: f64) -> (i32, i32) {
    let low = if min > 0.0 {
        min.log10().floor() as i32
    } else {
        0
    };
    let high = if max > 0.0 {
        max.log10().ceil() as i32
    } else {
        1
    };
    (low.min(0), high.max(low.min(0) + 1))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn fmt_rate(v: f64) -> String {
    if v >= 10_000.0 && (v / 1_000.0).fract() == 0.0 {
        format!("{}k", v / 1_000.0)
    } else {
        format!("{v}")
    }
}

/// Renders the chart. `knee` is the index of the knee step, if any.
pub fn render(title: &str, steps: &[StepReport], knee: Option<usize>) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let max_offered = steps
        .iter()
        .map(|s| f64::from(s.offered_rps))
        .fold(0.0, f64::max);
    let max_accepted = steps.iter().map(|s| s.accepted_rps).fold(0.0, f64::max);
    let (x_max, x_step) = nice_axis(max_offered, 5);
    let (y_max, y_step) = nice_axis(max_offered.max(max_accepted), 5);
    let p99s: Vec<f64> = steps.iter().filter_map(|s| s.latency_ms.p99).collect();
    let (dec_low, dec_high) = log_decades(
        p99s.iter().copied().fold(f64::INFINITY, f64::min),
        p99s.iter().copied().fold(0.0, f64::max),
    );

    let x = |v: f64| LEFT + plot_w * v / x_max;
    let y = |v: f64| TOP + plot_h * (1.0 - v / y_max);
    let y_log = |ms: f64| {
        let l = ms.max(10_f64.powi(dec_low)).log10();
        TOP + plot_h * (1.0 - (l - f64::from(dec_low)) / f64::from(dec_high - dec_low))
    };

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );

    // Grid and left axis (rates).
    let mut v = 0.0;
    while v <= y_max + y_step / 2.0 {
        let yy = y(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e6e6e6"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0,
            fmt_rate(v)
        );
        v += y_step;
    }
    // Bottom axis (offered rate).
    let mut v = 0.0;
    while v <= x_max + x_step / 2.0 {
        let xx = x(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#999"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 5.0,
            TOP + plot_h + 19.0,
            fmt_rate(v)
        );
        v += x_step;
    }
    // Right axis (p99, log).
    for d in dec_low..=dec_high {
        let ms = 10_f64.powi(d);
        let label = if ms < 1.0 {
            format!("{ms}")
        } else {
            format!("{}", ms as u64)
        };
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" fill="{P99_COLOUR}">{label}</text>"##,
            LEFT + plot_w + 6.0,
            y_log(ms) + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">offered rate (requests/s)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 30.0
    );
    let _ = writeln!(
        svg,
        r##"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle" fill="{ACCEPTED_COLOUR}">accepted (202/s)</text>"##,
        TOP + plot_h / 2.0
    );
    let _ = writeln!(
        svg,
        r##"<text transform="translate({:.1} {:.1}) rotate(90)" text-anchor="middle" fill="{P99_COLOUR}">p99 latency (ms, log)</text>"##,
        WIDTH - 18.0,
        TOP + plot_h / 2.0
    );

    // Ideal line: accepted = offered.
    let ideal_end = x_max.min(y_max);
    let _ = writeln!(
        svg,
        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{IDEAL_COLOUR}" stroke-dasharray="6 4"/>"##,
        x(0.0),
        y(0.0),
        x(ideal_end),
        y(ideal_end)
    );

    // Knee.
    if let Some(k) = knee.and_then(|k| steps.get(k)) {
        let xx = x(f64::from(k.offered_rps));
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="{KNEE_COLOUR}" stroke-dasharray="3 3"/><text x="{:.1}" y="{:.1}" fill="{KNEE_COLOUR}">knee {} req/s</text>"##,
            TOP + plot_h,
            xx + 4.0,
            TOP + 14.0,
            k.offered_rps
        );
    }

    // Series.
    let accepted: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| (x(f64::from(s.offered_rps)), y(s.accepted_rps)))
        .collect();
    let p99: Vec<(f64, f64)> = steps
        .iter()
        .filter_map(|s| {
            s.latency_ms
                .p99
                .map(|p| (x(f64::from(s.offered_rps)), y_log(p)))
        })
        .collect();
    for (points, colour) in [(&accepted, ACCEPTED_COLOUR), (&p99, P99_COLOUR)] {
        let path: Vec<String> = points
            .iter()
            .map(|(a, b)| format!("{a:.1},{b:.1}"))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
    }
    for (a, b) in &accepted {
        let _ = writeln!(
            svg,
            r#"<circle cx="{a:.1}" cy="{b:.1}" r="4" fill="{ACCEPTED_COLOUR}"/>"#
        );
    }
    for (a, b) in &p99 {
        let _ = writeln!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="7" height="7" fill="{P99_COLOUR}"/>"#,
            a - 3.5,
            b - 3.5
        );
    }

    // Legend.
    let ly = HEIGHT - 12.0;
    let _ = writeln!(
        svg,
        r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{ACCEPTED_COLOUR}"/><text x="{:.1}" y="{:.1}">accepted/s</text><rect x="{:.1}" y="{:.1}" width="7" height="7" fill="{P99_COLOUR}"/><text x="{:.1}" y="{:.1}">p99 (from intended send time)</text><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{IDEAL_COLOUR}" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}">accepted = offered</text>"##,
        LEFT,
        ly - 4.0,
        LEFT + 8.0,
        ly,
        LEFT + 100.0,
        ly - 8.0,
        LEFT + 111.0,
        ly,
        LEFT + 320.0,
        ly - 4.0,
        LEFT + 350.0,
        ly - 4.0,
        LEFT + 356.0,
        ly
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::stats::{GeneratorUse, Percentiles, StepStats};
    use std::time::Duration;

    fn step(rps: u32, accepted_rps: f64, p99: f64) -> StepReport {
        let mut r = StepReport::new(
            rps,
            1,
            Duration::from_secs(1),
            &StepStats::default(),
            GeneratorUse::default(),
        );
        r.accepted_rps = accepted_rps;
        r.latency_ms = Percentiles {
            p99: Some(p99),
            ..Percentiles::default()
        };
        r
    }

    #[test]
    fn nice_axes_round_up_to_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_axis(4_000.0, 5), (4_000.0, 1_000.0));
        assert_eq!(nice_axis(4_100.0, 5), (5_000.0, 1_000.0));
        assert_eq!(nice_axis(730.0, 5), (800.0, 200.0));
        assert_eq!(nice_axis(0.0, 5), (1.0, 0.2));
    }

    #[test]
    fn the_latency_axis_spans_whole_decades_from_at_most_one_millisecond() {
        assert_eq!(log_decades(3.2, 870.0), (0, 3));
        assert_eq!(log_decades(0.4, 9.0), (-1, 1));
        assert_eq!(log_decades(f64::INFINITY, 0.0), (0, 1));
    }

    #[test]
    fn the_chart_has_one_point_per_step_for_each_series_and_marks_the_knee() {
        let steps = vec![
            step(500, 500.0, 12.0),
            step(1_000, 990.0, 40.0),
            step(2_000, 1_100.0, 2_500.0),
        ];
        let svg = render("sweep <test>", &steps, Some(1));
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<circle").count(),
            3 + 1,
            "3 points and the legend"
        );
        assert_eq!(svg.matches("width=\"7\"").count(), 3 + 1);
        assert!(svg.contains("knee 1000 req/s"));
        assert!(svg.contains("sweep &lt;test&gt;"));
    }

    #[test]
    fn a_chart_without_answers_still_renders() {
        let mut s = step(100, 0.0, 1.0);
        s.latency_ms = Percentiles::default();
        let svg = render("empty", &[s], None);
        assert!(!svg.contains("knee"));
        assert!(!svg.contains("NaN"));
    }
}

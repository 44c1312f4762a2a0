//! Plain SVG charts for the seeds' figures: grouped bars, stacked bars with a line, and
//! lines over an index. Each chart has a title, labelled axes, ticks and a legend.

use std::fmt::Write as _;

const W: f64 = 760.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// One named series of values, one per x label.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

impl Series {
    pub fn new(name: &str, values: Vec<f64>) -> Self {
        Self {
            name: name.to_string(),
            values,
        }
    }
}

/// What a chart shows.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x: Vec<String>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round axis maximum: 1, 2 or 5 times a power of ten, at least `max`.
fn nice(max: f64) -> f64 {
    if max.is_nan() || max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&v| v >= max)
        .unwrap_or(10.0 * p)
}

fn frame(c: &Chart, ymax: f64) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        escape(&c.title)
    );
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
    for i in 0..=5 {
        let v = ymax * f64::from(i) / 5.0;
        let y = y0 - (y0 - y1) * f64::from(i) / 5.0;
        let _ = write!(
            s,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            trim(v)
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/><text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(18,{}) rotate(-90)" text-anchor="middle">{}</text>"##,
        (x0 + x1) / 2.0,
        H - 18.0,
        escape(&c.x_label),
        (y0 + y1) / 2.0,
        escape(&c.y_label)
    );
    s
}

fn trim(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn legend(s: &mut String, names: &[(&str, &str)]) {
    for (i, (name, colour)) in names.iter().enumerate() {
        let y = TOP + 10.0 + 20.0 * i as f64;
        let x = W - RIGHT + 14.0;
        let _ = write!(
            s,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
            y - 10.0,
            x + 18.0,
            y,
            escape(name)
        );
    }
}

fn slot(c: &Chart, i: usize) -> (f64, f64) {
    let w = (W - RIGHT - LEFT) / c.x.len().max(1) as f64;
    (LEFT + w * i as f64, w)
}

fn x_labels(s: &mut String, c: &Chart) {
    for (i, l) in c.x.iter().enumerate() {
        let (x, w) = slot(c, i);
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x + w / 2.0,
            H - BOTTOM + 16.0,
            escape(l)
        );
    }
}

fn y_of(v: f64, ymax: f64) -> f64 {
    let (y0, y1) = (H - BOTTOM, TOP);
    y0 - (y0 - y1) * (v / ymax).clamp(0.0, 1.0)
}

/// Each series' name and colour, for the legend.
fn keys(series: &[Series]) -> Vec<(&str, &str)> {
    series
        .iter()
        .enumerate()
        .map(|(k, se)| (se.name.as_str(), COLOURS[k % COLOURS.len()]))
        .collect()
}

/// `x,y` of each value, at the middle of its x label's slot.
fn points(c: &Chart, values: &[f64], ymax: f64) -> Vec<String> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let (x, w) = slot(c, i);
            format!("{:.1},{:.1}", x + w / 2.0, y_of(v, ymax))
        })
        .collect()
}

/// Bars side by side: one group per x label, one bar per series.
pub fn grouped(c: &Chart, series: &[Series]) -> String {
    let ymax = nice(
        series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0, f64::max),
    );
    let mut s = frame(c, ymax);
    let n = series.len().max(1) as f64;
    for (i, _) in c.x.iter().enumerate() {
        let (x, w) = slot(c, i);
        let bw = w * 0.8 / n;
        for (k, se) in series.iter().enumerate() {
            let Some(&v) = se.values.get(i) else { continue };
            let top = y_of(v, ymax);
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                x + w * 0.1 + bw * k as f64,
                bw * 0.95,
                H - BOTTOM - top,
                COLOURS[k % COLOURS.len()],
                escape(&se.name),
                trim(v)
            );
        }
    }
    x_labels(&mut s, c);
    let names = keys(series);
    legend(&mut s, &names);
    s.push_str("</svg>\n");
    s
}

/// Stacked bars (one segment per series), with an optional line drawn over them.
pub fn stacked(c: &Chart, segments: &[Series], line: Option<&Series>) -> String {
    let totals: Vec<f64> = (0..c.x.len())
        .map(|i| segments.iter().filter_map(|s| s.values.get(i)).sum())
        .collect();
    let lmax = line.map_or(0.0, |l| l.values.iter().copied().fold(0.0, f64::max));
    let ymax = nice(totals.iter().copied().fold(lmax, f64::max));
    let mut s = frame(c, ymax);
    for (i, _) in c.x.iter().enumerate() {
        let (x, w) = slot(c, i);
        let mut base = 0.0;
        for (k, se) in segments.iter().enumerate() {
            let v = se.values.get(i).copied().unwrap_or(0.0);
            let (top, bottom) = (y_of(base + v, ymax), y_of(base, ymax));
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                x + w * 0.2,
                w * 0.6,
                bottom - top,
                COLOURS[k % COLOURS.len()],
                escape(&se.name),
                trim(v)
            );
            base += v;
        }
    }
    let mut names = keys(segments);
    if let Some(l) = line {
        let pts = points(c, &l.values, ymax);
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="black" stroke-width="2" stroke-dasharray="6,4"/>"#,
            pts.join(" ")
        );
        names.push((l.name.as_str(), "black"));
    }
    x_labels(&mut s, c);
    legend(&mut s, &names);
    s.push_str("</svg>\n");
    s
}

/// Lines over the x labels, one per series.
pub fn lines(c: &Chart, series: &[Series]) -> String {
    let ymax = nice(
        series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0, f64::max),
    );
    let mut s = frame(c, ymax);
    for (k, se) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let pts = points(c, &se.values, ymax);
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            pts.join(" ")
        );
        for p in &pts {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>"#);
        }
    }
    x_labels(&mut s, c);
    let names = keys(series);
    legend(&mut s, &names);
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> Chart {
        Chart {
            title: "downtime <by> size".into(),
            x_label: "size".into(),
            y_label: "ms".into(),
            x: vec!["0".into(), "100M".into()],
        }
    }

    #[test]
    fn charts_are_svg_with_every_bar_and_escaped_text() {
        let s = [
            Series::new("ferry", vec![200.0, 900.0]),
            Series::new("naive", vec![1000.0, 5000.0]),
        ];
        let g = grouped(&chart(), &s);
        assert!(g.starts_with("<svg") && g.trim_end().ends_with("</svg>"));
        assert_eq!(
            g.matches("<rect x=").count(),
            4 + 2,
            "4 bars and 2 legend keys"
        );
        assert!(g.contains("downtime &lt;by&gt; size"));
        assert!(g.contains(">5000<"), "the axis reaches a round 5000");
        let st = stacked(
            &chart(),
            &s,
            Some(&Series::new("total", vec![1200.0, 5900.0])),
        );
        assert!(st.contains("<polyline"));
        let l = lines(&chart(), &s);
        assert_eq!(l.matches("<circle").count(), 4);
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(3.2), 5.0);
        assert_eq!(nice(870.0), 1000.0);
        assert_eq!(nice(1200.0), 2000.0);
    }
}

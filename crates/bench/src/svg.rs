//! A timeline of group migrations as an SVG picture: one band per schedule, one row per
//! container, one coloured bar per phase, on a common time axis.

use std::fmt::Write as _;

use ferry_controller::group::GroupReport;

const ROW: f64 = 18.0;
const LABEL: f64 = 110.0;
const WIDTH: f64 = 900.0;

fn colour(phase: &str) -> &'static str {
    match phase {
        "connect" | "prepare" | "bundle" => "#9e9e9e",
        p if p.starts_with("round") => "#8bc34a",
        "pages" | "post-copy" => "#2196f3",
        "restore" => "#ff9800",
        "ready" | "restore-ready" => "#e0e0e0",
        _ => "#673ab7",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Draws `reports` (one per schedule) on one time axis.
pub fn timeline_svg(reports: &[GroupReport]) -> String {
    let span = reports.iter().map(|r| r.total_ms).fold(1.0_f64, f64::max);
    let x = |ms: f64| LABEL + ms / span * (WIDTH - LABEL - 10.0);
    let rows: usize = reports.iter().map(|r| r.containers.len() + 2).sum();
    let height = rows as f64 * ROW + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let mut y = 10.0;
    for r in reports {
        let _ = writeln!(
            s,
            r#"<text x="4" y="{:.1}" font-weight="bold">{} — total {:.0} ms, worst downtime {:.0} ms</text>"#,
            y + 12.0,
            escape(r.schedule.name()),
            r.total_ms,
            r.worst_downtime_ms.unwrap_or(0.0)
        );
        y += ROW;
        for c in &r.containers {
            let _ = writeln!(
                s,
                r#"<text x="4" y="{:.1}">{} (level {})</text>"#,
                y + 12.0,
                escape(&c.name),
                c.level
            );
            let mut marks: Vec<(String, f64)> = vec![("start".into(), c.start_ms)];
            marks.extend(c.timeline.iter().cloned());
            for (i, (phase, from)) in marks.iter().enumerate() {
                let to = marks.get(i + 1).map_or(c.end_ms, |(_, t)| *t);
                if to <= *from {
                    continue;
                }
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {:.0}–{:.0} ms</title></rect>"#,
                    x(*from),
                    y + 2.0,
                    (x(to) - x(*from)).max(0.5),
                    ROW - 4.0,
                    colour(phase),
                    escape(phase),
                    from,
                    to
                );
            }
            y += ROW;
        }
        y += ROW;
    }
    let _ = writeln!(
        s,
        r#"<text x="{LABEL}" y="{:.1}">0 ms</text><text x="{:.1}" y="{:.1}" text-anchor="end">{span:.0} ms</text>"#,
        y + 4.0,
        WIDTH - 10.0,
        y + 4.0
    );
    let legend = [
        ("prepare", "#9e9e9e"),
        ("rounds", "#8bc34a"),
        ("pages", "#2196f3"),
        ("restore", "#ff9800"),
        ("waits", "#e0e0e0"),
        ("other", "#673ab7"),
    ];
    for (i, (name, col)) in legend.iter().enumerate() {
        let lx = LABEL + 120.0 + i as f64 * 110.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{col}"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            y - 5.0,
            lx + 14.0,
            y + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_controller::group::{GroupReport, MemberResult, Schedule};

    #[test]
    fn draws_a_bar_per_phase_and_a_band_per_schedule() {
        let member = MemberResult {
            name: "db<1>".into(),
            level: 0,
            restore_level: 0,
            strategy: None,
            outcome: "migrated".into(),
            start_ms: 0.0,
            end_ms: 100.0,
            downtime_ms: Some(50.0),
            reason: None,
            timeline: vec![("pages".into(), 10.0), ("restore".into(), 60.0)],
            report: None,
        };
        let r = GroupReport {
            group: "g".into(),
            schedule: Schedule::Pipeline,
            restore_order: Default::default(),
            outcome: "migrated".into(),
            total_ms: 100.0,
            worst_downtime_ms: Some(50.0),
            failed: None,
            reason: None,
            moved_back: vec![],
            containers: vec![member],
        };
        let svg = timeline_svg(&[r.clone(), r]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 6);
        assert!(svg.contains("db&lt;1&gt;"));
        assert_eq!(svg.matches("pipeline").count(), 2);
    }
}

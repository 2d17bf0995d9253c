//! A small SVG line plot of the training loss: raw per-step loss in light grey, a smoothed curve
//! on top, log-scaled y axis (the loss falls over orders of magnitude early on).

use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// SVG text of loss against step. `points` are (step, loss); non-finite or non-positive losses
/// are skipped (they cannot sit on a log axis).
pub fn loss_svg(points: &[(u64, f64)], title: &str) -> String {
    let pts: Vec<(f64, f64)> =
        points.iter().filter(|(_, l)| l.is_finite() && *l > 0.0).map(|&(s, l)| (s as f64, l)).collect();
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    if pts.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">no finite loss values</text></svg>"#,
            W / 2.0,
            H / 2.0
        );
        return svg;
    }
    let (x_min, x_max) = (pts[0].0.min(1.0), pts.iter().map(|p| p.0).fold(1.0, f64::max));
    let lo = pts.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    let hi = pts.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    // Log axis with a little room around the data, at least half a decade tall.
    let (mut y_lo, mut y_hi) = (lo.log10() - 0.05, hi.log10() + 0.05);
    if y_hi - y_lo < 0.5 {
        let mid = (y_hi + y_lo) / 2.0;
        (y_lo, y_hi) = (mid - 0.25, mid + 0.25);
    }
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (x - x_min) / (x_max - x_min).max(1.0) * pw;
    let sy = |y: f64| TOP + (y_hi - y.log10()) / (y_hi - y_lo) * ph;

    // Grid and y labels at 1, 2, 5 x 10^k.
    for k in y_lo.floor() as i32..=y_hi.ceil() as i32 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(k);
            if v.log10() < y_lo - 1e-9 || v.log10() > y_hi + 1e-9 {
                continue;
            }
            let y = sy(v);
            let stroke = if m == 1.0 { "#bbb" } else { "#e6e6e6" };
            let _ = writeln!(
                svg,
                r#"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="{stroke}"/>"#,
                LEFT + pw
            );
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                format_tick(v)
            );
        }
    }
    // x labels: about 6 round steps.
    let step = nice_step((x_max - x_min) / 6.0);
    let mut x = (x_min / step).ceil() * step;
    while x <= x_max + 1e-9 {
        let px = sx(x);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{}" stroke="#eee"/>"##,
            TOP + ph
        );
        let _ = writeln!(
            svg,
            r#"<text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"#,
            TOP + ph + 18.0,
            x as u64
        );
        x += step;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ =
        writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">step</text>"#, LEFT + pw / 2.0, H - 10.0);
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">loss (MSE of predicted noise, log scale)</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    let line = |pts: &[(f64, f64)]| {
        pts.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect::<Vec<_>>().join(" ")
    };
    let _ =
        writeln!(svg, r##"<polyline points="{}" fill="none" stroke="#9ab" stroke-width="1"/>"##, line(&pts));
    let _ = writeln!(
        svg,
        r##"<polyline points="{}" fill="none" stroke="#c33" stroke-width="2"/>"##,
        line(&smooth(&pts))
    );
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#c33">smoothed</text><text x="{}" y="{}" text-anchor="end" fill="#9ab">per step</text>"##,
        LEFT + pw - 8.0,
        TOP + 16.0,
        LEFT + pw - 8.0,
        TOP + 32.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// Centred moving average over about 2% of the run (at least 5 steps), so the smoothed curve
/// does not lag behind the fast early drop.
fn smooth(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let half = ((pts.len() / 100).max(2)).min(pts.len().saturating_sub(1) / 2);
    (0..pts.len())
        .map(|i| {
            let (lo, hi) = (i.saturating_sub(half), (i + half).min(pts.len() - 1));
            let window = &pts[lo..=hi];
            (pts[i].0, window.iter().map(|p| p.1).sum::<f64>() / window.len() as f64)
        })
        .collect()
}

fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|&s| s >= raw).unwrap_or(10.0 * mag)
}

fn format_tick(v: f64) -> String {
    if (1e-3..1e4).contains(&v) {
        format!("{}", (v * 1e6).round() / 1e6)
    } else {
        format!("{v:.0e}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_a_falling_curve_on_a_log_axis() {
        let pts: Vec<(u64, f64)> = (1..=300).map(|s| (s, 1.0 / s as f64 + 0.03)).collect();
        let svg = loss_svg(&pts, "loss <unet>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("loss &lt;unet&gt;"));
        assert!(svg.contains(">0.05<") && svg.contains(">1<") && svg.contains(">0.1<"), "1-2-5 labels");
        assert!(svg.contains(">300<") || svg.contains(">250<"));
        assert!(loss_svg(&[(1, f64::NAN)], "x").contains("no finite loss values"));
        let s = smooth(&[(1.0, 2.0), (2.0, 2.0)]);
        assert!((s[0].1 - 2.0).abs() < 1e-12 && (s[1].1 - 2.0).abs() < 1e-12);
        let ramp: Vec<(f64, f64)> = (0..9).map(|i| (i as f64, i as f64)).collect();
        assert_eq!(smooth(&ramp)[4].1, 4.0, "a centred average does not lag a straight line");
    }
}

//! `rates.png`: the run's timeline drawn with `plotters` (bitmap backend, PNG encoder, no default
//! features). Top: target, produce (into Kafka) and ingest (records read) rates in events/s; bottom:
//! lag (high watermarks − stored offsets). Text needs a TrueType font: the first of a few common system
//! fonts is registered at run time (`ab_glyph`, pure Rust — no fontconfig); without one the chart is
//! drawn without text and the report says so.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::report::Point;

const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a system font as "sans-serif" (once per process). Returns whether text can be drawn.
fn register_font() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        FONT_PATHS.iter().any(|path| {
            std::fs::read(path).is_ok_and(|bytes| {
                // The font must live as long as the process: plotters keeps a reference.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
        })
    })
}

/// Draws the chart; returns whether it has text (axis labels, legend).
pub fn draw(path: &Path, points: &[Point], target_rate: f64) -> anyhow::Result<bool> {
    let text = register_font();
    draw_inner(path, points, target_rate, text)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("drawing {}", path.display()))?;
    Ok(text)
}

fn draw_inner(
    path: &Path,
    points: &[Point],
    target_rate: f64,
    text: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(500);
    let t_max = points.last().map_or(1.0, |p| p.t_s).max(1.0);
    let rate_max = points
        .iter()
        .map(|p| p.produce_rate.max(p.ingest_rate).max(p.durable_rate_5s))
        .fold(target_rate, f64::max)
        .max(1.0)
        * 1.15;
    let lag_max = (points.iter().map(|p| p.lag).max().unwrap_or(0) as f64).max(1.0) * 1.1;

    let mut rates = ChartBuilder::on(&top);
    rates.margin(12);
    if text {
        rates
            .caption(
                "events/s: target, produced, read by ingest, durable in PostgreSQL",
                ("sans-serif", 22),
            )
            .x_label_area_size(35)
            .y_label_area_size(80);
    }
    let mut rates = rates.build_cartesian_2d(0f64..t_max, 0f64..rate_max)?;
    let thousands = |v: &f64| format!("{:.0}k", v / 1000.0);
    let mut mesh = rates.configure_mesh();
    mesh.x_desc("seconds since production start")
        .y_label_formatter(&thousands);
    if !text {
        mesh.disable_x_mesh().x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    let target: Vec<f64> = points.iter().map(|p| p.target_rate).collect();
    let produced: Vec<f64> = points.iter().map(|p| p.produce_rate).collect();
    let ingested: Vec<f64> = points.iter().map(|p| p.ingest_rate).collect();
    let durable: Vec<f64> = points.iter().map(|p| p.durable_rate_5s).collect();
    let series = [
        ("target", RGBColor(150, 150, 150), target),
        ("produced into Kafka", BLUE, produced),
        ("read by ingest", RGBColor(220, 50, 30), ingested),
        ("durable (5 s average)", RGBColor(20, 150, 60), durable),
    ];
    for (name, color, values) in series {
        let drawn = rates.draw_series(LineSeries::new(
            points.iter().zip(values).map(|(p, v)| (p.t_s, v)),
            color.stroke_width(2),
        ))?;
        if text {
            drawn.label(name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    if text {
        rates
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
    }

    let mut lag = ChartBuilder::on(&bottom);
    lag.margin(12);
    if text {
        lag.caption(
            "lag: high watermarks − stored offsets (records)",
            ("sans-serif", 22),
        )
        .x_label_area_size(35)
        .y_label_area_size(80);
    }
    let mut lag = lag.build_cartesian_2d(0f64..t_max, 0f64..lag_max)?;
    let mut mesh = lag.configure_mesh();
    mesh.y_label_formatter(&thousands);
    if !text {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    lag.draw_series(LineSeries::new(
        points.iter().map(|p| (p.t_s, p.lag as f64)),
        RGBColor(120, 40, 160).stroke_width(2),
    ))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png() {
        let dir = std::env::temp_dir().join(format!("sluice-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rates.png");
        let points: Vec<Point> = (0..30)
            .map(|i| Point {
                t_s: f64::from(i),
                produce_rate: 1000.0,
                ingest_rate: 900.0 + f64::from(i),
                lag: i64::from(i * 100),
                ..Point::default()
            })
            .collect();
        draw(&path, &points, 1000.0).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

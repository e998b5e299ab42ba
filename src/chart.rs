//! The benchmarks' charts: SVG line charts drawn with `plotters` (its SVG
//! backend: no C dependency, no font files), and the machine and date they
//! were measured on, printed under the title.

use std::path::Path;

use plotters::prelude::*;

/// Where a panel's legend goes.
pub use plotters::prelude::SeriesLabelPosition;

/// One line of a chart panel: a name and its (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend's name.
    pub name: String,
    /// Points, in order of x.
    pub points: Vec<(f64, f64)>,
    /// Drawn thin and light (a second figure of the same subject, e.g.
    /// p99 next to p50), with the colour of the series it follows.
    pub secondary: bool,
}

/// A panel: its caption, the y axis' label and its lines, over a
/// logarithmic x axis (in-flight counts).
#[derive(Debug, Clone)]
pub struct Panel {
    /// Above the panel.
    pub caption: String,
    /// The y axis' label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// A logarithmic y axis (latencies that span decades).
    pub log_y: bool,
    /// Where the legend goes, out of the lines' way.
    pub legend: SeriesLabelPosition,
}

/// The colours, in order of the series (a secondary series takes the
/// colour of the primary before it).
const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Writes `panels` side by side to the SVG file `path`, under `title` and a
/// subtitle (the machine and the date); `x_label` names the shared x axis.
///
/// # Errors
///
/// What `plotters` reported (writing the file, or an empty panel).
pub fn write(
    path: &Path,
    title: &str,
    subtitle: &str,
    x_label: &str,
    panels: &[Panel],
) -> Result<(), String> {
    let width = 560 * u32::try_from(panels.len().max(1)).unwrap_or(1);
    let root = SVGBackend::new(path, (width, 470)).into_drawing_area();
    root.fill(&WHITE).map_err(|error| error.to_string())?;
    let (head, body) = root.split_vertically(56);
    head.draw(&Text::new(title, (12, 8), ("sans-serif", 20)))
        .map_err(|error| error.to_string())?;
    head.draw(&Text::new(
        subtitle,
        (12, 34),
        ("sans-serif", 13).into_font().color(&BLACK.mix(0.7)),
    ))
    .map_err(|error| error.to_string())?;
    for (area, panel) in body
        .split_evenly((1, panels.len().max(1)))
        .iter()
        .zip(panels)
    {
        draw_panel(area, x_label, panel)?;
    }
    root.present().map_err(|error| error.to_string())
}

/// One contender of a benchmark's chart: its name and, per in-flight count,
/// its (rate, p50, p99).
#[derive(Debug, Clone)]
pub struct Contender {
    /// The legend's name.
    pub name: String,
    /// (in flight, [rate, p50 µs, p99 µs]), in order of in flight.
    pub points: Vec<(f64, [f64; 3])>,
}

/// The benchmarks' chart: a panel of the rate (`rate_label`, e.g.
/// "packets/s", under `rate_caption`) and one of the p50 (thick) and p99
/// (thin) round trip, both by in-flight count, written to the SVG file
/// `file`; prints where it went. For a bench's `main`: on an error it
/// prints it and ends the process (status 1).
pub fn draw_or_exit(
    file: &str,
    title: &str,
    subtitle: &str,
    x_label: &str,
    (rate_caption, rate_label): (&str, &str),
    contenders: &[Contender],
) {
    let line = |contender: &Contender, figure: usize, name: String, secondary| Series {
        name,
        points: contender
            .points
            .iter()
            .map(|(x, figures)| (*x, figures[figure]))
            .collect(),
        secondary,
    };
    let panels = [
        Panel {
            caption: rate_caption.to_owned(),
            y_label: rate_label.to_owned(),
            series: contenders
                .iter()
                .map(|contender| line(contender, 0, contender.name.clone(), false))
                .collect(),
            log_y: false,
            legend: SeriesLabelPosition::LowerRight,
        },
        Panel {
            caption: "round trip, p50 (thick) and p99 (thin)".to_owned(),
            y_label: "µs".to_owned(),
            series: contenders
                .iter()
                .flat_map(|contender| {
                    [
                        line(contender, 1, format!("{} p50", contender.name), false),
                        line(contender, 2, format!("{} p99", contender.name), true),
                    ]
                })
                .collect(),
            log_y: true,
            legend: SeriesLabelPosition::UpperLeft,
        },
    ];
    match write(Path::new(file), title, subtitle, x_label, &panels) {
        Ok(()) => println!("\nchart: {file}"),
        Err(error) => {
            eprintln!("SANSIO_BENCH_CHART={file}: {error}");
            std::process::exit(1);
        }
    }
}

/// The range of `values` with some room, for an axis.
fn range(values: impl Iterator<Item = f64> + Clone, log: bool) -> Result<(f64, f64), String> {
    let finite = values.filter(|value| value.is_finite() && (!log || *value > 0.0));
    let low = finite.clone().fold(f64::INFINITY, f64::min);
    let high = finite.fold(f64::NEG_INFINITY, f64::max);
    if !low.is_finite() || !high.is_finite() {
        return Err("a panel without a finite point".to_owned());
    }
    Ok(if log {
        (low / 1.5, high * 1.5)
    } else {
        (0.0, high * 1.1 + f64::EPSILON)
    })
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    x_label: &str,
    panel: &Panel,
) -> Result<(), String> {
    let points = || panel.series.iter().flat_map(|series| series.points.iter());
    let (x_low, x_high) = range(points().map(|point| point.0), true)?;
    let (y_low, y_high) = range(points().map(|point| point.1), panel.log_y)?;
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&panel.caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(72);
    let x = (x_low..x_high).log_scale();
    let error = |error: plotters::drawing::DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
    let whole = |value: &f64| format!("{value:.0}");
    let faint = BLACK.mix(0.04);
    if panel.log_y {
        let mut chart = builder
            .build_cartesian_2d(x, (y_low..y_high).log_scale())
            .map_err(error)?;
        chart
            .configure_mesh()
            .light_line_style(faint)
            .x_desc(x_label)
            .x_label_formatter(&whole)
            .y_desc(&panel.y_label)
            .y_label_formatter(&whole)
            .draw()
            .map_err(error)?;
        lines(&mut chart, panel).map_err(error)?;
    } else {
        let mut chart = builder
            .build_cartesian_2d(x, y_low..y_high)
            .map_err(error)?;
        chart
            .configure_mesh()
            .light_line_style(faint)
            .x_desc(x_label)
            .x_label_formatter(&whole)
            .y_desc(&panel.y_label)
            .y_label_formatter(&|value| si(*value))
            .draw()
            .map_err(error)?;
        lines(&mut chart, panel).map_err(error)?;
    }
    Ok(())
}

/// Draws the panel's lines and their legend on `chart`.
fn lines<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    panel: &Panel,
) -> Result<(), plotters::drawing::DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let mut colour = 0;
    for (index, series) in panel.series.iter().enumerate() {
        if index > 0 && !series.secondary {
            colour += 1;
        }
        let base = COLOURS[colour % COLOURS.len()];
        let style = if series.secondary {
            base.mix(0.45).stroke_width(1)
        } else {
            base.stroke_width(2)
        };
        let points: Vec<(f64, f64)> = series
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0)
            .collect();
        chart
            .draw_series(
                LineSeries::new(points, style).point_size(if series.secondary { 2 } else { 3 }),
            )?
            .label(series.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    chart
        .configure_series_labels()
        .position(panel.legend.clone())
        .label_font(("sans-serif", 11))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
}

/// `value` with an SI suffix: 1.2k, 350k, 1.4M.
fn si(value: f64) -> String {
    match value.abs() {
        v if v >= 1e6 => format!("{:.1}M", value / 1e6),
        v if v >= 1e3 => format!("{:.0}k", value / 1e3),
        _ => format!("{value:.0}"),
    }
}

/// The machine this process runs on, for a chart's subtitle: CPUs and
/// model, whether it is a virtual machine, the kernel.
#[must_use]
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let virtual_machine = cpuinfo.contains(" hypervisor");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPUs, {model}{}, Linux {}",
        if virtual_machine { " (VM)" } else { "" },
        kernel.trim()
    )
}

/// Today's date (UTC), as `YYYY-MM-DD`.
#[must_use]
pub fn today() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (year, month, day) = civil(i64::try_from(seconds / 86_400).unwrap_or(0));
    format!("{year:04}-{month:02}-{day:02}")
}

/// The (year, month, day) of `days` since 1970-01-01, in the proleptic
/// Gregorian calendar (the "days from civil" inverse, by 400-year eras).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_counted_from_the_epoch() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(59), (1970, 3, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(20_788), (2026, 12, 1));
        assert_eq!(civil(-1), (1969, 12, 31));
    }

    #[test]
    fn a_chart_is_an_svg_with_every_series_named() {
        let path = std::env::temp_dir().join(format!("sansio-chart-{}.svg", std::process::id()));
        let series = |name: &str, scale: f64, secondary| Series {
            name: name.to_owned(),
            points: [1.0, 8.0, 64.0, 256.0]
                .iter()
                .map(|&x| (x, x * scale))
                .collect(),
            secondary,
        };
        let panels = [
            Panel {
                caption: "packets/s".to_owned(),
                y_label: "packets/s".to_owned(),
                series: vec![
                    series("sansio", 1000.0, false),
                    series("tokio", 800.0, false),
                ],
                log_y: false,
                legend: SeriesLabelPosition::LowerRight,
            },
            Panel {
                caption: "round trip".to_owned(),
                y_label: "µs".to_owned(),
                series: vec![
                    series("sansio p50", 1.0, false),
                    series("sansio p99", 3.0, true),
                ],
                log_y: true,
                legend: SeriesLabelPosition::UpperLeft,
            },
        ];
        write(
            &path,
            "A title",
            "on a machine, today",
            "in flight",
            &panels,
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        for text in [
            "A title",
            "on a machine, today",
            "sansio p99",
            "tokio",
            "in flight",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(svg.matches("<polyline").count() >= 4, "one line per series");
        let empty = Panel {
            caption: String::new(),
            y_label: String::new(),
            series: Vec::new(),
            log_y: false,
            legend: SeriesLabelPosition::UpperLeft,
        };
        assert!(write(&path, "t", "s", "x", &[empty]).is_err());
        let _ = std::fs::remove_file(&path);
    }
}

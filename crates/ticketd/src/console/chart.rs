//! The overview's chart: calls per minute over the last hour by outcome, drawn on the server
//! as SVG (no script, no chart library), and the answers by code beside it as a table, which
//! is also how a screen reader reads the chart.
//!
//! Colours are SVG presentation attributes, not `style`: the console's
//! `Content-Security-Policy: default-src 'self'` refuses inline styles.

use maud::{html, Markup};
use top_protocol::PlatformCode;

use crate::traffic::{MinuteCounts, TrafficWindow, OTHER_CODE, WINDOW_MINUTES};

use super::i18n::Texts;

/// The drawing's size in SVG units; it scales to the page's width.
const WIDTH: u32 = 720;
const HEIGHT: u32 = 180;
/// Room under the bars for the baseline.
const AXIS: u32 = 2;

/// The three outcomes, bottom to top, with their colours (distinct also to colour-blind eyes:
/// blue, orange and dark red differ in lightness too).
const SERIES: [(Series, &str); 3] = [
    (Series::Accepted, "#1f6fb2"),
    (Series::Replayed, "#e69f00"),
    (Series::Refused, "#a4161a"),
];

#[derive(Debug, Clone, Copy)]
enum Series {
    Accepted,
    Replayed,
    Refused,
}

impl Series {
    fn of(self, m: &MinuteCounts) -> u64 {
        match self {
            Series::Accepted => m.accepted,
            Series::Replayed => m.replayed,
            Series::Refused => m.refused,
        }
    }

    fn name(self, t: &Texts) -> &'static str {
        match self {
            Series::Accepted => t.accepted,
            Series::Replayed => t.replayed,
            Series::Refused => t.refused,
        }
    }
}

/// The chart and its legend.
pub(super) fn calls_per_minute(t: &Texts, window: &TrafficWindow) -> Markup {
    let plot = HEIGHT - AXIS;
    let totals = SERIES.map(|(s, _)| window.minutes.iter().map(|m| s.of(m)).sum::<u64>());
    let summary = format!(
        "{}: {} {}, {} {}, {} {}; {} {}",
        t.calls_last_hour,
        totals[0],
        t.accepted,
        totals[1],
        t.replayed,
        totals[2],
        t.refused,
        t.busiest_minute,
        window.peak()
    );
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-labelledby="chart-title chart-desc"
                xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="none" {
                title id="chart-title" { (t.calls_per_minute) }
                desc id="chart-desc" { (summary) }
                line x1="0" y1=(plot) x2=(WIDTH) y2=(plot) stroke="#5b6475" stroke-width="1" {}
                @for bar in bars(window) {
                    rect x=(bar.x) y=(bar.y) width=(bar.width) height=(bar.height) fill=(bar.colour) {
                        title { (bar.series.name(t)) ": " (bar.calls) }
                    }
                }
            }
            // The axis in HTML, not SVG text: it keeps its size when the drawing shrinks to a
            // phone's width.
            div.axis aria-hidden="true" { span { (t.hour_ago) } span { (t.busiest_minute) " " (window.peak()) } span { (t.now) } }
            figcaption {
                ul.legend {
                    @for (i, (series, colour)) in SERIES.iter().enumerate() {
                        li {
                            svg.swatch viewBox="0 0 10 10" aria-hidden="true" xmlns="http://www.w3.org/2000/svg" {
                                rect width="10" height="10" fill=(colour) {}
                            }
                            " " (series.name(t)) " " (totals[i])
                        }
                    }
                }
            }
        }
    }
}

/// One outcome's part of one minute's stacked bar.
#[derive(Debug)]
struct Bar {
    x: u32,
    y: u32,
    width: u32,
    height: u32,
    colour: &'static str,
    series: Series,
    calls: u64,
}

/// The stacked bars, one per minute with calls, scaled to the busiest minute.
fn bars(window: &TrafficWindow) -> Vec<Bar> {
    let peak = u128::from(window.peak().max(1));
    let plot = HEIGHT - AXIS;
    let slot = WIDTH / WINDOW_MINUTES as u32;
    let mut bars = Vec::new();
    for (i, minute) in (0u32..).zip(&window.minutes) {
        let mut top = plot;
        for (series, colour) in SERIES {
            let calls = series.of(minute);
            if calls == 0 {
                continue;
            }
            // At least one unit tall, so a single call is visible.
            let height = u32::try_from(u128::from(calls) * u128::from(plot) / peak)
                .unwrap_or(plot)
                .clamp(1, top.max(1));
            let y = top.saturating_sub(height);
            bars.push(Bar {
                x: i * slot + 1,
                y,
                width: slot.saturating_sub(2),
                height: top - y,
                colour,
                series,
                calls,
            });
            top = y;
        }
    }
    bars
}

/// The hour's answers by code, most frequent first.
pub(super) fn answers_by_code(t: &Texts, window: &TrafficWindow) -> Markup {
    let mut codes: Vec<(u32, u64)> = window.codes.iter().map(|(c, n)| (*c, *n)).collect();
    codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    html! {
        @if codes.is_empty() {
            p.hint { (t.no_calls_last_hour) }
        } @else {
            table.codes {
                thead { tr { th scope="col" { (t.code) } th scope="col" { (t.meaning) } th.num scope="col" { (t.calls) } } }
                tbody {
                    @for (code, n) in &codes {
                        tr {
                            @match *code {
                                0 => { td { "0" } td { (t.success) } }
                                OTHER_CODE => { td { "—" } td { (t.other_codes) } }
                                c => {
                                    td { (c) }
                                    td { (PlatformCode::from_code(c).map_or("", PlatformCode::msg)) }
                                }
                            }
                            td.num { (n) }
                        }
                    }
                }
            }
        }
    }
}

//! The HTML map: one self-contained page (every script and style inlined, no request
//! made) that draws a topology with the vendored Cytoscape.js, lists every service and
//! dependency as text, and, where given, steps through time frames, marks the findings
//! and diff of `smap analyze`, or follows `smap watch` live.
//!
//! The page computes nothing about attribution: what it draws is a [`Topology`], or
//! frames the engine took (`build::fold_frames`), or what `/map` serves.

mod frames;
mod marks;

use serde::Serialize;

use crate::analysis::Report;
use crate::build::Frame;
use crate::topology::Topology;

pub use frames::frame_budget;

/// The page's own code, and the libraries it inlines (`web/vendor.sh` fetches them).
const TEMPLATE: &str = include_str!("../../web/map.html");
const STYLE: &str = include_str!("../../web/map.css");
const SCRIPT: &str = include_str!("../../web/map.js");
const VENDOR: [&str; 4] = [
    include_str!("../../web/vendor/cytoscape.min.js"),
    include_str!("../../web/vendor/layout-base.js"),
    include_str!("../../web/vendor/cose-base.js"),
    include_str!("../../web/vendor/cytoscape-fcose.js"),
];

/// Schema of the data block the page reads.
pub const PAGE_SCHEMA: &str = "smap.map-page/v1";

/// Where the page's map comes from.
#[derive(Clone, Debug)]
pub enum Source<'a> {
    /// A topology, fixed.
    Topology(&'a Topology),
    /// A topology and the frames that led to it (the last is the topology).
    Frames(&'a [Frame]),
    /// `smap watch`: the page polls these paths of the server that serves it.
    Live {
        /// Path of the topology (`/map`).
        map: &'a str,
        /// Path of the agent's statistics (`/stats`).
        stats: &'a str,
        /// Poll interval in milliseconds.
        interval_ms: u64,
    },
}

/// What one page shows.
#[derive(Clone, Debug)]
pub struct Page<'a> {
    /// Shown as the page's title and heading.
    pub title: &'a str,
    /// The map.
    pub source: Source<'a>,
    /// `smap analyze`'s report, whose findings and diff the map marks.
    pub report: Option<&'a Report>,
}

#[derive(Serialize)]
struct Data<'a> {
    schema: &'static str,
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    topology: Option<&'a Topology>,
    frames: Vec<frames::FrameData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<Live<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    marks: Option<marks::Marks>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report_text: Option<String>,
}

#[derive(Serialize)]
struct Live<'a> {
    map: &'a str,
    stats: &'a str,
    interval_ms: u64,
}

/// How many report lines per section the findings panel shows, as `smap analyze`.
const REPORT_TOP: usize = 10;

impl Page<'_> {
    /// The page as one HTML document.
    pub fn render(&self) -> String {
        let (topology, frames, live) = match &self.source {
            Source::Topology(topology) => (Some(*topology), Vec::new(), None),
            Source::Frames(frames) => {
                let last = frames.last().map(|frame| &frame.topology);
                let data = match last {
                    Some(last) if frames.len() > 1 => {
                        frames::carried(frames, frame_budget(last)).map(|f| frames::FrameData::new(f, last)).collect()
                    }
                    _ => Vec::new(),
                };
                (last, data, None)
            }
            Source::Live { map, stats, interval_ms } => {
                (None, Vec::new(), Some(Live { map, stats, interval_ms: *interval_ms }))
            }
        };
        let data = Data {
            schema: PAGE_SCHEMA,
            title: self.title,
            topology,
            frames,
            live,
            marks: self.report.map(marks::Marks::of),
            report_text: self.report.map(|report| report.to_text(REPORT_TOP)),
        };
        // Only `connect` differs: a file asks nothing of anyone, a live page its server.
        let connect = if matches!(self.source, Source::Live { .. }) { "'self'" } else { "'none'" };
        fill(
            TEMPLATE,
            &[
                ("{{connect}}", connect),
                ("{{title}}", &escape_text(self.title)),
                ("/*{{style}}*/", STYLE),
                ("/*{{vendor}}*/", &VENDOR.join("\n;\n")),
                ("/*{{script}}*/", SCRIPT),
                ("{{data}}", &script_json(&data)),
            ],
        )
    }
}

/// JSON that cannot end the `<script>` element it sits in: every `<` (only ever inside
/// a string) escaped as `\u003c`.
fn script_json(data: &impl Serialize) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned()).replace('<', "\\u003c")
}

fn escape_text(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Replaces each marker of `template` (in any order) by its value; markers are looked
/// for in the template only, never in the values put in.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    loop {
        let next = values
            .iter()
            .filter_map(|(marker, value)| rest.find(marker).map(|at| (at, *marker, *value)))
            .min_by_key(|(at, ..)| *at);
        let Some((at, marker, value)) = next else { break };
        out.push_str(&rest[..at]);
        out.push_str(value);
        rest = &rest[at + marker.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_in_values_are_not_filled() {
        let out = fill("a {{x}} b {{y}} c", &[("{{x}}", "{{y}}"), ("{{y}}", "Y")]);
        assert_eq!(out, "a {{y}} b Y c");
    }

    #[test]
    fn data_cannot_close_its_script_element() {
        let json = script_json(&serde_json::json!({"name": "</script><script>alert(1)</script>"}));
        assert!(!json.contains("</"));
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["name"], "</script><script>alert(1)</script>");
    }
}

//! The time frames of the HTML map's slider: each is what the engine makes of the
//! events up to its moment, the last is the whole build, and a real capture's map grows
//! from frame to frame.

use std::path::Path;

use smap_analyze::build::fold_frames;
use smap_analyze::{build_topology, BuildInput, Config, Engine};
use smap_replay::{MergedEvents, Recording};

fn input(name: &str) -> BuildInput {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recordings").join(name);
    BuildInput::new(vec![Recording::open(&dir).unwrap()], vec![])
}

#[test]
fn each_frame_is_the_engines_map_of_the_events_up_to_its_time() {
    let (_, frames) = fold_frames(input("captured-shop"), Config::default(), 6, &mut |_| {}).unwrap();
    assert_eq!(frames.len(), 6);
    let recording = input("captured-shop").recordings.remove(0);
    for frame in &frames {
        let mut engine = Engine::new(Config::default());
        let c = &recording.meta().counters;
        engine.add_source_losses(c.dropped, c.evicted, c.unparsed);
        for event in MergedEvents::facts(std::slice::from_ref(&recording), vec![]).unwrap() {
            let event = event.unwrap();
            if event.time_ns() > frame.time_ns {
                break;
            }
            engine.apply(&event);
        }
        assert_eq!(engine.topology(), frame.topology, "frame at {}", frame.time_ns);
    }
}

#[test]
fn the_last_frame_is_the_build_and_the_map_grows_towards_it() {
    let (_, frames) = fold_frames(input("captured-shop"), Config::default(), 24, &mut |_| {}).unwrap();
    let built = build_topology(input("captured-shop"), Config::default(), &mut |_| {}).unwrap();
    assert_eq!(frames.last().unwrap().topology, built);
    assert!(frames.windows(2).all(|w| w[0].time_ns < w[1].time_ns), "frames in time order");
    let edges: Vec<usize> = frames.iter().map(|f| f.topology.edges.len()).collect();
    assert!(edges.windows(2).all(|w| w[0] <= w[1]), "no edge forgotten without retention: {edges:?}");
    assert!(edges[0] < edges[23], "the capture's calls came one after another: {edges:?}");
    let meta = input("captured-shop").recordings.remove(0).meta().clone();
    assert_eq!(frames.last().unwrap().time_ns, meta.end_ns.unwrap());
}

//! Map matching against real data in `../shared/data/real/`: a real out-and-back run, a real car
//! loop with a GPS jump, and synthetic noisy riders over every real course.

use flevum_engine::core::geodesy::{LocalFrame, geodesic_distance_m};
use flevum_engine::core::{Course, CourseIndex, Fix, Matcher, MatcherConfig};
use flevum_engine::testkit::{
    Excursion, SyntheticConfig, clear_excursion_start, score_track, synthetic_track,
};
use geo::SimplifyIdx;

use crate::support::real_data;

/// Timed fixes of a recorded GPX track.
fn recorded_fixes(file: &str) -> Option<Vec<Fix>> {
    let path = real_data(file)?;
    let gpx = gpx::read(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for p in gpx.tracks[0].segments.iter().flat_map(|s| &s.points) {
        let time = p.time.unwrap();
        let odt: time::OffsetDateTime = time.into();
        out.push(Fix {
            time_ms: (odt.unix_timestamp_nanos() / 1_000_000) as i64,
            lat: p.point().y(),
            lon: p.point().x(),
            accuracy_m: None,
            speed_mps: None,
            heading_deg: None,
        });
    }
    Some(out)
}

/// A course made from a recording's own line, simplified with Douglas–Peucker at 10 m.
fn course_from_fixes(name: &str, fixes: &[Fix]) -> Course {
    let frame = LocalFrame::new(fixes[0].lat, fixes[0].lon);
    let line: geo::LineString<f64> = fixes
        .iter()
        .map(|f| {
            let (x, y) = frame.project(f.lat, f.lon);
            geo::Coord { x, y }
        })
        .collect();
    let keep = line.simplify_idx(10.0);
    let pts: Vec<_> = keep
        .iter()
        .map(|&i| (fixes[i].lat, fixes[i].lon, None))
        .collect();
    Course::from_points(name, &pts).unwrap()
}

#[test]
fn real_out_and_back_run_stays_on_the_right_leg() {
    let Some(fixes) = recorded_fixes("track_garmin_run_out_and_back_12_8km_5s.gpx") else {
        return;
    };
    let index = CourseIndex::new(course_from_fixes("garmin run", &fixes));
    let length = index.course().length_m();
    // The turnaround is the fix farthest from the start.
    let (turn_idx, _) = fixes
        .iter()
        .enumerate()
        .map(|(i, f)| {
            (
                i,
                geodesic_distance_m(fixes[0].lat, fixes[0].lon, f.lat, f.lon),
            )
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    let mut m = Matcher::new(MatcherConfig::default());
    let matched: Vec<_> = fixes.iter().map(|f| m.match_fix(&index, f)).collect();
    let turn_d = matched[turn_idx].distance_m;

    let mut max_so_far = 0.0f64;
    for (i, r) in matched.iter().enumerate() {
        assert!(
            r.distance_m >= max_so_far - 30.0,
            "fix {i}: progress went back from {max_so_far:.0} to {:.0} m",
            r.distance_m
        );
        max_so_far = max_so_far.max(r.distance_m);
    }
    let wrong: Vec<_> = matched[turn_idx + 1..]
        .iter()
        .enumerate()
        .filter(|(_, r)| r.distance_m < turn_d - 30.0)
        .map(|(i, r)| (turn_idx + 1 + i, r.distance_m))
        .collect();
    assert!(
        wrong.is_empty(),
        "return-leg fixes on the outbound leg: {wrong:?}"
    );
    let last = matched.last().unwrap().distance_m;
    let err = (last - length).abs() / length;
    assert!(
        err < 0.02,
        "final progress {last:.0} m vs course {length:.0} m"
    );
    eprintln!(
        "garmin out-and-back: {} fixes, course {:.0} m, turnaround at {:.0} m, final {:.0} m ({:.2} % off)",
        fixes.len(),
        length,
        turn_d,
        last,
        err * 100.0
    );
}

#[test]
fn real_gps_jump_in_the_car_loop_moves_progress_little() {
    let Some(fixes) = recorded_fixes("track_etrex20x_car_loop_2_7km_1hz.gpx") else {
        return;
    };
    // Find the jump: the step with the highest implied speed.
    let speed = |i: usize| {
        let (a, b) = (&fixes[i - 1], &fixes[i]);
        geodesic_distance_m(a.lat, a.lon, b.lat, b.lon) / ((b.time_ms - a.time_ms) as f64 / 1000.0)
    };
    let jump = (1..fixes.len())
        .max_by(|&a, &b| speed(a).total_cmp(&speed(b)))
        .unwrap();
    assert!(speed(jump) * 3.6 > 90.0, "expected the known ~94 km/h jump");
    // The course is the road: the recording without the jumped fix.
    let road: Vec<Fix> = fixes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != jump)
        .map(|(_, f)| *f)
        .collect();
    let index = CourseIndex::new(course_from_fixes("car loop", &road));
    let mut m = Matcher::new(MatcherConfig {
        max_speed_mps: 40.0,
        ..MatcherConfig::default()
    });
    let matched: Vec<_> = fixes.iter().map(|f| m.match_fix(&index, f)).collect();
    // Where progress would be without the jump: interpolated in time between its neighbours.
    let (a, b) = (&matched[jump - 1], &matched[jump + 1]);
    let t = (fixes[jump].time_ms - a.time_ms) as f64 / (b.time_ms - a.time_ms) as f64;
    let expected = a.distance_m + t * (b.distance_m - a.distance_m);
    let moved = matched[jump].distance_m - expected;
    assert!(
        moved.abs() <= 100.0,
        "the jump moved progress by {moved:.0} m"
    );
    let last = matched.last().unwrap().distance_m;
    assert!(
        (last - index.course().length_m()).abs() < 60.0,
        "final {last:.0} of {:.0} m",
        index.course().length_m()
    );
    eprintln!(
        "car loop: jump at fix {jump} ({:.1} km/h) moved progress {moved:.1} m",
        speed(jump) * 3.6
    );
}

const COURSES: [&str; 4] = [
    "course_ragbrai_day4_gravel_128km.gpx",
    "course_gaia_tahoe_169km_cptr006.gpx",
    "course_rwgps_old_la_honda_skyline_48km_cptr003.gpx",
    "course_strava_route_seattle_4_5km_out_and_back.gpx",
];

#[test]
fn real_courses_project_within_a_tenth_of_a_percent() {
    for file in COURSES {
        let Some(path) = real_data(file) else { return };
        let course = Course::from_gpx_file(path).unwrap();
        let plane: f64 = course
            .points()
            .windows(2)
            .map(|w| (w[1].x - w[0].x).hypot(w[1].y - w[0].y))
            .sum();
        let rel = (plane - course.length_m()).abs() / course.length_m();
        assert!(
            rel < 0.001,
            "{file}: projected length off by {:.4} %",
            rel * 100.0
        );
        eprintln!(
            "{file}: {:.2} km geodesic, projected off by {:.5} %, ascent {:.0} m",
            course.length_m() / 1000.0,
            rel * 100.0,
            course.ascent_m()
        );
    }
}

#[test]
fn synthetic_riders_on_every_real_course() {
    let config = MatcherConfig::default();
    for file in COURSES {
        let Some(path) = real_data(file) else { return };
        let index = CourseIndex::new(Course::from_gpx_file(path).unwrap());
        for noise in [5.0, 10.0, 20.0] {
            let (mut within, mut on, mut wrong, mut false_alarms) = (0, 0, 0, 0);
            for seed in 0..3 {
                let cfg = SyntheticConfig {
                    noise_m: noise,
                    ..SyntheticConfig::default()
                };
                let s = score_track(&index, &config, &synthetic_track(&index, &cfg, seed));
                within += s.within_20m;
                on += s.on_course_fixes;
                wrong += s.wrong_leg;
                false_alarms += s.false_alarms;
            }
            let share = within as f64 / on as f64;
            eprintln!(
                "{file} noise {noise} m: {:.2} % within 20 m, wrong leg {wrong}, false off-course {false_alarms}",
                share * 100.0
            );
            if noise <= 10.0 {
                assert!(share >= 0.99, "{file} at {noise} m: {:.2} %", share * 100.0);
            }
            assert_eq!(false_alarms, 0, "{file} at {noise} m");
            if file.contains("out_and_back") {
                assert_eq!(wrong, 0, "{file} at {noise} m: wrong-leg fixes");
            }
        }
        // A rider who leaves the course by 200 m is flagged, within the minimum duration plus
        // the sampling interval.
        let cfg = SyntheticConfig {
            noise_m: 10.0,
            dropout_probability: 0.0,
            excursion: Some(Excursion {
                at_m: clear_excursion_start(&index, 200.0).expect("no clear place to leave"),
                offset_m: 200.0,
                hold_s: 120.0,
            }),
            ..SyntheticConfig::default()
        };
        let s = score_track(&index, &config, &synthetic_track(&index, &cfg, 42));
        let latency = s.off_course_latency_s.expect("excursion not detected");
        assert!(
            latency <= 20.0 + 10.0 + 10.0,
            "{file}: detected after {latency} s"
        );
        assert_eq!(s.false_alarms, 0, "{file}");
        eprintln!("{file}: off-course detected {latency:.0} s after crossing 75 m");
    }
}

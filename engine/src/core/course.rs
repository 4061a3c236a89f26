//! The race course: one polyline with cumulative distance, elevation and checkpoints.
//!
//! Owns loading (GPX tracks or routes, GeoJSON LineString), cleaning, the local metric frame,
//! geodesic cumulative distance and distance↔position lookups. Does not index segments (see
//! `course_index`) or match fixes (see `matcher`).

use std::path::Path;

use super::geodesy::{LocalFrame, geodesic_distance_m, planar_len};

/// Longest plausible gap between two consecutive course points, metres. A larger jump is a broken
/// file (e.g. a stray point at 0,0), not a course.
const MAX_POINT_GAP_M: f64 = 50_000.0;
/// Consecutive points closer than this are duplicates and dropped, metres.
const DUPLICATE_M: f64 = 0.05;
/// Elevation change that must accumulate before it counts towards ascent (GPS/DEM noise filter).
const ASCENT_HYSTERESIS_M: f64 = 3.0;

/// Errors loading or building a course.
#[derive(Debug, thiserror::Error)]
pub enum CourseError {
    /// The file could not be read.
    #[error("cannot read course file {path}: {source}")]
    Io {
        /// Path that failed.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The GPX could not be parsed.
    #[error("malformed GPX: {0}")]
    Gpx(String),
    /// The GeoJSON could not be parsed or has no LineString.
    #[error("malformed GeoJSON: {0}")]
    GeoJson(String),
    /// The file has no points.
    #[error("course has no points")]
    Empty,
    /// After removing duplicates only one point is left.
    #[error("course has a single distinct point")]
    SinglePoint,
    /// A coordinate is outside the valid range or not a number.
    #[error("invalid coordinate at point {index}: lat {lat}, lon {lon}")]
    InvalidCoordinate {
        /// Index of the point in the file.
        index: usize,
        /// Latitude.
        lat: f64,
        /// Longitude.
        lon: f64,
    },
    /// Two consecutive points are absurdly far apart.
    #[error("jump of {jump_m:.0} m between points {index} and {next} (limit {MAX_POINT_GAP_M} m)", next = index + 1)]
    AbsurdJump {
        /// Index of the first point.
        index: usize,
        /// Jump length in metres.
        jump_m: f64,
    },
    /// A checkpoint is not on the course.
    #[error("checkpoint {name:?}: {reason}")]
    Checkpoint {
        /// Checkpoint name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// One vertex of the course polyline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoursePoint {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// Easting in the course's local metric frame, metres.
    pub x: f64,
    /// Northing in the course's local metric frame, metres.
    pub y: f64,
    /// Elevation in metres, if the source had it.
    pub elevation_m: Option<f64>,
    /// Cumulative geodesic distance along the course from the start, metres.
    pub distance_m: f64,
}

/// Precomputed geometry of the segment from point `i` to point `i + 1`, for the matcher's hot path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Start in the local frame.
    pub ax: f64,
    /// Start in the local frame.
    pub ay: f64,
    /// Unit direction in the local frame (east component).
    pub ux: f64,
    /// Unit direction in the local frame (north component).
    pub uy: f64,
    /// Length in the local frame, metres.
    pub plane_len: f64,
    /// Course distance at the start, metres.
    pub start_m: f64,
    /// Geodesic length, metres.
    pub len_m: f64,
}

impl Segment {
    /// Projects a local point onto the segment: `(course distance, lateral offset)`.
    #[inline]
    pub fn project(&self, x: f64, y: f64) -> (f64, f64) {
        let (dx, dy) = (x - self.ax, y - self.ay);
        let along = (dx * self.ux + dy * self.uy).clamp(0.0, self.plane_len);
        let (px, py) = (self.ax + self.ux * along, self.ay + self.uy * along);
        let t = if self.plane_len > 0.0 {
            along / self.plane_len
        } else {
            0.0
        };
        (self.start_m + t * self.len_m, planar_len(x - px, y - py))
    }

    /// Bearing of the segment in degrees clockwise from north.
    pub fn bearing_deg(&self) -> f64 {
        self.ux.atan2(self.uy).to_degrees().rem_euclid(360.0)
    }
}

/// A named point on the course at a known distance.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Name shown to fans.
    pub name: String,
    /// Distance along the course, metres.
    pub distance_m: f64,
}

/// A loaded, cleaned race course.
#[derive(Debug, Clone)]
pub struct Course {
    /// Display name (from the file, or the caller).
    name: String,
    /// Cleaned polyline with cumulative distance.
    points: Vec<CoursePoint>,
    /// Segment geometry, one per consecutive point pair.
    segments: Vec<Segment>,
    /// Checkpoints sorted by distance.
    checkpoints: Vec<Checkpoint>,
    /// The local metric frame, centred on the course's bounding box.
    frame: LocalFrame,
    /// Total ascent, metres (0 without elevation data).
    ascent_m: f64,
}

impl Course {
    /// Builds a course from `(lat, lon, elevation)` points in order.
    pub fn from_points(
        name: impl Into<String>,
        raw: &[(f64, f64, Option<f64>)],
    ) -> Result<Self, CourseError> {
        if raw.is_empty() {
            return Err(CourseError::Empty);
        }
        let (mut min_lat, mut max_lat, mut min_lon, mut max_lon) =
            (90.0f64, -90.0f64, 180.0f64, -180.0f64);
        for (index, &(lat, lon, _)) in raw.iter().enumerate() {
            if !lat.is_finite() || !lon.is_finite() || lat.abs() > 90.0 || lon.abs() > 180.0 {
                return Err(CourseError::InvalidCoordinate { index, lat, lon });
            }
            min_lat = min_lat.min(lat);
            max_lat = max_lat.max(lat);
            min_lon = min_lon.min(lon);
            max_lon = max_lon.max(lon);
        }
        let frame = LocalFrame::new((min_lat + max_lat) / 2.0, (min_lon + max_lon) / 2.0);
        let mut points: Vec<CoursePoint> = Vec::with_capacity(raw.len());
        for (index, &(lat, lon, elevation_m)) in raw.iter().enumerate() {
            let elevation_m = elevation_m.filter(|e| e.is_finite() && e.abs() < 20_000.0);
            let (x, y) = frame.project(lat, lon);
            let distance_m = match points.last() {
                None => 0.0,
                Some(prev) => {
                    let step = geodesic_distance_m(prev.lat, prev.lon, lat, lon);
                    if step < DUPLICATE_M {
                        continue;
                    }
                    if step > MAX_POINT_GAP_M {
                        return Err(CourseError::AbsurdJump {
                            index: index - 1,
                            jump_m: step,
                        });
                    }
                    prev.distance_m + step
                }
            };
            points.push(CoursePoint {
                lat,
                lon,
                x,
                y,
                elevation_m,
                distance_m,
            });
        }
        if points.len() < 2 {
            return Err(CourseError::SinglePoint);
        }
        let segments = points
            .windows(2)
            .map(|w| {
                let (a, b) = (&w[0], &w[1]);
                let (dx, dy) = (b.x - a.x, b.y - a.y);
                let plane_len = dx.hypot(dy);
                let (ux, uy) = if plane_len > 0.0 {
                    (dx / plane_len, dy / plane_len)
                } else {
                    (0.0, 0.0)
                };
                Segment {
                    ax: a.x,
                    ay: a.y,
                    ux,
                    uy,
                    plane_len,
                    start_m: a.distance_m,
                    len_m: b.distance_m - a.distance_m,
                }
            })
            .collect();
        let ascent_m = ascent(&points);
        Ok(Course {
            name: name.into(),
            points,
            segments,
            checkpoints: Vec::new(),
            frame,
            ascent_m,
        })
    }

    /// Parses a GPX document (all segments of the first track, else the first route); waypoints
    /// within 200 m of the course become checkpoints.
    pub fn from_gpx_str(text: &str) -> Result<Self, CourseError> {
        let gpx = gpx::read(text.as_bytes()).map_err(|e| CourseError::Gpx(e.to_string()))?;
        let mut name = gpx
            .metadata
            .as_ref()
            .and_then(|m| m.name.clone())
            .unwrap_or_default();
        let mut raw = Vec::new();
        if let Some(track) = gpx.tracks.first() {
            if name.is_empty() {
                name = track.name.clone().unwrap_or_default();
            }
            for seg in &track.segments {
                for p in &seg.points {
                    let pt = p.point();
                    raw.push((pt.y(), pt.x(), p.elevation));
                }
            }
        } else if let Some(route) = gpx.routes.first() {
            if name.is_empty() {
                name = route.name.clone().unwrap_or_default();
            }
            for p in &route.points {
                let pt = p.point();
                raw.push((pt.y(), pt.x(), p.elevation));
            }
        }
        let mut course = Self::from_points(name, &raw)?;
        for wpt in &gpx.waypoints {
            let pt = wpt.point();
            let cp_name = wpt.name.clone().unwrap_or_else(|| "Waypoint".to_string());
            // Waypoints far from the course are points of interest, not checkpoints.
            let _ = course.add_checkpoint_near(cp_name, pt.y(), pt.x(), 200.0);
        }
        Ok(course)
    }

    /// Reads and parses a GPX file.
    pub fn from_gpx_file(path: impl AsRef<Path>) -> Result<Self, CourseError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| CourseError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_gpx_str(&text)
    }

    /// Parses GeoJSON: a LineString geometry, a Feature with one, or the first LineString of a
    /// FeatureCollection. Coordinates are `[lon, lat]` or `[lon, lat, elevation]`.
    pub fn from_geojson_str(text: &str) -> Result<Self, CourseError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| CourseError::GeoJson(e.to_string()))?;
        let name = value
            .pointer("/properties/name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let line = find_line_string(&value)
            .ok_or_else(|| CourseError::GeoJson("no LineString geometry found".to_string()))?;
        let mut raw = Vec::with_capacity(line.len());
        for (i, c) in line.iter().enumerate() {
            let nums: Vec<f64> = c
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
                .unwrap_or_default();
            if nums.len() < 2 {
                return Err(CourseError::GeoJson(format!(
                    "coordinate {i} is not [lon, lat] or [lon, lat, ele]"
                )));
            }
            raw.push((nums[1], nums[0], nums.get(2).copied()));
        }
        Self::from_points(name, &raw)
    }

    /// Course name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Cleaned polyline.
    pub fn points(&self) -> &[CoursePoint] {
        &self.points
    }

    /// Segment geometry (`points().len() - 1` entries).
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Checkpoints sorted by distance.
    pub fn checkpoints(&self) -> &[Checkpoint] {
        &self.checkpoints
    }

    /// The checkpoints as fans see them: name, distance and position on the course.
    pub fn checkpoint_infos(&self) -> Vec<flevum_protocol::CheckpointInfo> {
        self.checkpoints
            .iter()
            .map(|c| {
                let (lat, lon) = self.position_at(c.distance_m);
                flevum_protocol::CheckpointInfo {
                    name: c.name.clone(),
                    distance_m: c.distance_m,
                    lat,
                    lon,
                }
            })
            .collect()
    }

    /// Total length in metres.
    pub fn length_m(&self) -> f64 {
        self.points.last().map_or(0.0, |p| p.distance_m)
    }

    /// Total ascent in metres, with a small hysteresis against elevation noise.
    pub fn ascent_m(&self) -> f64 {
        self.ascent_m
    }

    /// Projects a WGS84 coordinate into the course's local metric frame.
    pub fn project(&self, lat: f64, lon: f64) -> (f64, f64) {
        self.frame.project(lat, lon)
    }

    /// Index of the segment containing `distance_m` (clamped to the course).
    pub fn segment_at(&self, distance_m: f64) -> usize {
        let idx = self
            .points
            .partition_point(|p| p.distance_m <= distance_m)
            .saturating_sub(1);
        idx.min(self.points.len() - 2)
    }

    /// Latitude and longitude at a distance along the course (clamped).
    pub fn position_at(&self, distance_m: f64) -> (f64, f64) {
        let i = self.segment_at(distance_m);
        let (a, b) = (&self.points[i], &self.points[i + 1]);
        let t = ((distance_m - a.distance_m) / (b.distance_m - a.distance_m)).clamp(0.0, 1.0);
        (a.lat + (b.lat - a.lat) * t, a.lon + (b.lon - a.lon) * t)
    }

    /// Elevation at a distance along the course, interpolated; None without elevation data.
    pub fn elevation_at(&self, distance_m: f64) -> Option<f64> {
        let i = self.segment_at(distance_m);
        let (a, b) = (&self.points[i], &self.points[i + 1]);
        let t = ((distance_m - a.distance_m) / (b.distance_m - a.distance_m)).clamp(0.0, 1.0);
        match (a.elevation_m, b.elevation_m) {
            (Some(ea), Some(eb)) => Some(ea + (eb - ea) * t),
            (Some(e), None) | (None, Some(e)) => Some(e),
            (None, None) => None,
        }
    }

    /// Bearing of the course at a distance, degrees clockwise from north.
    pub fn bearing_at(&self, distance_m: f64) -> f64 {
        self.segments[self.segment_at(distance_m)].bearing_deg()
    }

    /// Adds a checkpoint at a distance along the course.
    pub fn add_checkpoint_at(
        &mut self,
        name: impl Into<String>,
        distance_m: f64,
    ) -> Result<(), CourseError> {
        let name = name.into();
        if !distance_m.is_finite() || !(0.0..=self.length_m()).contains(&distance_m) {
            return Err(CourseError::Checkpoint {
                name,
                reason: format!(
                    "distance {distance_m:.0} m is outside the course (0..{:.0} m)",
                    self.length_m()
                ),
            });
        }
        self.checkpoints.retain(|c| c.name != name);
        self.checkpoints.push(Checkpoint { name, distance_m });
        self.checkpoints
            .sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
        Ok(())
    }

    /// Adds a checkpoint at the course point nearest to a coordinate, if within `max_offset_m`.
    /// On courses that pass the same place twice the first passage wins.
    pub fn add_checkpoint_near(
        &mut self,
        name: impl Into<String>,
        lat: f64,
        lon: f64,
        max_offset_m: f64,
    ) -> Result<(), CourseError> {
        let name = name.into();
        let (x, y) = self.project(lat, lon);
        let mut best = (0.0, f64::INFINITY);
        for seg in &self.segments {
            let (d, lateral) = seg.project(x, y);
            // Strictly better by a metre, so a later pass over the same road does not win on noise.
            if lateral + 1.0 < best.1 {
                best = (d, lateral);
            }
        }
        if best.1 > max_offset_m {
            return Err(CourseError::Checkpoint {
                name,
                reason: format!(
                    "{:.0} m from the course (limit {max_offset_m:.0} m)",
                    best.1
                ),
            });
        }
        self.add_checkpoint_at(name, best.0)
    }

    /// The course line simplified for display (every point kept when the course is short), as
    /// `[lon, lat]` pairs with at most about `max_points` entries.
    pub fn display_line(&self, max_points: usize) -> Vec<[f64; 2]> {
        let step = self.points.len().div_ceil(max_points.max(2)).max(1);
        let mut line: Vec<[f64; 2]> = self
            .points
            .iter()
            .step_by(step)
            .map(|p| [p.lon, p.lat])
            .collect();
        if let Some(last) = self.points.last()
            && line.last() != Some(&[last.lon, last.lat])
        {
            line.push([last.lon, last.lat]);
        }
        line
    }
}

/// Total ascent with hysteresis: a rise counts once it exceeds the threshold above the last low.
fn ascent(points: &[CoursePoint]) -> f64 {
    let mut total = 0.0;
    let mut anchor: Option<f64> = None;
    for e in points.iter().filter_map(|p| p.elevation_m) {
        match anchor {
            None => anchor = Some(e),
            Some(a) if e - a >= ASCENT_HYSTERESIS_M => {
                total += e - a;
                anchor = Some(e);
            }
            Some(a) if a - e >= ASCENT_HYSTERESIS_M => anchor = Some(e),
            Some(_) => {}
        }
    }
    total
}

/// Finds the first LineString coordinate array in a GeoJSON value.
fn find_line_string(v: &serde_json::Value) -> Option<&Vec<serde_json::Value>> {
    match v.get("type")?.as_str()? {
        "LineString" => v.get("coordinates")?.as_array(),
        "MultiLineString" => v.get("coordinates")?.as_array()?.first()?.as_array(),
        "Feature" => find_line_string(v.get("geometry")?),
        "FeatureCollection" => v
            .get("features")?
            .as_array()?
            .iter()
            .find_map(find_line_string),
        "GeometryCollection" => v
            .get("geometries")?
            .as_array()?
            .iter()
            .find_map(find_line_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Vec<(f64, f64, Option<f64>)> {
        vec![
            (45.0, 7.0, Some(100.0)),
            (45.0, 7.0, Some(100.0)),
            (45.01, 7.0, Some(110.0)),
            (45.02, 7.0, Some(101.0)),
            (45.03, 7.0, Some(120.0)),
        ]
    }

    #[test]
    fn duplicates_are_dropped_and_distance_accumulates() {
        let c = Course::from_points("t", &line()).unwrap();
        assert_eq!(c.points().len(), 4);
        assert!((c.length_m() - 3335.8).abs() < 5.0, "{}", c.length_m());
        assert!((c.ascent_m() - 29.0).abs() < 1e-9, "{}", c.ascent_m());
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert!(matches!(
            Course::from_points("t", &[]),
            Err(CourseError::Empty)
        ));
        assert!(matches!(
            Course::from_points("t", &[(1.0, 1.0, None), (1.0, 1.0, None)]),
            Err(CourseError::SinglePoint)
        ));
        assert!(matches!(
            Course::from_points("t", &[(1.0, 1.0, None), (f64::NAN, 1.0, None)]),
            Err(CourseError::InvalidCoordinate { index: 1, .. })
        ));
        assert!(matches!(
            Course::from_points("t", &[(45.0, 7.0, None), (-45.0, -173.0, None)]),
            Err(CourseError::AbsurdJump { index: 0, .. })
        ));
        assert!(matches!(
            Course::from_gpx_str("<gpx><trk>"),
            Err(CourseError::Gpx(_))
        ));
        assert!(matches!(
            Course::from_geojson_str("{\"type\":\"Point\",\"coordinates\":[1,2]}"),
            Err(CourseError::GeoJson(_))
        ));
    }

    #[test]
    fn geojson_feature_collection_loads() {
        let text = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"x"},
            "geometry":{"type":"LineString","coordinates":[[7.0,45.0,100],[7.0,45.01,105]]}}]}"#;
        let c = Course::from_geojson_str(text).unwrap();
        assert_eq!(c.points().len(), 2);
        assert_eq!(c.elevation_at(c.length_m() / 2.0), Some(102.5));
    }

    #[test]
    fn checkpoints_snap_and_refuse_far_points() {
        let mut c = Course::from_points("t", &line()).unwrap();
        c.add_checkpoint_near("mid", 45.015, 7.0005, 100.0).unwrap();
        assert!((c.checkpoints()[0].distance_m - 1668.0).abs() < 5.0);
        assert!(c.add_checkpoint_near("far", 45.015, 7.1, 100.0).is_err());
        assert!(c.add_checkpoint_at("beyond", 1e9).is_err());
    }
}

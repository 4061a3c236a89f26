//! The race course: one polyline with cumulative distance, elevation and checkpoints.
//!
//! Owns loading (GPX, GeoJSON), cleaning, the local metric projection and distance↔position
//! lookups. Does not index segments (see `course_index`) or match fixes (see `matcher`).

use std::path::Path;

/// Mean Earth radius in metres (IUGG), used by the local projection.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

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
    /// A coordinate is outside the valid range.
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
    #[error("jump of {jump_m:.0} m between points {index} and {next}", next = index + 1)]
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
    /// Cumulative distance along the course from the start, metres.
    pub distance_m: f64,
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
    /// Checkpoints sorted by distance.
    checkpoints: Vec<Checkpoint>,
    /// Origin latitude of the local projection, degrees.
    origin_lat: f64,
    /// Origin longitude of the local projection, degrees.
    origin_lon: f64,
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
        for (index, &(lat, lon, _)) in raw.iter().enumerate() {
            if !lat.is_finite() || !lon.is_finite() || lat.abs() > 90.0 || lon.abs() > 180.0 {
                return Err(CourseError::InvalidCoordinate { index, lat, lon });
            }
        }
        let origin_lat = raw[0].0;
        let origin_lon = raw[0].1;
        let mut points: Vec<CoursePoint> = Vec::with_capacity(raw.len());
        for (index, &(lat, lon, elevation_m)) in raw.iter().enumerate() {
            let (x, y) = project(origin_lat, origin_lon, lat, lon);
            let distance_m = match points.last() {
                None => 0.0,
                Some(prev) => {
                    let step = (x - prev.x).hypot(y - prev.y);
                    if step < 0.01 {
                        continue;
                    }
                    if step > 50_000.0 {
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
        Ok(Course {
            name: name.into(),
            points,
            checkpoints: Vec::new(),
            origin_lat,
            origin_lon,
        })
    }

    /// Parses a GPX document (first track, else first route).
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

    /// Course name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Cleaned polyline.
    pub fn points(&self) -> &[CoursePoint] {
        &self.points
    }

    /// Checkpoints sorted by distance.
    pub fn checkpoints(&self) -> &[Checkpoint] {
        &self.checkpoints
    }

    /// Total length in metres.
    pub fn length_m(&self) -> f64 {
        self.points.last().map_or(0.0, |p| p.distance_m)
    }

    /// Projects a WGS84 coordinate into the course's local metric frame.
    pub fn project(&self, lat: f64, lon: f64) -> (f64, f64) {
        project(self.origin_lat, self.origin_lon, lat, lon)
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

    /// Adds a checkpoint at a distance along the course.
    pub fn add_checkpoint_at(
        &mut self,
        name: impl Into<String>,
        distance_m: f64,
    ) -> Result<(), CourseError> {
        let name = name.into();
        if !(0.0..=self.length_m()).contains(&distance_m) {
            return Err(CourseError::Checkpoint {
                name,
                reason: format!(
                    "distance {distance_m:.0} m is outside the course (0..{:.0} m)",
                    self.length_m()
                ),
            });
        }
        self.checkpoints.push(Checkpoint { name, distance_m });
        self.checkpoints
            .sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
        Ok(())
    }

    /// Adds a checkpoint at the course point nearest to a coordinate, if within `max_offset_m`.
    pub fn add_checkpoint_near(
        &mut self,
        name: impl Into<String>,
        lat: f64,
        lon: f64,
        max_offset_m: f64,
    ) -> Result<(), CourseError> {
        let name = name.into();
        let (x, y) = self.project(lat, lon);
        let (distance_m, offset) = nearest_on_polyline(&self.points, x, y);
        if offset > max_offset_m {
            return Err(CourseError::Checkpoint {
                name,
                reason: format!("{offset:.0} m from the course (limit {max_offset_m:.0} m)"),
            });
        }
        self.add_checkpoint_at(name, distance_m)
    }
}

/// Brute-force nearest point on a polyline: `(distance along, lateral offset)`.
fn nearest_on_polyline(points: &[CoursePoint], x: f64, y: f64) -> (f64, f64) {
    let mut best = (0.0, f64::INFINITY);
    for w in points.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let (dx, dy) = (b.x - a.x, b.y - a.y);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 {
            (((x - a.x) * dx + (y - a.y) * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (px, py) = (a.x + dx * t, a.y + dy * t);
        let d = (x - px).hypot(y - py);
        if d < best.1 {
            best = (a.distance_m + (b.distance_m - a.distance_m) * t, d);
        }
    }
    best
}

/// Local projection (placeholder: equirectangular about the origin).
fn project(origin_lat: f64, origin_lon: f64, lat: f64, lon: f64) -> (f64, f64) {
    let k = origin_lat.to_radians().cos();
    let x = (lon - origin_lon).to_radians() * EARTH_RADIUS_M * k;
    let y = (lat - origin_lat).to_radians() * EARTH_RADIUS_M;
    (x, y)
}

//! Spatial index of the course segments (placeholder: linear scan; to become an rstar R-tree).
//!
//! Owns candidate lookup: which course segments lie near a projected point. Does not choose among
//! candidates; that is the matcher's job.

use super::course::Course;

/// A course segment near a query point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Segment index (from point `segment` to `segment + 1`).
    pub segment: usize,
    /// Distance along the course of the projection onto the segment, metres.
    pub distance_m: f64,
    /// Distance from the query point to the segment, metres.
    pub lateral_m: f64,
}

/// The course with its segments indexed for nearest-segment queries.
#[derive(Debug, Clone)]
pub struct CourseIndex {
    /// The indexed course.
    course: Course,
}

impl CourseIndex {
    /// Indexes a course.
    pub fn new(course: Course) -> Self {
        CourseIndex { course }
    }

    /// The indexed course.
    pub fn course(&self) -> &Course {
        &self.course
    }

    /// Every segment within `radius_m` of the local point `(x, y)`.
    pub fn candidates(&self, x: f64, y: f64, radius_m: f64) -> Vec<Candidate> {
        let pts = self.course.points();
        let mut out = Vec::new();
        for (segment, w) in pts.windows(2).enumerate() {
            let (a, b) = (&w[0], &w[1]);
            let (dx, dy) = (b.x - a.x, b.y - a.y);
            let len2 = dx * dx + dy * dy;
            let t = if len2 > 0.0 {
                (((x - a.x) * dx + (y - a.y) * dy) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let lateral_m = (x - (a.x + dx * t)).hypot(y - (a.y + dy * t));
            if lateral_m <= radius_m {
                out.push(Candidate {
                    segment,
                    distance_m: a.distance_m + (b.distance_m - a.distance_m) * t,
                    lateral_m,
                });
            }
        }
        out
    }
}

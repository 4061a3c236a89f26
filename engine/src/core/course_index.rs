//! Spatial index of the course segments: an `rstar` R-tree bulk-loaded once per course.
//!
//! Owns candidate lookup: which course segments lie near a projected point. Does not choose among
//! candidates; that is the matcher's job.

use rstar::RTree;
use rstar::primitives::{GeomWithData, Line};

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

/// The course with its segments in an R-tree for nearest-segment queries.
#[derive(Debug, Clone)]
pub struct CourseIndex {
    /// The indexed course.
    course: Course,
    /// Segments in the local frame, carrying their index.
    tree: RTree<GeomWithData<Line<[f64; 2]>, usize>>,
}

impl CourseIndex {
    /// Indexes a course.
    pub fn new(course: Course) -> Self {
        let items = course
            .points()
            .windows(2)
            .enumerate()
            .map(|(i, w)| GeomWithData::new(Line::new([w[0].x, w[0].y], [w[1].x, w[1].y]), i))
            .collect();
        CourseIndex {
            tree: RTree::bulk_load(items),
            course,
        }
    }

    /// The indexed course.
    pub fn course(&self) -> &Course {
        &self.course
    }

    /// Calls `f` for every segment within `radius_m` of the local point `(x, y)`, without
    /// allocating.
    pub fn for_each_candidate(&self, x: f64, y: f64, radius_m: f64, mut f: impl FnMut(Candidate)) {
        let segments = self.course.segments();
        for item in self
            .tree
            .locate_within_distance([x, y], radius_m * radius_m)
        {
            let seg = &segments[item.data];
            let (distance_m, lateral_m) = seg.project(x, y);
            f(Candidate {
                segment: item.data,
                distance_m,
                lateral_m,
            });
        }
    }

    /// Every segment within `radius_m` of the local point `(x, y)`.
    pub fn candidates(&self, x: f64, y: f64, radius_m: f64) -> Vec<Candidate> {
        let mut out = Vec::new();
        self.for_each_candidate(x, y, radius_m, |c| out.push(c));
        out
    }

    /// The segment nearest to `(x, y)` anywhere on the course.
    pub fn nearest(&self, x: f64, y: f64) -> Option<Candidate> {
        let item = self.tree.nearest_neighbor(&[x, y])?;
        let (distance_m, lateral_m) = self.course.segments()[item.data].project(x, y);
        Some(Candidate {
            segment: item.data,
            distance_m,
            lateral_m,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_and_back_offers_both_legs() {
        let course = Course::from_points(
            "oab",
            &[(45.0, 7.0, None), (45.01, 7.0, None), (45.0, 7.00002, None)],
        )
        .unwrap();
        let index = CourseIndex::new(course);
        let (x, y) = index.course().project(45.005, 7.00001);
        let mut c = index.candidates(x, y, 20.0);
        c.sort_by_key(|c| c.segment);
        assert_eq!(c.len(), 2);
        assert!(c[0].distance_m < 1000.0 && c[1].distance_m > 1000.0);
        assert_eq!(index.nearest(x, y).map(|c| c.lateral_m < 1.0), Some(true));
    }
}

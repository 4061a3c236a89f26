//! Geodesy for courses: WGS84 geodesic distances and the course's local metric frame.
//!
//! Owns the maths that turns latitude/longitude into metres: Vincenty's inverse formula for
//! segment lengths, and an ellipsoidal azimuthal-equidistant frame (ECEF → ENU → AEQD) centred on
//! the course, accurate to far better than 0.1 % across 300 km. Does not know about courses.

/// WGS84 semi-major axis, metres.
const WGS84_A: f64 = 6_378_137.0;
/// WGS84 flattening.
const WGS84_F: f64 = 1.0 / 298.257_223_563;

/// Geodesic distance on the WGS84 ellipsoid in metres (Vincenty inverse; falls back to a
/// spherical great circle with the mean radius for the rare near-antipodal non-convergence).
pub fn geodesic_distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (a, f) = (WGS84_A, WGS84_F);
    let b = a * (1.0 - f);
    let l = (lon2 - lon1).to_radians();
    let u1 = ((1.0 - f) * lat1.to_radians().tan()).atan();
    let u2 = ((1.0 - f) * lat2.to_radians().tan()).atan();
    let (sin_u1, cos_u1) = u1.sin_cos();
    let (sin_u2, cos_u2) = u2.sin_cos();
    let mut lambda = l;
    for _ in 0..200 {
        let (sin_l, cos_l) = lambda.sin_cos();
        let sin_sigma =
            ((cos_u2 * sin_l).powi(2) + (cos_u1 * sin_u2 - sin_u1 * cos_u2 * cos_l).powi(2)).sqrt();
        if sin_sigma == 0.0 {
            return 0.0;
        }
        let cos_sigma = sin_u1 * sin_u2 + cos_u1 * cos_u2 * cos_l;
        let sigma = sin_sigma.atan2(cos_sigma);
        let sin_alpha = cos_u1 * cos_u2 * sin_l / sin_sigma;
        let cos2_alpha = 1.0 - sin_alpha * sin_alpha;
        let cos_2sm = if cos2_alpha != 0.0 {
            cos_sigma - 2.0 * sin_u1 * sin_u2 / cos2_alpha
        } else {
            0.0
        };
        let c = f / 16.0 * cos2_alpha * (4.0 + f * (4.0 - 3.0 * cos2_alpha));
        let prev = lambda;
        lambda = l
            + (1.0 - c)
                * f
                * sin_alpha
                * (sigma
                    + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1.0 + 2.0 * cos_2sm * cos_2sm)));
        if (lambda - prev).abs() < 1e-12 {
            let u_sq = cos2_alpha * (a * a - b * b) / (b * b);
            let big_a =
                1.0 + u_sq / 16384.0 * (4096.0 + u_sq * (-768.0 + u_sq * (320.0 - 175.0 * u_sq)));
            let big_b = u_sq / 1024.0 * (256.0 + u_sq * (-128.0 + u_sq * (74.0 - 47.0 * u_sq)));
            let delta_sigma = big_b
                * sin_sigma
                * (cos_2sm
                    + big_b / 4.0
                        * (cos_sigma * (-1.0 + 2.0 * cos_2sm * cos_2sm)
                            - big_b / 6.0
                                * cos_2sm
                                * (-3.0 + 4.0 * sin_sigma * sin_sigma)
                                * (-3.0 + 4.0 * cos_2sm * cos_2sm)));
            return b * big_a * (sigma - delta_sigma);
        }
    }
    haversine_m(lat1, lon1, lat2, lon2)
}

/// Great-circle distance on a sphere of the mean Earth radius, metres.
pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const R: f64 = 6_371_008.8;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * R * h.sqrt().min(1.0).asin()
}

/// Length of `(dx, dy)`, metres in a local frame. Not `f64::hypot`: its guard against overflow
/// and underflow is useless at these magnitudes and cost 0.8 M instructions of a 5,000-rider
/// tick (callgrind, `bench/TICK.md`).
pub fn planar_len(dx: f64, dy: f64) -> f64 {
    (dx * dx + dy * dy).sqrt()
}

/// Earth-centred, earth-fixed coordinates of a point on the WGS84 ellipsoid (height 0).
fn ecef(lat: f64, lon: f64) -> [f64; 3] {
    let (sin_p, cos_p) = lat.to_radians().sin_cos();
    let (sin_l, cos_l) = lon.to_radians().sin_cos();
    ecef_of(sin_p, cos_p, sin_l, cos_l)
}

/// [`ecef`] from the sines and cosines of latitude and longitude.
fn ecef_of(sin_p: f64, cos_p: f64, sin_l: f64, cos_l: f64) -> [f64; 3] {
    let e2 = WGS84_F * (2.0 - WGS84_F);
    let n = WGS84_A / (1.0 - e2 * sin_p * sin_p).sqrt();
    [n * cos_p * cos_l, n * cos_p * sin_l, n * (1.0 - e2) * sin_p]
}

/// Largest angle, radians, for which [`sin_cos_small`] is used (about 570 km of latitude).
const SMALL_ANGLE_RAD: f64 = 0.09;

/// `(sin d, cos d)` for |d| <= [`SMALL_ANGLE_RAD`] by their Taylor series: the first term left
/// out is below 1e-17 of the result there, so this is as exact as the libm call, at a fraction
/// of its cost (every fix is projected into the course frame).
fn sin_cos_small(d: f64) -> (f64, f64) {
    let d2 = d * d;
    let sin = d
        * (1.0
            - d2 / 6.0
                * (1.0 - d2 / 20.0 * (1.0 - d2 / 42.0 * (1.0 - d2 / 72.0 * (1.0 - d2 / 110.0)))));
    let cos = 1.0
        - d2 / 2.0
            * (1.0
                - d2 / 12.0
                    * (1.0
                        - d2 / 30.0 * (1.0 - d2 / 56.0 * (1.0 - d2 / 90.0 * (1.0 - d2 / 132.0)))));
    (sin, cos)
}

/// A local metric frame (x east, y north, metres) centred on a point: the ellipsoid's tangent plane
/// (ENU) with the radial distance stretched back to arc length (azimuthal equidistant), so both
/// distances from the centre and short segment lengths anywhere within a few hundred kilometres are
/// true to within about 0.01 %.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalFrame {
    /// ECEF position of the centre.
    origin: [f64; 3],
    /// ENU rotation rows: east, north, up unit vectors in ECEF.
    east: [f64; 3],
    /// North unit vector.
    north: [f64; 3],
    /// Up unit vector.
    up: [f64; 3],
    /// Gaussian mean radius of curvature at the centre, metres (for the arc-length stretch).
    radius: f64,
    /// Latitude and longitude of the centre, radians: points near it get their sines and
    /// cosines from the centre's by the angle-sum identities, which is cheaper than libm.
    centre_rad: (f64, f64),
    /// `(sin, cos)` of the centre's latitude.
    centre_lat_sin_cos: (f64, f64),
    /// `(sin, cos)` of the centre's longitude.
    centre_lon_sin_cos: (f64, f64),
}

impl LocalFrame {
    /// A frame centred on `(lat, lon)`.
    pub fn new(lat: f64, lon: f64) -> LocalFrame {
        let (sin_p, cos_p) = lat.to_radians().sin_cos();
        let (sin_l, cos_l) = lon.to_radians().sin_cos();
        let e2 = WGS84_F * (2.0 - WGS84_F);
        let w = (1.0 - e2 * sin_p * sin_p).sqrt();
        let m = WGS84_A * (1.0 - e2) / (w * w * w);
        let n = WGS84_A / w;
        LocalFrame {
            origin: ecef(lat, lon),
            east: [-sin_l, cos_l, 0.0],
            north: [-sin_p * cos_l, -sin_p * sin_l, cos_p],
            up: [cos_p * cos_l, cos_p * sin_l, sin_p],
            radius: (m * n).sqrt(),
            centre_rad: (lat.to_radians(), lon.to_radians()),
            centre_lat_sin_cos: (sin_p, cos_p),
            centre_lon_sin_cos: (sin_l, cos_l),
        }
    }

    /// Projects a coordinate into the frame: `(x east, y north)` in metres.
    pub fn project(&self, lat: f64, lon: f64) -> (f64, f64) {
        let (dp, dl) = (
            lat.to_radians() - self.centre_rad.0,
            lon.to_radians() - self.centre_rad.1,
        );
        let p = if dp.abs() <= SMALL_ANGLE_RAD && dl.abs() <= SMALL_ANGLE_RAD {
            // sin(a + d) = sin a cos d + cos a sin d; cos(a + d) = cos a cos d - sin a sin d.
            let ((s0, c0), (sd, cd)) = (self.centre_lat_sin_cos, sin_cos_small(dp));
            let ((s1, c1), (se, ce)) = (self.centre_lon_sin_cos, sin_cos_small(dl));
            ecef_of(
                s0 * cd + c0 * sd,
                c0 * cd - s0 * sd,
                s1 * ce + c1 * se,
                c1 * ce - s1 * se,
            )
        } else {
            ecef(lat, lon)
        };
        self.project_ecef(p)
    }

    /// Projects an ECEF position on the ellipsoid into the frame.
    fn project_ecef(&self, p: [f64; 3]) -> (f64, f64) {
        let d = [
            p[0] - self.origin[0],
            p[1] - self.origin[1],
            p[2] - self.origin[2],
        ];
        let dot = |v: &[f64; 3]| v[0] * d[0] + v[1] * d[1] + v[2] * d[2];
        let (e, n, u) = (dot(&self.east), dot(&self.north), dot(&self.up));
        let rho = planar_len(e, n);
        if rho < 1e-9 {
            return (e, n);
        }
        // The point lies `-u` below the tangent plane; its arc distance from the centre is the
        // angle seen from the centre of curvature times the radius.
        // theta = atan(q) with q = rho / (R + u); within a few hundred km q < 0.05, where the
        // series atan(q)/q = 1 - q²/3 + q⁴/5 is exact to 1e-9 and avoids a slow atan2.
        let q = rho / (self.radius + u);
        let q2 = q * q;
        let k = if q < 0.1 {
            self.radius / (self.radius + u) * (1.0 - q2 / 3.0 + q2 * q2 / 5.0)
        } else {
            self.radius * rho.atan2(self.radius + u) / rho
        };
        (e * k, n * k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_angle_sines_match_libm() {
        for i in -900..=900 {
            let d = i as f64 * SMALL_ANGLE_RAD / 900.0;
            let (s, c) = sin_cos_small(d);
            assert!(
                (s - d.sin()).abs() <= 2.0 * f64::EPSILON * d.abs(),
                "sin {d}"
            );
            assert!((c - d.cos()).abs() <= 2.0 * f64::EPSILON, "cos {d}");
        }
    }

    #[test]
    fn projection_near_the_centre_matches_the_libm_path() {
        // Points up to ~500 km from the centre take the angle-sum path: the same projection as
        // the libm sines and cosines to within a micrometre.
        let frame = LocalFrame::new(41.5, -93.6);
        for i in -20..=20 {
            for j in -20..=20 {
                let (lat, lon) = (41.5 + i as f64 * 0.25, -93.6 + j as f64 * 0.25);
                let (x, y) = frame.project(lat, lon);
                let (ex, ey) = frame.project_ecef(ecef(lat, lon));
                assert!(
                    (x - ex).abs() < 1e-6 && (y - ey).abs() < 1e-6,
                    "{lat} {lon}"
                );
            }
        }
    }

    #[test]
    fn vincenty_matches_known_distance() {
        // Flinders Peak → Buninyong (Vincenty's classic test): 54,972.271 m.
        let d = geodesic_distance_m(
            -(37.0 + 57.0 / 60.0 + 3.72030 / 3600.0),
            144.0 + 25.0 / 60.0 + 29.52440 / 3600.0,
            -(37.0 + 39.0 / 60.0 + 10.15610 / 3600.0),
            143.0 + 55.0 / 60.0 + 35.38390 / 3600.0,
        );
        assert!((d - 54_972.271).abs() < 0.01, "{d}");
    }

    #[test]
    fn frame_keeps_distances_within_a_hundredth_of_a_percent_at_150_km() {
        let frame = LocalFrame::new(45.0, 7.0);
        for (lat, lon) in [(46.35, 7.0), (45.0, 8.9), (43.9, 5.6), (46.0, 8.3)] {
            let (x, y) = frame.project(lat, lon);
            let truth = geodesic_distance_m(45.0, 7.0, lat, lon);
            let rel = (x.hypot(y) - truth).abs() / truth;
            assert!(rel < 1e-4, "{lat},{lon}: {rel}");
        }
    }
}

//! HTTP ingest for tracker apps riders already have: OsmAnd / Traccar Client and OwnTracks.
//!
//! Owns parsing of their request formats (query/form parameters, Traccar Client JSON, OwnTracks
//! JSON), timestamp parsing, and conversion to [`PositionRecord`] with a timestamp-derived
//! sequence (seconds since 2000-01-01, so replays dedupe). Does not authenticate devices or
//! store anything: [`EngineControl::submit_positions`] does both.
//!
//! [`EngineControl::submit_positions`]: crate::engine_control::EngineControl::submit_positions

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flevum_protocol::{PositionRecord, RecordLimits};
use serde::Deserialize;

use crate::auth::basic;
use crate::error::ApiError;
use crate::metrics as m;
use crate::state::GatewayState;

/// 2000-01-01T00:00:00Z in Unix seconds: origin of the timestamp-derived sequence numbers.
pub const SEQ_EPOCH_S: i64 = 946_684_800;
/// Knots to metres per second.
const KNOTS_TO_MPS: f64 = 1852.0 / 3600.0;

/// Ms since the Unix epoch now.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The per-device sequence of a fix at `time_ms`: whole seconds since 2000-01-01, at least 1.
pub fn seq_for_time(time_ms: i64) -> u32 {
    let s = time_ms.div_euclid(1000) - SEQ_EPOCH_S;
    s.clamp(1, i64::from(u32::MAX)) as u32
}

/// A device fix parsed from a tracker app, before conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct AppFix {
    /// Event time, ms since the Unix epoch.
    pub time_ms: i64,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Altitude, metres.
    pub ele: Option<f64>,
    /// Speed, m/s.
    pub speed_mps: Option<f64>,
    /// Heading, degrees.
    pub heading_deg: Option<f64>,
    /// Horizontal accuracy, metres.
    pub accuracy_m: Option<f64>,
    /// Battery percent.
    pub battery_pct: Option<u8>,
}

impl AppFix {
    /// The wire record (seq from the timestamp).
    pub fn to_record(&self) -> PositionRecord {
        let mut r = PositionRecord::from_degrees(
            seq_for_time(self.time_ms),
            self.time_ms,
            self.lat,
            self.lon,
            self.ele,
            self.speed_mps,
            self.heading_deg,
            self.accuracy_m,
        );
        if let Some(b) = self.battery_pct {
            r.battery_pct = b.min(100);
        }
        r
    }
}

/// A parsed tracker request: the device token and at most one fix.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRequest {
    /// Device token (the app's device id field).
    pub token: String,
    /// The fix, None for a request without a position (cell/Wi-Fi only).
    pub fix: Option<AppFix>,
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Parses Unix seconds, Unix ms, ISO 8601 / RFC 3339 or `YYYY-MM-DD HH:MM:SS` (UTC unless an
/// offset is given) to ms since the Unix epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let v: i64 = s.parse().ok()?;
        return Some(if v >= 100_000_000_000 {
            v
        } else {
            v.checked_mul(1000)?
        });
    }
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            return None;
        }
        let ms3: String = digits.chars().chain("000".chars()).take(3).collect();
        millis = ms3.parse().ok()?;
        rest = &frac[digits.len()..];
    }
    let offset_s = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = rest[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let oh: i64 = digits[..2].parse().ok()?;
            let om: i64 = digits[2..].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(secs * 1000 + millis)
}

/// Decodes `application/x-www-form-urlencoded` text (also a URL query) into a map; the first
/// occurrence of a key wins.
pub fn parse_form(s: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.entry(percent_decode(k))
            .or_insert_with(|| percent_decode(v));
    }
    map
}

/// Percent-decoding with `+` as space; invalid escapes are kept literally.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or(""), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses an optional finite number parameter; a present but malformed value is an error.
fn opt_num(p: &HashMap<String, String>, keys: &[&str]) -> Result<Option<f64>, ApiError> {
    for k in keys {
        if let Some(v) = p.get(*k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            return match v.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(ApiError::bad_request(
                    "bad_parameter",
                    format!("{k}={v:?} is not a number"),
                )),
            };
        }
    }
    Ok(None)
}

/// Parses OsmAnd / Traccar Client query or form parameters.
pub fn parse_osmand_params(
    p: &HashMap<String, String>,
    now_ms: i64,
) -> Result<AppRequest, ApiError> {
    let token = p
        .get("id")
        .or_else(|| p.get("deviceid"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_device_id",
                "the id (or deviceid) parameter is required",
            )
        })?;
    let position = match (
        opt_num(p, &["lat"])?,
        opt_num(p, &["lon"])?,
        p.get("location"),
    ) {
        (Some(lat), Some(lon), _) => Some((lat, lon)),
        (None, None, Some(loc)) => {
            let (a, b) = loc.split_once(',').ok_or_else(|| {
                ApiError::bad_request(
                    "bad_position",
                    format!("location={loc:?}: expected LAT,LON"),
                )
            })?;
            match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
                (Ok(lat), Ok(lon)) if lat.is_finite() && lon.is_finite() => Some((lat, lon)),
                _ => {
                    return Err(ApiError::bad_request(
                        "bad_position",
                        format!("location={loc:?}: expected LAT,LON"),
                    ));
                }
            }
        }
        (None, None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                "bad_position",
                "lat and lon must come together",
            ));
        }
    };
    let Some((lat, lon)) = position else {
        return Ok(AppRequest { token, fix: None });
    };
    let time_ms = match p
        .get("timestamp")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        Some(ts) => parse_timestamp(ts).ok_or_else(|| {
            ApiError::bad_request("bad_timestamp", format!("timestamp={ts:?} is not a time"))
        })?,
        None => now_ms,
    };
    let battery = opt_num(p, &["batt", "battery"])?;
    Ok(AppRequest {
        token,
        fix: Some(AppFix {
            time_ms,
            lat,
            lon,
            ele: opt_num(p, &["altitude"])?,
            speed_mps: opt_num(p, &["speed"])?.map(|kn| kn * KNOTS_TO_MPS),
            heading_deg: opt_num(p, &["bearing", "heading"])?,
            accuracy_m: opt_num(p, &["accuracy", "hacc", "hdop"])?,
            battery_pct: battery.map(|b| b.clamp(0.0, 100.0).round() as u8),
        }),
    })
}

/// Traccar Client's JSON body (`location.coords`, `device_id`).
#[derive(Debug, Deserialize)]
struct TraccarJson {
    /// Device token.
    device_id: Option<String>,
    /// The fix.
    location: Option<TraccarLocation>,
}

/// `location` of a Traccar Client JSON body.
#[derive(Debug, Deserialize)]
struct TraccarLocation {
    /// ISO 8601 time.
    timestamp: Option<String>,
    /// Coordinates.
    coords: Option<TraccarCoords>,
    /// Battery.
    battery: Option<TraccarBattery>,
}

/// `location.coords`.
#[derive(Debug, Deserialize)]
struct TraccarCoords {
    /// Degrees.
    latitude: f64,
    /// Degrees.
    longitude: f64,
    /// Metres.
    accuracy: Option<f64>,
    /// m/s.
    speed: Option<f64>,
    /// Degrees.
    heading: Option<f64>,
    /// Metres.
    altitude: Option<f64>,
}

/// `location.battery`.
#[derive(Debug, Deserialize)]
struct TraccarBattery {
    /// 0..1.
    level: Option<f64>,
}

/// Drops negative "unknown" markers (-1) that apps send.
fn known(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && *x >= 0.0)
}

/// Parses a Traccar Client JSON body.
pub fn parse_traccar_json(body: &[u8], now_ms: i64) -> Result<AppRequest, ApiError> {
    let j: TraccarJson = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("bad_json", e.to_string()))?;
    let token = j
        .device_id
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("missing_device_id", "device_id is required"))?;
    let Some(loc) = j.location else {
        return Ok(AppRequest { token, fix: None });
    };
    let Some(c) = loc.coords else {
        return Ok(AppRequest { token, fix: None });
    };
    if !c.latitude.is_finite() || !c.longitude.is_finite() {
        return Err(ApiError::bad_request(
            "bad_position",
            "coordinates must be finite",
        ));
    }
    let time_ms = match loc.timestamp.as_deref() {
        Some(ts) => parse_timestamp(ts).ok_or_else(|| {
            ApiError::bad_request("bad_timestamp", format!("{ts:?} is not a time"))
        })?,
        None => now_ms,
    };
    Ok(AppRequest {
        token,
        fix: Some(AppFix {
            time_ms,
            lat: c.latitude,
            lon: c.longitude,
            ele: c.altitude.filter(|a| a.is_finite()),
            speed_mps: known(c.speed),
            heading_deg: known(c.heading),
            accuracy_m: known(c.accuracy),
            battery_pct: loc
                .battery
                .and_then(|b| known(b.level))
                .map(|l| (l * 100.0).clamp(0.0, 100.0).round() as u8),
        }),
    })
}

/// An OwnTracks message (only `_type: location` carries a fix).
#[derive(Debug, Deserialize)]
struct OwnTracksMessage {
    /// Message type.
    #[serde(rename = "_type")]
    kind: String,
    /// Degrees.
    lat: Option<f64>,
    /// Degrees.
    lon: Option<f64>,
    /// Unix seconds of the fix.
    tst: Option<i64>,
    /// Accuracy, metres.
    acc: Option<f64>,
    /// Altitude, metres.
    alt: Option<f64>,
    /// Speed, km/h.
    vel: Option<f64>,
    /// Course over ground, degrees.
    cog: Option<f64>,
    /// Battery percent.
    batt: Option<f64>,
}

/// Parses an OwnTracks body; `Ok(None)` for messages other than `location`.
pub fn parse_owntracks(body: &[u8], now_ms: i64) -> Result<Option<AppFix>, ApiError> {
    let msg: OwnTracksMessage = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("bad_json", e.to_string()))?;
    if msg.kind != "location" {
        return Ok(None);
    }
    let (Some(lat), Some(lon)) = (msg.lat, msg.lon) else {
        return Err(ApiError::bad_request(
            "bad_position",
            "location without lat/lon",
        ));
    };
    if !lat.is_finite() || !lon.is_finite() {
        return Err(ApiError::bad_request(
            "bad_position",
            "coordinates must be finite",
        ));
    }
    let time_ms = match msg.tst {
        Some(t) => t
            .checked_mul(1000)
            .ok_or_else(|| ApiError::bad_request("bad_timestamp", "tst out of range"))?,
        None => now_ms,
    };
    Ok(Some(AppFix {
        time_ms,
        lat,
        lon,
        ele: msg.alt.filter(|a| a.is_finite()),
        speed_mps: known(msg.vel).map(|kmh| kmh / 3.6),
        heading_deg: known(msg.cog),
        accuracy_m: known(msg.acc),
        battery_pct: known(msg.batt).map(|b| b.clamp(0.0, 100.0).round() as u8),
    }))
}

/// Validates the fix and submits it (or just checks the token when there is none).
async fn submit(
    state: &GatewayState,
    app: &'static str,
    token: String,
    fix: Option<AppFix>,
) -> Result<(), ApiError> {
    let now = now_ms();
    let records = match fix {
        Some(f) => {
            let r = f.to_record();
            if let Err(e) = r.validate(now, &RecordLimits::default()) {
                metrics::counter!(m::INGEST_REJECTED, "app" => app, "reason" => "invalid")
                    .increment(1);
                return Err(ApiError::bad_request("invalid_position", e.to_string()));
            }
            vec![r]
        }
        None => Vec::new(),
    };
    let n = records.len() as u64;
    match state.engine.submit_positions(token, records).await {
        Ok(()) => {
            metrics::counter!(m::INGEST_POSITIONS, "app" => app).increment(n);
            Ok(())
        }
        Err(e) => {
            metrics::counter!(m::INGEST_REJECTED, "app" => app, "reason" => "engine").increment(1);
            Err(e.into())
        }
    }
}

/// Counts a parse rejection and passes the error on.
fn rejected(app: &'static str, e: ApiError) -> ApiError {
    metrics::counter!(m::INGEST_REJECTED, "app" => app, "reason" => e.code).increment(1);
    e
}

/// `GET|POST /v1/ingest/osmand`: OsmAnd / Traccar Client (query, form body or JSON body).
#[utoipa::path(post, path = "/v1/ingest/osmand",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    params(("id" = String, Query, description = "device token"), ("lat" = Option<f64>, Query),
           ("lon" = Option<f64>, Query), ("timestamp" = Option<String>, Query)),
    responses((status = 200, description = "accepted"), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)))]
pub async fn osmand(
    State(state): State<GatewayState>,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let now = now_ms();
    let trimmed = body.trim_ascii_start();
    let req = if trimmed.first() == Some(&b'{') {
        parse_traccar_json(trimmed, now)
    } else {
        let mut params = parse_form(query.as_deref().unwrap_or(""));
        if !trimmed.is_empty() {
            let form = std::str::from_utf8(trimmed)
                .map_err(|_| ApiError::bad_request("bad_body", "form body is not UTF-8"))?;
            for (k, v) in parse_form(form) {
                params.entry(k).or_insert(v);
            }
        }
        parse_osmand_params(&params, now)
    }
    .map_err(|e| rejected("osmand", e))?;
    submit(&state, "osmand", req.token, req.fix).await?;
    Ok(StatusCode::OK)
}

/// `POST /v1/ingest/owntracks`: OwnTracks HTTP mode. Token: HTTP basic password, else
/// `?token=`, else the `X-Limit-D` header.
#[utoipa::path(post, path = "/v1/ingest/owntracks",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, description = "accepted, body []"), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)))]
pub async fn owntracks(
    State(state): State<GatewayState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let token = basic(&headers)
        .map(|(_, pass)| pass)
        .filter(|p| !p.is_empty())
        .or_else(|| parse_form(query.as_deref().unwrap_or("")).remove("token"))
        .or_else(|| {
            headers
                .get("x-limit-d")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            rejected(
                "owntracks",
                ApiError::unauthorized("device token required (HTTP basic password)"),
            )
        })?;
    let fix = parse_owntracks(&body, now_ms()).map_err(|e| rejected("owntracks", e))?;
    if let Some(fix) = fix {
        submit(&state, "owntracks", token, Some(fix)).await?;
    }
    Ok(Json(Vec::<serde_json::Value>::new()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1377177267"), Some(1_377_177_267_000));
        assert_eq!(parse_timestamp("1442068686579"), Some(1_442_068_686_579));
        assert_eq!(
            parse_timestamp("2016-01-27T18:55:47Z"),
            Some(1_453_920_947_000)
        );
        assert_eq!(
            parse_timestamp("2016-01-27 18:55:47"),
            Some(1_453_920_947_000)
        );
        assert_eq!(
            parse_timestamp("2021-07-21T08:06:34.444Z"),
            Some(1_626_854_794_444)
        );
        assert_eq!(
            parse_timestamp("2016-01-27T20:55:47+02:00"),
            Some(1_453_920_947_000)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2016-13-27T18:55:47Z"), None);
        assert_eq!(parse_timestamp("2016-01-27T18:55:47Q"), None);
    }

    #[test]
    fn civil_roundtrip() {
        for days in [-1000, 0, 10_957, 19_000, 20_000, 50_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn seq_is_seconds_since_2000() {
        assert_eq!(seq_for_time(946_684_801_000), 1);
        assert_eq!(seq_for_time(946_684_800_000), 1, "clamped to 1");
        assert_eq!(seq_for_time(946_684_900_999), 100);
    }

    #[test]
    fn form_decoding() {
        let p = parse_form("id=ab%2Bc&timestamp=2016-01-27+18%3A55%3A47&x=%zz&id=second");
        assert_eq!(p["id"], "ab+c");
        assert_eq!(p["timestamp"], "2016-01-27 18:55:47");
        assert_eq!(p["x"], "%zz");
    }

    #[test]
    fn osmand_units_and_errors() {
        let p = parse_form("id=t&lat=52&lon=5&timestamp=1700000000&speed=10&bearing=370&batt=55.4");
        let f = parse_osmand_params(&p, 0).unwrap().fix.unwrap();
        assert!(
            (f.speed_mps.unwrap() - 5.144_444).abs() < 1e-4,
            "knots converted"
        );
        let r = f.to_record();
        assert_eq!(r.heading_cdeg, 1000);
        assert_eq!(r.battery_pct, 55);
        assert_eq!(r.seq, seq_for_time(1_700_000_000_000));
        let e = parse_osmand_params(&parse_form("id=t&lat=abc&lon=5"), 0).unwrap_err();
        assert_eq!(e.code, "bad_parameter");
        let e = parse_osmand_params(&parse_form("id=t&lat=5"), 0).unwrap_err();
        assert_eq!(e.code, "bad_position");
        let e = parse_osmand_params(&parse_form("id=t&lat=5&lon=5&timestamp=soon"), 0).unwrap_err();
        assert_eq!(e.code, "bad_timestamp");
    }
}

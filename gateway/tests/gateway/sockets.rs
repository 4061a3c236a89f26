//! Live and alerts feeds over real sockets (tokio-tungstenite clients, raw HTTP for SSE).

use std::time::Duration;

use flevum_gateway::GatewayConfig;
use flevum_gateway::auth::sign_share_token;
use flevum_protocol::{
    Alert, AlertKind, Delta, FanFrame, Severity, decode_frame_binary, decode_frame_json,
};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

async fn next_frame(ws: &mut Ws) -> FanFrame {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time")
            .unwrap()
            .unwrap();
        match msg {
            Message::Text(t) => return decode_frame_json(t.as_bytes()).unwrap(),
            Message::Binary(b) => return decode_frame_binary(&b).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(cf)))) => return u16::from(cf.code),
            Some(Ok(Message::Close(None))) | None => return 1005,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error {e}"),
        }
    }
}

fn delta(race: &str, tick: u64, states: Vec<flevum_protocol::RiderView>) -> Delta {
    Delta {
        race_id: race.into(),
        epoch: 1,
        tick,
        time_ms: 1_700_000_000_000 + tick as i64,
        states,
        groups: None,
        alerts: vec![],
    }
}

fn alert(seq: u64, severity: Severity, kind: AlertKind) -> Alert {
    Alert {
        seq,
        epoch: 1,
        time_ms: 1_700_000_000_000,
        race_time_ms: 0,
        course_km: 1.0,
        riders: vec![3],
        severity,
        kind,
    }
}

#[tokio::test]
async fn live_snapshot_deltas_viewport_resume_over_a_socket() {
    let (state, _engine, hub) = state_with(config());
    hub.publish_snapshot(snapshot(
        "ronde",
        1,
        0,
        vec![rider(1, 5.0, 52.0), rider(2, 9.0, 48.0)],
    ));
    let served = serve(state).await;
    let url = format!("ws://{}/v1/races/ronde/live", served.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let FanFrame::Snapshot(s) = next_frame(&mut ws).await else {
        panic!("snapshot first")
    };
    assert_eq!((s.epoch, s.tick, s.states.len()), (1, 0, 2));

    hub.publish_delta(delta(
        "ronde",
        1,
        vec![rider(1, 5.01, 52.0), rider(2, 9.01, 48.0)],
    ));
    let FanFrame::Delta(d) = next_frame(&mut ws).await else {
        panic!()
    };
    assert_eq!((d.tick, d.states.len()), (1, 2));

    ws.send(Message::text(
        r#"{"type":"viewport","bbox":[4.0,51.0,6.0,53.0]}"#,
    ))
    .await
    .unwrap();
    ws.send(Message::text(r#"{"type":"encoding","value":"binary"}"#))
        .await
        .unwrap();
    // the encoding switch answers with a snapshot in binary; after it the viewport is in force
    let m = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(m.is_binary());
    hub.publish_delta(delta(
        "ronde",
        2,
        vec![rider(1, 5.02, 52.0), rider(2, 9.02, 48.0)],
    ));
    let FanFrame::Delta(d) = next_frame(&mut ws).await else {
        panic!()
    };
    assert_eq!(d.states.iter().map(|r| r.rider_id).collect::<Vec<_>>(), [1]);
    drop(ws);

    // resume from tick 1: no snapshot, just tick 2
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}?resume=1:1"))
        .await
        .unwrap();
    let FanFrame::Delta(d) = next_frame(&mut ws).await else {
        panic!("resume sends deltas, not a snapshot")
    };
    assert_eq!(d.tick, 2);
    // unknown epoch: snapshot
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}?resume=7:1&encoding=binary"))
        .await
        .unwrap();
    let m = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(m.is_binary());
    assert!(
        matches!(decode_frame_binary(&m.into_data()).unwrap(), FanFrame::Snapshot(s) if s.tick == 2)
    );
}

#[tokio::test]
async fn live_close_codes_and_connection_cap() {
    let (state, _engine, hub) = state_with(GatewayConfig {
        max_websockets: 2,
        ..config()
    });
    hub.publish_snapshot(snapshot("ronde", 1, 0, vec![]));
    hub.publish_snapshot(snapshot("secret", 1, 0, vec![]));
    let served = serve(state).await;
    let base = format!("ws://{}", served.addr);

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{base}/v1/races/nope/live"))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, 4004);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{base}/v1/races/secret/live"))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, 4003);
    let share = sign_share_token(SHARE_SECRET, "secret", 4_000_000_000);
    let (mut a, _) =
        tokio_tungstenite::connect_async(format!("{base}/v1/races/secret/live?viewer={share}"))
            .await
            .unwrap();
    assert!(matches!(next_frame(&mut a).await, FanFrame::Snapshot(_)));
    let (mut b, _) = tokio_tungstenite::connect_async(format!("{base}/v1/races/ronde/live"))
        .await
        .unwrap();
    assert!(matches!(next_frame(&mut b).await, FanFrame::Snapshot(_)));
    // cap of 2 reached
    match tokio_tungstenite::connect_async(format!("{base}/v1/races/ronde/live")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    drop(a);
    // the slot frees once the server notices the close
    let mut ok = false;
    for _ in 0..100 {
        if tokio_tungstenite::connect_async(format!("{base}/v1/races/ronde/live"))
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "slot freed after a client left");
    drop(b);
}

#[tokio::test]
async fn shutdown_closes_live_clients_with_1001() {
    let (state, _engine, hub) = state_with(config());
    hub.publish_snapshot(snapshot("ronde", 1, 0, vec![]));
    let mut served = serve(state).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/races/ronde/live", served.addr))
            .await
            .unwrap();
    assert!(matches!(next_frame(&mut ws).await, FanFrame::Snapshot(_)));
    served.shutdown.take().unwrap().send(()).unwrap();
    assert_eq!(close_code(&mut ws).await, u16::from(CloseCode::Away));
    tokio::time::timeout(WAIT, served.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn alerts_websocket_with_backlog_and_filter() {
    let (state, _engine, hub) = state_with(config());
    hub.publish_snapshot(snapshot("ronde", 1, 0, vec![]));
    hub.publish_alert("ronde", alert(1, Severity::Info, AlertKind::RaceStarted));
    hub.publish_alert(
        "ronde",
        alert(2, Severity::Critical, AlertKind::PossibleCrash),
    );
    let served = serve(state).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/v1/races/ronde/alerts?since=0&minSeverity=notable",
        served.addr
    ))
    .await
    .unwrap();
    let FanFrame::Alert(a) = next_frame(&mut ws).await else {
        panic!()
    };
    assert_eq!(a.seq, 2);
    hub.publish_alert("ronde", alert(3, Severity::Info, AlertKind::RiderStopped));
    hub.publish_alert("ronde", alert(4, Severity::Notable, AlertKind::Sos));
    let FanFrame::Alert(a) = next_frame(&mut ws).await else {
        panic!()
    };
    assert_eq!(a.seq, 4, "info alert filtered out");
}

#[tokio::test]
async fn alerts_sse_resumes_from_last_event_id() {
    let (state, _engine, hub) = state_with(config());
    hub.publish_snapshot(snapshot("ronde", 1, 0, vec![]));
    for seq in 1..=3 {
        hub.publish_alert(
            "ronde",
            alert(seq, Severity::Notable, AlertKind::RiderStopped),
        );
    }
    let served = serve(state).await;
    let mut tcp = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    tcp.write_all(
        b"GET /v1/races/ronde/alerts HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nLast-Event-ID: 1\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.contains("id: 3") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "stream ended early: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    hub.publish_alert("ronde", alert(4, Severity::Notable, AlertKind::Sos));
    while !got.contains("id: 4") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "stream ended early: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.starts_with("HTTP/1.1 200"));
    assert!(got.contains("text/event-stream"));
    assert!(!got.contains("id: 1\n"), "resumed after 1: {got}");
    assert!(got.contains("id: 2") && got.contains("event: alert"));
    assert!(got.contains("\"type\":\"sos\""));
}

/// A fan that announces a frame larger than a fan message may be is cut off at the frame's
/// header, before the gateway buffers its payload (tungstenite checks the message size only
/// once a whole frame is in).
#[tokio::test]
async fn an_oversized_fan_frame_is_refused_at_its_header() {
    let (state, _engine, hub) = state_with(config());
    hub.publish_snapshot(snapshot("ronde", 1, 0, vec![]));
    let served = serve(state).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/races/ronde/live", served.addr))
            .await
            .unwrap();
    assert!(matches!(next_frame(&mut ws).await, FanFrame::Snapshot(_)));
    // A masked binary frame announcing 8 MiB, of which only the first kilobyte ever comes.
    let announced: u64 = 8 << 20;
    let mut raw = vec![0x82, 0x80 | 127];
    raw.extend_from_slice(&announced.to_be_bytes());
    raw.extend_from_slice(&[1, 2, 3, 4]);
    raw.extend_from_slice(&[0u8; 1024]);
    match ws.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.write_all(&raw).await.unwrap(),
        _ => unreachable!("plain ws:// URL"),
    }
    // The gateway ends the connection at once instead of waiting for the other 8 MiB.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the gateway kept waiting for the oversized frame"
    );
}

/// SSE alert streams take a slot under the same connection caps as WebSockets, and give it
/// back when the client goes.
#[tokio::test]
async fn sse_alert_streams_count_against_the_connection_cap() {
    let (state, _engine, hub) = state_with(GatewayConfig {
        max_websockets: 1,
        ..config()
    });
    hub.publish_snapshot(snapshot("ronde", 1, 0, vec![]));
    let served = serve(state).await;
    let open_sse = || async {
        let mut tcp = tokio::net::TcpStream::connect(served.addr).await.unwrap();
        tcp.write_all(
            b"GET /v1/races/ronde/alerts HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        (tcp, String::from_utf8_lossy(&buf[..n]).to_string())
    };
    let (first, head) = open_sse().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (_second, head) = open_sse().await;
    assert!(head.starts_with("HTTP/1.1 503"), "over the cap: {head}");
    assert!(head.contains("too_many_connections"), "{head}");
    drop(first);
    // The slot comes back once the gateway sees the first stream closed.
    let mut reopened = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if open_sse().await.1.starts_with("HTTP/1.1 200") {
            reopened = true;
            break;
        }
    }
    assert!(reopened, "the slot was not given back");
}

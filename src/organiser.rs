//! A minimal HTTP/1.1 client for the organiser API, used by `flevum simulate --connect` to create
//! the simulated race and issue its device tokens on a running server. Plain HTTP only (a gateway
//! on loopback or behind a TLS-terminating proxy); not a general-purpose client.

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `POST path` with a JSON body and the admin bearer token; returns the JSON answer.
pub async fn post_json(
    base: &str,
    admin_token: &str,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let authority = base
        .strip_prefix("http://")
        .context("--gateway must be an http:// URL")?
        .trim_end_matches('/');
    let payload = serde_json::to_vec(body)?;
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to the gateway at {authority}"))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {admin_token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&payload).await?;
    let mut response = Vec::new();
    stream
        .take(16 * 1024 * 1024)
        .read_to_end(&mut response)
        .await?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the gateway's answer has no body")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the gateway's answer has no status")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body).context("a malformed chunked answer")?
    } else {
        body.to_string()
    };
    if !(200..300).contains(&status) {
        bail!("{path}: HTTP {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("{path}: the answer is not JSON"))
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            break;
        }
        out.push_str(tail.get(..n)?);
        rest = tail.get(n + 2..)?;
    }
    Some(out)
}

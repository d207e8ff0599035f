//! The log's side: sending `add-checkpoint` to a witness and reading its answer.

use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;

/// The most a witness's answer may be.
pub const MAX_ANSWER_LEN: usize = 64 * 1024;

/// What a witness answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200: the cosignature lines.
    Cosigned(String),
    /// 409: the size of the latest checkpoint the witness cosigned for this log.
    Conflict(u64),
    /// Any other status, with the body's first line.
    Refused(u16, String),
}

/// The witness could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://host:port[/prefix]`.
    #[error("witness URL {0:?}: {1}")]
    Url(String, &'static str),
    /// Connecting, sending or reading failed.
    #[error("{0}")]
    Transport(String),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// A 409 without a size body.
    #[error("a 409 answer without a text/x.tlog.size body")]
    BadConflict,
}

/// The `add-checkpoint` request body: `old <size>`, the consistency proof (one base64 hash a
/// line), an empty line, the signed checkpoint.
pub fn request_body(old: u64, proof: &[kinko_audit::merkle::Hash], note: &str) -> Vec<u8> {
    use base64::Engine as _;
    let mut body = format!("old {old}\n");
    for h in proof {
        body.push_str(&base64::engine::general_purpose::STANDARD.encode(h));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body.into_bytes()
}

/// Splits `http://host:port/prefix` into the address and the request path
/// (`/prefix/add-checkpoint`).
pub fn endpoint(url: &str) -> Result<(String, String), ClientError> {
    let bad = |why| ClientError::Url(url.to_string(), why);
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        bad("only http:// is supported here; put a TLS terminator in front of the witness and a local forwarder in front of kinkod, or see docs/witness.md")
    })?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("no host, or credentials in the URL"));
    }
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((
        authority,
        format!("{}/add-checkpoint", prefix.trim_end_matches('/')),
    ))
}

/// Sends one `add-checkpoint` request body to the witness at `url`, within `timeout`.
pub async fn add_checkpoint(
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Outcome, ClientError> {
    let (authority, path) = endpoint(url)?;
    tokio::time::timeout(timeout, send(&authority, &path, body))
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

async fn send(authority: &str, path: &str, body: Vec<u8>) -> Result<Outcome, ClientError> {
    let t = |e: &dyn std::fmt::Display| ClientError::Transport(format!("{authority}: {e}"));
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| t(&e))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| t(&e))?;
    let driver = tokio::spawn(conn);
    let host = authority.to_string();
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| t(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| t(&e));
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            driver.abort();
            return Err(e);
        }
    };
    let status = resp.status().as_u16();
    let bytes = Limited::new(resp.into_body(), MAX_ANSWER_LEN)
        .collect()
        .await
        .map_err(|e| t(&e))?
        .to_bytes();
    driver.abort();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(match status {
        200 => Outcome::Cosigned(text),
        409 => Outcome::Conflict(
            text.strip_suffix('\n')
                .unwrap_or(&text)
                .parse()
                .map_err(|_| ClientError::BadConflict)?,
        ),
        s => Outcome::Refused(
            s,
            text.lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect(),
        ),
    })
}

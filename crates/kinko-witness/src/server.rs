//! The HTTP side: `POST <prefix>/add-checkpoint` over HTTP/1.1.
//!
//! Bodies are read up to [`kinko_audit::witness::MAX_BODY_LEN`]; each connection has a bounded
//! time; at most [`MAX_CONNECTIONS`] at once. Put a TLS terminator in front for a public
//! endpoint: cosignatures are authenticated by the witness key, not by the transport.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};

use crate::Witness;

/// Connections served at once; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 256;

/// How long one connection may take, request and answer.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn handle(
    witness: Arc<Witness>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.uri().path() != "/add-checkpoint" && !req.uri().path().ends_with("/add-checkpoint") {
        return Ok(text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "try POST /add-checkpoint\n".into(),
        ));
    }
    if req.method() != Method::POST {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "add-checkpoint takes POST\n".into(),
        ));
    }
    let body = match Limited::new(req.into_body(), kinko_audit::witness::MAX_BODY_LEN)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                PLAIN,
                "request body too long or cut off\n".into(),
            ));
        }
    };
    let answer = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, now())).await;
    Ok(match answer {
        Ok(Ok(a)) => text(
            StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            a.content_type,
            a.body,
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "witness failure");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                PLAIN,
                "the witness could not decide (see its log)\n".into(),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "witness task failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                PLAIN,
                "internal error\n".into(),
            )
        }
    })
}

/// Serves `witness` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, witness: Arc<Witness>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let witness = Arc::clone(&witness);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(Arc::clone(&witness), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(64 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(permit);
        });
    }
}

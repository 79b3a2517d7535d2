//! The local server's HTTP edge: every request that cannot reach a handler still gets an answer in the
//! catalogue's shape. Before hyper parses a request, its head is read here with a time limit and checked
//! against the limits (target length, header count and size), so that an oversized target or header
//! block gets `414` / `431` with a catalogue body instead of the framework's empty one, and a client
//! that stops sending gets `408` instead of holding the connection open. One request per connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use domain::ServiceError;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// What a request head may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest request target, in bytes.
    pub max_uri: usize,
    /// The most header lines.
    pub max_headers: usize,
    /// The most bytes of header lines.
    pub max_header_bytes: usize,
    /// How long a client may take to send its head, and then its body.
    pub read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_uri: 8 * 1024,
            max_headers: 100,
            max_header_bytes: 32 * 1024,
            read_timeout: Duration::from_secs(10),
        }
    }
}

/// A catalogue answer written straight to the socket, for a request refused before it was parsed.
pub fn raw_response(err: &ServiceError) -> Vec<u8> {
    let request_id = uuid::Uuid::now_v7().to_string();
    err.log(&request_id);
    let code = err.code();
    let status = axum::http::StatusCode::from_u16(code.http_status()).unwrap_or(axum::http::StatusCode::BAD_REQUEST);
    let body = err.to_body(&request_id).to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\napigw-requestid: {request_id}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

/// Why a head was refused.
enum Refused {
    /// The client closed the connection.
    Closed,
    /// An answer to send before closing.
    Answer(ServiceError),
}

/// Reads the request head into `buf`, checking it against `limits` as it arrives.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, limits: &Limits) -> Result<(), Refused> {
    let too_long = || Refused::Answer(ServiceError::UriTooLong { limit: limits.max_uri });
    let too_large = || {
        Refused::Answer(ServiceError::HeadersTooLarge {
            max_headers: limits.max_headers,
            max_bytes: limits.max_header_bytes,
        })
    };
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await.map_err(|_| Refused::Closed)?;
        if read == 0 {
            return Err(Refused::Closed);
        }
        buf.extend_from_slice(&chunk[..read]);
        let line_end = buf.windows(2).position(|w| w == b"\r\n");
        // The request line: `METHOD SP target SP version`.
        let request_line = &buf[..line_end.unwrap_or(buf.len())];
        let target = request_line
            .split(|b| *b == b' ')
            .nth(1)
            .map_or(request_line.len(), <[u8]>::len);
        if target > limits.max_uri {
            return Err(too_long());
        }
        let Some(line_end) = line_end else { continue };
        let headers = &buf[line_end + 2..];
        let end = headers.windows(4).position(|w| w == b"\r\n\r\n");
        let header_bytes = end.map_or(headers.len(), |e| e + 2);
        let header_lines = headers[..header_bytes.min(headers.len())]
            .windows(2)
            .filter(|w| *w == b"\r\n")
            .count();
        if header_lines > limits.max_headers || header_bytes > limits.max_header_bytes {
            return Err(too_large());
        }
        if end.is_some() || headers.starts_with(b"\r\n") {
            return Ok(());
        }
    }
}

/// A stream that first yields what was already read from it.
struct Prefixed {
    prefix: Vec<u8>,
    at: usize,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = out.remaining().min(self.prefix.len() - self.at);
            let at = self.at;
            out.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn connection(mut stream: TcpStream, router: Router, limits: Limits) {
    let mut head = Vec::new();
    let refused = match tokio::time::timeout(limits.read_timeout, read_head(&mut stream, &mut head, &limits)).await {
        Err(_) => Some(ServiceError::RequestTimeout),
        Ok(Err(Refused::Closed)) => return,
        Ok(Err(Refused::Answer(err))) => Some(err),
        Ok(Ok(())) => None,
    };
    if let Some(err) = refused {
        let _ = stream.write_all(&raw_response(&err)).await;
        let _ = stream.shutdown().await;
        return;
    }
    let io = TokioIo::new(Prefixed {
        prefix: head,
        at: 0,
        inner: stream,
    });
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    let served = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .serve_connection(io, service)
        .await;
    if let Err(err) = served {
        tracing::debug!(error = %err, "connection ended with an error");
    }
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, router.clone(), limits));
                }
                Err(err) => tracing::warn!(error = %err, "accept failed"),
            },
        }
    }
}

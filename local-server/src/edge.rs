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

/// Reads the request head into `buf`, checking it against `limits` as it arrives, and refuses a head
/// hyper would refuse with an empty `400` (a malformed request line or header line, a version other
/// than HTTP/1.0 or 1.1, an invalid or repeated `Content-Length`, a `Transfer-Encoding` other than
/// `chunked`) so that it too is answered in the catalogue's shape.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, limits: &Limits) -> Result<(), Refused> {
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
        // The request line: `METHOD SP target SP version`, ended by LF (CRLF, or bare LF as hyper allows).
        let line_end = buf.iter().position(|b| *b == b'\n');
        let request_line = &buf[..line_end.unwrap_or(buf.len())];
        let target = request_line
            .split(|b| *b == b' ')
            .nth(1)
            .map_or(request_line.len(), <[u8]>::len);
        if target > limits.max_uri {
            return Err(Refused::Answer(ServiceError::UriTooLong { limit: limits.max_uri }));
        }
        let Some(line_end) = line_end else { continue };
        let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut request = httparse::Request::new(&mut slots);
        let parsed = request.parse(buf);
        let head_end = match parsed {
            Ok(httparse::Status::Complete(end)) => end,
            Ok(httparse::Status::Partial) => buf.len(),
            Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
            Err(err) => return Err(malformed("request", &format!("malformed request head ({err})"))),
        };
        let header_bytes = head_end - (line_end + 1);
        let header_lines = buf[line_end + 1..head_end].iter().filter(|b| **b == b'\n').count();
        if header_lines > limits.max_headers + 1 || header_bytes > limits.max_header_bytes {
            return Err(too_large());
        }
        if matches!(parsed, Ok(httparse::Status::Complete(_))) {
            return check_framing(request.headers);
        }
    }
}

fn malformed(field: &str, message: &str) -> Refused {
    Refused::Answer(ServiceError::field(field, message))
}

/// How the body is framed must be unambiguous: `Content-Length` digits only and one value, and no
/// `Transfer-Encoding` but `chunked` (and not both, the classic request-smuggling head).
fn check_framing(headers: &[httparse::Header<'_>]) -> Result<(), Refused> {
    let mut length = None;
    for header in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")) {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("Content-Length", "must be a decimal number of bytes"));
        }
        if length.is_some_and(|seen| seen != value) {
            return Err(malformed(
                "Content-Length",
                "given more than once with different values",
            ));
        }
        length = Some(value);
    }
    for header in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        if !value.eq_ignore_ascii_case("chunked") {
            return Err(malformed("Transfer-Encoding", "only chunked is accepted"));
        }
        if length.is_some() {
            return Err(malformed("Transfer-Encoding", "cannot be given with Content-Length"));
        }
    }
    Ok(())
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

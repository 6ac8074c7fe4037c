//! The JSON error body for the answers actix-http writes itself, before any service sees a
//! request: a malformed request line, a URI over 65534 bytes or a bad header (`400`), a head over
//! its 128 KiB buffer or 96 headers (`431`), a request not received in time (`408`). actix-web 4
//! has no hook for them, so each connection's writes pass through [`JsonCodecErrors`], which
//! replaces a body-less `4xx`/`5xx` answer by the same answer with the JSON error body. The
//! application itself never writes one (`json_errors` in `http/mod.rs` gives every error a body),
//! so only actix-http's own answers match.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::Code;
use crate::http::error::error_body;

/// A connection whose body-less error answers get the JSON error body.
pub struct JsonCodecErrors<T> {
    inner: T,
    /// A rewritten answer not yet written to `inner`, and how much of it was.
    pending: Vec<u8>,
    written: usize,
}

impl<T> JsonCodecErrors<T> {
    pub fn new(inner: T) -> Self {
        JsonCodecErrors {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> JsonCodecErrors<T> {
    /// Writes what is pending of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonCodecErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonCodecErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        if let Some((consumed, answer)) = with_json_body(buf) {
            this.pending = answer;
            // What the inner connection does not take now goes out on the next write or flush.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(consumed));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The sentence for an answer actix-http made itself, by status.
fn message(status: u16) -> &'static str {
    match status {
        400 => "the request is not valid HTTP/1.1: a malformed request line, a URI longer than 65534 bytes or a malformed header",
        408 => "the request was not received in time",
        431 => "the request head is too large: at most 128 KiB and 96 headers",
        _ => "the request could not be read",
    }
}

/// If `written` starts with a whole body-less `4xx`/`5xx` answer head, the bytes it takes and
/// the same answer with the JSON error body (its status line and other headers kept).
fn with_json_body(written: &[u8]) -> Option<(usize, Vec<u8>)> {
    let head_len = written.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&written[..head_len]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.")?
        .get(2..5)?
        .parse()
        .ok()?;
    if status < 400 {
        return None;
    }
    let mut kept = Vec::new();
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => empty = value.trim() == "0",
            "content-type" | "transfer-encoding" => return None,
            _ => kept.push(line),
        }
    }
    if !empty {
        return None;
    }
    let body = error_body(Code::for_status(status), message(status), None);
    let mut answer = Vec::with_capacity(head_len + body.len() + 64);
    answer.extend_from_slice(status_line.as_bytes());
    answer.extend_from_slice(b"\r\ncontent-type: application/json\r\n");
    answer.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    for line in kept {
        answer.extend_from_slice(line.as_bytes());
        answer.extend_from_slice(b"\r\n");
    }
    answer.extend_from_slice(b"\r\n");
    answer.extend_from_slice(&body);
    Some((head_len + 4, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_body_less_error_heads_are_rewritten() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\ndate: x\r\n\r\n";
        let (consumed, answer) = with_json_body(head).unwrap();
        assert_eq!(consumed, head.len());
        let text = String::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains("connection: close") && head.contains("date: x"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "headers_too_large");
        for untouched in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 40\r\ncontent-type: application/json\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"{\"events\": []}\r\n\r\n",
        ] {
            assert!(with_json_body(untouched).is_none());
        }
    }
}

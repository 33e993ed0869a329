//! Request framing checks (SPEC §7): refuse anything two HTTP parsers could frame differently.
//!
//! hyper's HTTP/1 parser already refuses some of these; the gateway checks the headers again itself so the
//! guarantee does not depend on a parser version, and so HTTP/2 requests get the same rule. A refused
//! request is answered 400/6003 (chain 6100) and never forwarded.
//!
//! What hyper hides (it drops `Content-Length` when `Transfer-Encoding` is there too) is seen in the raw
//! bytes: each HTTP/1 connection's [`FramingTap`] feeds a [`HeadScanner`] with what the client sends and
//! gives each request its verdict, failing closed.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::HeaderMap;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Why a request's framing was refused; `Display` goes into the `error_chain` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("both Content-Length and Transfer-Encoding headers")]
    LengthAndEncoding,
    #[error("several differing Content-Length values")]
    DifferingLengths,
    #[error("malformed Content-Length header")]
    MalformedLength,
    /// Only `chunked` is accepted: the gateway re-frames bodies, so any other coding would be lost or
    /// read differently by the upstream.
    #[error("unsupported Transfer-Encoding (only chunked is accepted)")]
    UnsupportedEncoding,
    /// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host`.
    #[error("an HTTP/1.1 request needs exactly one Host header")]
    HostCount,
    /// RFC 9112 §6.1: chunked framing does not exist in HTTP/1.0, so a 1.0 recipient may frame the body by
    /// `Content-Length` or by the connection's end instead.
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    EncodingOnHttp10,
    /// The raw-byte scanner could not judge this request's head (see [`HeadScanner`]): refused rather than
    /// taken as unambiguous.
    #[error("the connection's request framing can no longer be followed ({0})")]
    Unjudged(StopReason),
}

/// Checks that an HTTP/1.1 request has exactly one `Host` header (RFC 9112 §3.2: a server must answer
/// 400 otherwise). HTTP/1.0 may omit it; HTTP/2 carries `:authority` instead.
pub fn check_host(version: http::Version, headers: &HeaderMap) -> Result<(), FramingError> {
    if version == http::Version::HTTP_11 && headers.get_all(http::header::HOST).iter().count() != 1
    {
        return Err(FramingError::HostCount);
    }
    Ok(())
}

/// Checks `Content-Length` and `Transfer-Encoding`: at most one `Transfer-Encoding`, exactly `chunked`, not
/// on HTTP/1.0, and then no `Content-Length`; else `Content-Length` values that are all one decimal length.
/// (One map lookup per name: this runs on every request.)
pub fn check(version: http::Version, headers: &HeaderMap) -> Result<(), FramingError> {
    let mut encodings = headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(encoding) = encodings.next() {
        if version == http::Version::HTTP_10 {
            return Err(FramingError::EncodingOnHttp10);
        }
        if headers.contains_key(CONTENT_LENGTH) {
            return Err(FramingError::LengthAndEncoding);
        }
        let chunked = encoding
            .to_str()
            .is_ok_and(|text| text.trim().eq_ignore_ascii_case("chunked"));
        if !chunked || encodings.next().is_some() {
            return Err(FramingError::UnsupportedEncoding);
        }
        return Ok(());
    }
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let text = value.to_str().map_err(|_| FramingError::MalformedLength)?;
        // `Content-Length: 5, 5` is one list; RFC 9110 §8.6 allows identical repeats, nothing else.
        for item in text.split(',') {
            let item = item.trim_matches(|c| c == ' ' || c == '\t');
            if item.is_empty() || item.len() > 19 || !item.bytes().all(|byte| byte.is_ascii_digit())
            {
                return Err(FramingError::MalformedLength);
            }
            let parsed = item
                .parse::<u64>()
                .map_err(|_| FramingError::MalformedLength)?;
            match length {
                Some(seen) if seen != parsed => return Err(FramingError::DifferingLengths),
                _ => length = Some(parsed),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn plain_framing_passes() {
        assert_eq!(check11(&headers(&[])), Ok(()));
        assert_eq!(check11(&headers(&[("content-length", "12")])), Ok(()));
        assert_eq!(
            check11(&headers(&[
                ("content-length", "5"),
                ("content-length", "5")
            ])),
            Ok(())
        );
        assert_eq!(check11(&headers(&[("content-length", "5, 5")])), Ok(()));
        assert_eq!(
            check11(&headers(&[("transfer-encoding", "Chunked")])),
            Ok(())
        );
        let http10 = |pairs| check(http::Version::HTTP_10, &headers(pairs));
        assert_eq!(http10(&[("content-length", "5")]), Ok(()));
    }

    fn check11(map: &HeaderMap) -> Result<(), FramingError> {
        check(http::Version::HTTP_11, map)
    }

    #[test]
    fn transfer_encoding_on_http10_is_refused() {
        for pairs in [
            &[("transfer-encoding", "chunked")][..],
            &[("transfer-encoding", "chunked"), ("content-length", "5")],
            &[("transfer-encoding", "gzip")],
        ] {
            assert_eq!(
                check(http::Version::HTTP_10, &headers(pairs)),
                Err(FramingError::EncodingOnHttp10),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let cases: &[(&[(&str, &str)], FramingError)] = &[
            (
                &[("content-length", "5"), ("transfer-encoding", "chunked")],
                FramingError::LengthAndEncoding,
            ),
            (
                &[("content-length", "5"), ("content-length", "6")],
                FramingError::DifferingLengths,
            ),
            (
                &[("content-length", "5, 6")],
                FramingError::DifferingLengths,
            ),
            (&[("content-length", "+5")], FramingError::MalformedLength),
            (&[("content-length", "0x5")], FramingError::MalformedLength),
            (&[("content-length", "")], FramingError::MalformedLength),
            (
                &[("content-length", "99999999999999999999")],
                FramingError::MalformedLength,
            ),
            (
                &[("transfer-encoding", "gzip, chunked")],
                FramingError::UnsupportedEncoding,
            ),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                FramingError::UnsupportedEncoding,
            ),
            (
                &[
                    ("transfer-encoding", "gzip"),
                    ("transfer-encoding", "chunked"),
                ],
                FramingError::UnsupportedEncoding,
            ),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "gzip"),
                ],
                FramingError::UnsupportedEncoding,
            ),
            (
                &[("transfer-encoding", "chunked"), ("content-length", "x")],
                FramingError::LengthAndEncoding,
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(check11(&headers(pairs)), Err(*expected), "{pairs:?}");
        }
    }
}

/// Watches the raw bytes of an HTTP/1 connection for request heads that carry both `Content-Length` and
/// `Transfer-Encoding`.
///
/// hyper resolves that conflict itself as RFC 9112 §6.1 allows (chunked wins, `Content-Length` is removed,
/// the connection closes after the response), so the service never sees both headers. The gateway's rule
/// is stricter: such a request is refused, because a proxy in front of it may have framed it by
/// `Content-Length`. The scanner follows message boundaries (`Content-Length` bodies, chunked bodies and
/// trailers) and records one verdict per request head, in order; the service takes the next verdict for
/// each HTTP/1 request it gets.
///
/// Its judgement holds for every request of a connection or for none: every head is followed the same way,
/// including those that offer an `Upgrade` or say `CONNECT` (hyper keeps reading HTTP/1 after them unless the
/// protocol switched, and frames their bodies like any other). Where it cannot follow the stream (an
/// oversized head or chunk line, a chunk size it cannot read, the HTTP/2 preface, a switched protocol) it
/// stops, and every later request on the connection gets [`HeadVerdict::Unjudged`], which the service
/// refuses and answers with `Connection: close`: a scanner that can no longer judge fails closed.
#[derive(Debug, Default)]
pub struct HeadScanner {
    state: ScanState,
    /// The head or line being collected.
    line: Vec<u8>,
    /// One entry per complete request head: whether it had both framing headers.
    verdicts: std::collections::VecDeque<bool>,
}

/// What the scanner says about the next request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadVerdict {
    /// At most one of the two framing headers: hyper's framing is the only one there is.
    Clear,
    /// Both `Content-Length` and `Transfer-Encoding` (or `Transfer-Encoding` on HTTP/1.0).
    Ambiguous,
    /// No verdict for this head: the scanner stopped following the stream, or never saw the head end.
    Unjudged(StopReason),
}

/// Why the scanner has no verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A head or chunk line longer than the scanner collects.
    OversizedLine,
    /// A chunk-size line that is not a hexadecimal size.
    MalformedChunk,
    /// The stream is not (or no longer) HTTP/1: the HTTP/2 preface, or a protocol switch.
    NotHttp1,
    /// The scanner is following the stream but recorded no verdict for the head the parser read.
    NoVerdict,
    /// The scanner's lock was poisoned (a panic while it was held): nothing it holds can be believed.
    Poisoned,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::OversizedLine => "a head or chunk line over 64 KiB",
            Self::MalformedChunk => "a malformed chunk size",
            Self::NotHttp1 => "the connection left HTTP/1",
            Self::NoVerdict => "no verdict for this head",
            Self::Poisoned => "internal error",
        })
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ScanState {
    /// Collecting a request head (leading empty lines are skipped, as hyper does).
    #[default]
    Head,
    /// Skipping a `Content-Length` body.
    Body(u64),
    /// Collecting a chunk-size line.
    ChunkSize,
    /// Skipping chunk data.
    ChunkData(u64),
    /// Skipping the line end after chunk data.
    ChunkEnd,
    /// Collecting trailer lines until an empty one.
    Trailers,
    /// The stream is no longer followed.
    Stopped(StopReason),
}

/// The longest head or line the scanner collects before it stops following the stream.
const MAX_SCANNED_HEAD: usize = 64 * 1024;

// === impl HeadScanner ===

impl HeadScanner {
    /// The verdict for the next request head the parser read (call once per HTTP/1 request, in order).
    pub fn next_verdict(&mut self) -> HeadVerdict {
        match (self.verdicts.pop_front(), self.state) {
            (Some(true), _) => HeadVerdict::Ambiguous,
            (Some(false), _) => HeadVerdict::Clear,
            (None, ScanState::Stopped(reason)) => HeadVerdict::Unjudged(reason),
            (None, _) => HeadVerdict::Unjudged(StopReason::NoVerdict),
        }
    }

    /// The connection switched protocol (a relayed WebSocket `101`): what follows is not HTTP/1, so nothing
    /// more is scanned (nor queued).
    pub fn switched_protocol(&mut self) {
        self.stop(StopReason::NotHttp1);
    }

    /// Feeds bytes read from the client, in order.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while let Some((&byte, rest)) = bytes.split_first() {
            match self.state {
                ScanState::Stopped(_) => return,
                ScanState::Body(remaining) | ScanState::ChunkData(remaining) => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    bytes = bytes.get(take..).unwrap_or_default();
                    let left = remaining - take as u64;
                    self.state = match (self.state, left) {
                        (ScanState::Body(_), 0) => ScanState::Head,
                        (ScanState::Body(_), left) => ScanState::Body(left),
                        (_, 0) => ScanState::ChunkEnd,
                        (_, left) => ScanState::ChunkData(left),
                    };
                    continue;
                }
                ScanState::ChunkEnd => {
                    if byte == b'\n' {
                        self.state = ScanState::ChunkSize;
                    }
                }
                ScanState::Head if self.line.is_empty() && (byte == b'\r' || byte == b'\n') => {}
                ScanState::Head | ScanState::ChunkSize | ScanState::Trailers => {
                    // The usual case: a whole head in these bytes. It is judged where it is, without
                    // collecting its lines (the same head, so the same verdict; one over the size limit
                    // takes the general way below, which stops).
                    if self.state == ScanState::Head
                        && self.line.is_empty()
                        && let Some(end) = head_len(bytes).filter(|&end| end <= MAX_SCANNED_HEAD)
                    {
                        let (head, after) = bytes.split_at(end);
                        self.head_end(head);
                        bytes = after;
                        continue;
                    }
                    // The rest of the line at once: up to and including its `\n`, or all there is.
                    let line_len =
                        memchr::memchr(b'\n', bytes).map_or(bytes.len(), |newline| newline + 1);
                    let (line, after) = bytes.split_at(line_len);
                    self.line.extend_from_slice(line);
                    if self.line.len() > MAX_SCANNED_HEAD {
                        self.stop(StopReason::OversizedLine);
                        return;
                    }
                    if line.last() == Some(&b'\n') {
                        self.line_end();
                    }
                    bytes = after;
                    continue;
                }
            }
            bytes = rest;
        }
    }

    fn stop(&mut self, reason: StopReason) {
        self.state = ScanState::Stopped(reason);
        self.line = Vec::new();
    }

    /// A `\n` was just collected.
    fn line_end(&mut self) {
        match self.state {
            ScanState::Head if self.line.ends_with(b"\n\n") || self.line.ends_with(b"\n\r\n") => {
                let mut head = std::mem::take(&mut self.line);
                self.head_end(&head);
                // The buffer is kept for the next head (unless the scanner stopped).
                if !matches!(self.state, ScanState::Stopped(_)) {
                    head.clear();
                    self.line = head;
                }
            }
            ScanState::ChunkSize => {
                let line = std::mem::take(&mut self.line);
                match chunk_size(&line) {
                    Some(0) => self.state = ScanState::Trailers,
                    Some(size) => self.state = ScanState::ChunkData(size),
                    // hyper refuses this body and closes; should anything follow, it is unjudged.
                    None => self.stop(StopReason::MalformedChunk),
                }
            }
            ScanState::Trailers => {
                if self.line == b"\n" || self.line == b"\r\n" {
                    self.state = ScanState::Head;
                }
                self.line.clear();
            }
            _ => {}
        }
    }

    fn head_end(&mut self, head: &[u8]) {
        let mut rest = head;
        let mut lines = std::iter::from_fn(|| {
            if rest.is_empty() {
                return None;
            }
            let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            let (line, after) = rest.split_at(end);
            rest = after.get(1..).unwrap_or_default();
            Some(line.strip_suffix(b"\r").unwrap_or(line))
        });
        let request_line = lines.next().unwrap_or_default();
        if request_line.ends_with(b"HTTP/2.0") {
            self.stop(StopReason::NotHttp1);
            return;
        }
        let http10 = request_line.ends_with(b"HTTP/1.0");
        let (mut length, mut has_length, mut has_encoding) = (None, false, false);
        for line in lines {
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let (name, value) = line.split_at(colon);
            let name = name.trim_ascii();
            if name.eq_ignore_ascii_case(b"content-length") {
                has_length = true;
                length = length.or_else(|| {
                    let value = value.get(1..).unwrap_or_default();
                    std::str::from_utf8(value).ok()?.trim().parse::<u64>().ok()
                });
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                has_encoding = true;
            }
        }
        self.verdicts
            .push_back(has_encoding && (has_length || http10));
        // Every head is followed alike, `Upgrade` offers and `CONNECT` included: hyper reads on in HTTP/1
        // unless the protocol switched, and then the service says so (`switched_protocol`).
        self.state = if has_encoding {
            ScanState::ChunkSize
        } else {
            match length {
                Some(0) | None => ScanState::Head,
                Some(length) => ScanState::Body(length),
            }
        };
    }
}

/// The size on a chunk-size line (`1f;ext=v\r\n`): hexadecimal digits only, optionally followed by spaces
/// or tabs, then an extension or the line end. `None` when that is not what the line holds.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line
        .iter()
        .position(|byte| !byte.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (size, rest) = line.split_at(digits);
    let rest = rest.trim_ascii_start();
    if size.is_empty() || !(rest.is_empty() || rest.starts_with(b";")) {
        return None;
    }
    size.iter().try_fold(0u64, |total, &byte| {
        let digit = char::from(byte).to_digit(16)?;
        total.checked_mul(16)?.checked_add(u64::from(digit))
    })
}

/// The length of the head at the start of `bytes` (which starts a head: not with a line end), through the
/// `\n` of the empty line that ends it (`\n\n` or `\n\r\n`, as the line collection tests), if it is all
/// there.
fn head_len(bytes: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', bytes).find_map(|newline| {
        match (bytes.get(newline + 1), bytes.get(newline + 2)) {
            (Some(b'\n'), _) => Some(newline + 2),
            (Some(b'\r'), Some(b'\n')) => Some(newline + 3),
            _ => None,
        }
    })
}

/// A connection's raw-byte framing tap: the [`HeadScanner`] its client bytes feed on their way to hyper
/// ([`FramingTap::tap`]), and the verdicts its HTTP/1 requests take, in order. It fails closed: a head it has
/// no clear verdict for is refused, and so is everything after its lock was poisoned.
#[derive(Debug, Clone, Default)]
pub struct FramingTap {
    /// `None`: a connection served without a tap (the overload answer, tests): nothing to add.
    scanner: Option<Arc<Mutex<HeadScanner>>>,
}

// === impl FramingTap ===

impl FramingTap {
    /// No tap: every head is left to hyper's framing and the header checks.
    pub fn none() -> Self {
        Self::default()
    }

    /// Taps `io`: the bytes read from it feed the returned tap's scanner.
    pub fn tap<I>(io: I) -> (Self, Tapped<I>) {
        let scanner = Arc::new(Mutex::new(HeadScanner::default()));
        let tapped = Tapped {
            inner: io,
            scanner: Arc::clone(&scanner),
        };
        (
            Self {
                scanner: Some(scanner),
            },
            tapped,
        )
    }

    /// The scanner's verdict on the next HTTP/1 request's head: refused unless it is [`HeadVerdict::Clear`]
    /// (both `Content-Length` and `Transfer-Encoding`, which hyper hides by dropping `Content-Length`, or a
    /// head the scanner could not judge). Must be called once per HTTP/1 request, in order. A poisoned
    /// scanner lock means nothing the scanner holds can be believed: refused, like every later request of
    /// the connection (a poisoned lock stays poisoned).
    pub fn next_head(&self) -> Result<(), FramingError> {
        let Some(scanner) = &self.scanner else {
            return Ok(());
        };
        let verdict = match scanner.lock() {
            Ok(mut scanner) => scanner.next_verdict(),
            Err(_poisoned) => HeadVerdict::Unjudged(StopReason::Poisoned),
        };
        match verdict {
            HeadVerdict::Clear => Ok(()),
            HeadVerdict::Ambiguous => Err(FramingError::LengthAndEncoding),
            HeadVerdict::Unjudged(reason) => Err(FramingError::Unjudged(reason)),
        }
    }

    /// The connection switched to WebSocket: the scanner stops (what follows is not HTTP/1).
    pub fn switched_protocol(&self) {
        if let Some(Ok(mut scanner)) = self.scanner.as_ref().map(|scanner| scanner.lock()) {
            scanner.switched_protocol();
        }
    }
}

/// A client stream whose incoming bytes also feed its [`FramingTap`]'s scanner on their way to hyper.
pub struct Tapped<I> {
    inner: I,
    scanner: Arc<Mutex<HeadScanner>>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tapped<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result
            && let (Some(new), Ok(mut scanner)) = (buf.filled().get(before..), self.scanner.lock())
        {
            scanner.feed(new);
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tapped<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tap_tests {
    use super::*;

    fn tapped() -> (FramingTap, Arc<Mutex<HeadScanner>>) {
        let (tap, tapped) = FramingTap::tap(());
        (tap, tapped.scanner)
    }

    /// A poisoned scanner lock is a refusal, for the request at hand and every later one (it used to read as
    /// "not ambiguous", failing open).
    #[test]
    fn a_poisoned_framing_scanner_refuses_every_request() {
        let (tap, scanner) = tapped();
        scanner
            .lock()
            .unwrap()
            .feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(tap.next_head(), Ok(()));
        let poisoner = Arc::clone(&scanner);
        let _ = std::thread::spawn(move || {
            let _held = poisoner.lock().unwrap();
            panic!("poisoning the scanner lock on purpose");
        })
        .join();
        assert!(scanner.is_poisoned());
        for _ in 0..3 {
            assert_eq!(
                tap.next_head(),
                Err(FramingError::Unjudged(StopReason::Poisoned))
            );
        }
    }

    #[test]
    fn an_ambiguous_or_unjudged_head_is_refused() {
        let (tap, scanner) = tapped();
        scanner.lock().unwrap().feed(
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        );
        assert_eq!(tap.next_head(), Err(FramingError::LengthAndEncoding));
        assert_eq!(
            tap.next_head(),
            Err(FramingError::Unjudged(StopReason::NoVerdict))
        );
        tap.switched_protocol();
        assert_eq!(
            tap.next_head(),
            Err(FramingError::Unjudged(StopReason::NotHttp1))
        );
        // Without a tap, nothing is added to the header checks.
        assert_eq!(FramingTap::none().next_head(), Ok(()));
    }
}

#[cfg(test)]
mod scanner_tests {
    use super::*;

    /// The verdicts up to the first unjudged head, as "ambiguous or not".
    fn judged(scanner: &mut HeadScanner) -> Vec<bool> {
        std::iter::from_fn(|| match scanner.next_verdict() {
            HeadVerdict::Clear => Some(false),
            HeadVerdict::Ambiguous => Some(true),
            HeadVerdict::Unjudged(_) => None,
        })
        .collect()
    }

    fn verdicts(chunks: &[&[u8]]) -> Vec<bool> {
        scanned(chunks).0
    }

    /// The judged verdicts, then what the scanner says of the head after them.
    fn scanned(chunks: &[&[u8]]) -> (Vec<bool>, HeadVerdict) {
        let mut scanner = HeadScanner::default();
        for chunk in chunks {
            scanner.feed(chunk);
        }
        (judged(&mut scanner), scanner.next_verdict())
    }

    #[test]
    fn follows_pipelined_requests_and_bodies() {
        let stream: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /x HTTP/1.1\r\nContent-Length: 40\r\n\r\nTransfer-Encoding: chunked\r\n\r\n123456789012\
            POST /y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n\
            \r\nGET /z HTTP/1.1\nContent-Length: 1\nTransfer-Encoding: chunked\n\n0\r\n\r\n";
        assert_eq!(verdicts(&[stream]), [false, false, false, true]);
        // The same stream in one-byte reads.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(verdicts(&bytes), [false, false, false, true]);
    }

    /// A head found whole in one read is judged as when it arrives in pieces: every split of these streams
    /// gives the same verdicts and leaves the scanner in the same state.
    #[test]
    fn a_whole_head_and_a_head_in_pieces_are_judged_alike() {
        // Heads of exactly the size limit (judged) and one byte over it (the scanner stops).
        let head =
            |value_len: usize| format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(value_len));
        let (at_limit, over_limit) = (head(MAX_SCANNED_HEAD - 23), head(MAX_SCANNED_HEAD - 22));
        assert_eq!(at_limit.len(), MAX_SCANNED_HEAD);
        let ambiguous = "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let streams: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n".to_vec(),
            b"\r\n\r\nGET / HTTP/1.1\nContent-Length: 3\n\nabcPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\nContent-Length: 1\r\n\n0\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nA: b\r\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nContent-Length: 4\r\n\r\nGET POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n".to_vec(),
            format!("{at_limit}{ambiguous}").into_bytes(),
            format!("{over_limit}{ambiguous}").into_bytes(),
        ];
        let expected: [&[bool]; 6] = [
            &[false, true],
            &[false, true],
            &[true],
            &[false, true],
            &[false, true],
            &[],
        ];
        for (index, stream) in streams.iter().enumerate() {
            let state = |chunk: usize| {
                let mut scanner = HeadScanner::default();
                for piece in stream.chunks(chunk) {
                    scanner.feed(piece);
                }
                (judged(&mut scanner), scanner.state, scanner.line.clone())
            };
            let whole = state(stream.len());
            assert_eq!(whole.0, expected[index], "stream {index}");
            for chunk in [1, 2, 3, 7, 64, 4096] {
                assert_eq!(state(chunk), whole, "chunks of {chunk}");
            }
        }
    }

    #[test]
    fn stops_following_where_the_stream_is_not_http1_and_says_so_ever_after() {
        assert_eq!(
            scanned(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n"]),
            (vec![], HeadVerdict::Unjudged(StopReason::NotHttp1))
        );
        let mut scanner = HeadScanner::default();
        scanner.feed(&vec![b'a'; MAX_SCANNED_HEAD + 10]);
        scanner.feed(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        for _ in 0..3 {
            assert_eq!(
                scanner.next_verdict(),
                HeadVerdict::Unjudged(StopReason::OversizedLine)
            );
        }
        // A head the scanner never saw end (the parser read one the scanner did not): unjudged.
        assert_eq!(
            scanned(&[b"GET / HTTP/1.1\r\nHost: a\r\n"]),
            (vec![], HeadVerdict::Unjudged(StopReason::NoVerdict))
        );
        // After a relayed switch nothing more is judged or queued.
        let mut scanner = HeadScanner::default();
        scanner.feed(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
        scanner.switched_protocol();
        scanner.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(scanner.next_verdict(), HeadVerdict::Clear);
        assert_eq!(
            scanner.next_verdict(),
            HeadVerdict::Unjudged(StopReason::NotHttp1)
        );
        assert!(scanner.verdicts.is_empty() && scanner.line.is_empty());
    }

    /// The heads that used to switch the scanner off for the rest of the connection (an `Upgrade` offer, a
    /// `CONNECT` line) are followed like any other, so the CL+TE head after them is still judged; so is one
    /// after a head that arrives in pieces, and one after an upgrade offer with a body.
    #[test]
    fn no_head_switches_the_judgement_off_for_the_heads_after_it() {
        let smuggled = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        for first in [
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
            "CONNECT gw.test:443 HTTP/1.1\r\nHost: gw.test:443\r\n\r\n",
            "CONNECT /client/v4/zones HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
            "POST /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello",
        ] {
            let stream = format!("{first}{smuggled}");
            for chunk in [1, 5, stream.len()] {
                let pieces: Vec<&[u8]> = stream.as_bytes().chunks(chunk).collect();
                assert_eq!(
                    verdicts(&pieces),
                    [false, true],
                    "{first:?} in chunks of {chunk}"
                );
            }
        }
    }

    #[test]
    fn transfer_encoding_on_http10_is_ambiguous() {
        assert_eq!(
            verdicts(&[b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]),
            [true]
        );
        assert_eq!(
            verdicts(&[b"POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\nx"]),
            [false]
        );
    }

    #[test]
    fn chunk_sizes_are_read_strictly() {
        for (line, size) in [
            (&b"5\r\n"[..], Some(5)),
            (b"1F;name=value\r\n", Some(31)),
            (b"a \t;x\n", Some(10)),
            (b"0000000000000000000a\r\n", Some(10)),
            (b"+5\r\n", None),
            (b"0x5\r\n", None),
            (b" 5\r\n", None),
            (b"\r\n", None),
            (b"5 x\r\n", None),
            (b"10000000000000000\r\n", None),
            (b"5", None),
        ] {
            assert_eq!(
                chunk_size(line),
                size,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            scanned(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"]),
            (vec![false], HeadVerdict::Unjudged(StopReason::MalformedChunk))
        );
    }
}

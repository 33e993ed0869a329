//! The bypass corpus (tests/bypass/*.txt, format in tests/bypass/README.md): raw HTTP/1.x requests sent byte
//! for byte over a plain TCP socket, and hand-built HTTP/2 frames (h2c prior knowledge) for the classes that
//! only exist in HTTP/2. The policy lets one token `GET` the DNS records of zone-1; each case must be refused
//! or forwarded with exactly the authorised canonical target, and afterwards everything the recording
//! upstream received is checked against the allowed (method, path) set and for leaked or spoofed headers.

use crate::common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one case may take before the connection is given up (the gateway's header-read timeout is 1 s).
const CASE_LIMIT: Duration = Duration::from_secs(5);
const ALLOWED: &str = "/client/v4/zones/zone-1/dns_records";

// ---- the corpus format ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// 2xx, and the upstream saw exactly one `GET` of this target.
    Forward(String),
    /// Exactly this status from the gateway; nothing forwarded.
    Status(u16),
    /// Exactly this status and error code (`errors[0].code` of the envelope); nothing forwarded.
    Answer(u16, u64),
    /// Any 4xx/5xx, or the connection closed without an answer; nothing forwarded.
    Reject,
    /// Either refused (as `Reject`) or forwarded with exactly this target (as `Forward`).
    Either(String),
}

#[derive(Debug, Clone)]
struct Case {
    file: String,
    name: String,
    expect: Expect,
    /// Header names the forwarded request must not carry.
    lacks: Vec<String>,
    bytes: Vec<u8>,
}

/// Expands `{TOKEN}`, `{AUTH}`, `{A}` and `{REPEAT:n:text}`, then the backslash escapes.
fn expand(text: &str) -> Vec<u8> {
    let mut text = text
        .replace("{AUTH}", &format!("Authorization: Bearer {TOKEN_READ}"))
        .replace("{TOKEN}", TOKEN_READ)
        .replace("{A}", ALLOWED);
    while let Some(start) = text.find("{REPEAT:") {
        let end = start + text[start..].find('}').expect("unclosed {REPEAT:");
        let inner = &text[start + "{REPEAT:".len()..end];
        let (count, piece) = inner.split_once(':').expect("{REPEAT:n:text}");
        let repeated = piece.repeat(count.parse().expect("REPEAT count"));
        text.replace_range(start..=end, &repeated);
    }
    unescape(&text)
}

fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte != b'\\' || index + 1 >= bytes.len() {
            out.push(byte);
            index += 1;
            continue;
        }
        match bytes[index + 1] {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'0' => out.push(0),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = std::str::from_utf8(&bytes[index + 2..index + 4]).unwrap();
                out.push(u8::from_str_radix(hex, 16).expect("\\xHH"));
                index += 2;
            }
            other => panic!("unknown escape \\{}", char::from(other)),
        }
        index += 2;
    }
    out
}

fn parse_corpus(file: &str, text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for block in text.split("\n=== ").skip(1) {
        let mut lines = block.lines();
        let name = lines.next().unwrap().trim().to_string();
        let mut expect = None;
        let mut raw = false;
        let mut lacks = Vec::new();
        let mut request: Vec<&str> = Vec::new();
        for line in lines {
            if request.is_empty() {
                if let Some(spec) = line.strip_prefix("expect: ") {
                    let (kind, argument) = spec.split_once(' ').unwrap_or((spec, ""));
                    expect = Some(match kind {
                        "forward" => Expect::Forward(argument.trim().to_string()),
                        "status" => match argument.trim().split_once(" code ") {
                            Some((status, code)) => Expect::Answer(
                                status.trim().parse().unwrap(),
                                code.trim().parse().unwrap(),
                            ),
                            None => Expect::Status(argument.trim().parse().unwrap()),
                        },
                        "reject" => Expect::Reject,
                        "refuse-or-forward" => Expect::Either(argument.trim().to_string()),
                        other => panic!("{file}: {name}: unknown expectation {other}"),
                    });
                    continue;
                }
                if line == "raw: yes" {
                    raw = true;
                    continue;
                }
                if let Some(header) = line.strip_prefix("upstream-lacks: ") {
                    lacks.push(header.trim().to_string());
                    continue;
                }
            }
            request.push(line);
        }
        while request.last().is_some_and(|line| line.is_empty()) {
            request.pop();
        }
        let text = if raw {
            request.concat()
        } else {
            let mut text = String::new();
            for line in &request {
                text.push_str(line);
                text.push_str("\r\n");
            }
            text.push_str("\r\n");
            text
        };
        assert!(!request.is_empty(), "{file}: {name}: no request");
        cases.push(Case {
            file: file.to_string(),
            expect: expect.unwrap_or_else(|| panic!("{file}: {name}: no expect line")),
            name,
            lacks,
            bytes: expand(&text),
        });
    }
    cases
}

fn load_corpus() -> Vec<Case> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bypass");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            parse_corpus(&name, &std::fs::read_to_string(path).unwrap())
        })
        .collect()
}

// ---- sending --------------------------------------------------------------------------------------------

/// Writes the bytes (a refusal may close the socket before they are all written) and reads until the
/// gateway closes the connection; the status of the first response, if any.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Option<u16> {
    exchange_answer(addr, bytes).await.0
}

/// [`exchange`], with the error code of the gateway's envelope when the answer has one.
async fn exchange_answer(addr: SocketAddr, bytes: &[u8]) -> (Option<u16>, Option<u64>) {
    let out = send_until_closed(addr, bytes, CASE_LIMIT).await;
    let text = String::from_utf8_lossy(&out);
    let status = text
        .lines()
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|status| status.parse().ok());
    (
        status,
        parse_response(&out).and_then(|response| response.code()),
    )
}

/// A name as upstream frameworks may read it: lowercase, `_` as `-`.
fn normalised(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Everything the upstream received must be something the policy allows, and carry nothing spoofed.
fn check_upstream(upstream: &Upstream, failures: &mut Vec<String>) {
    let allowed_record = format!("{ALLOWED}/");
    let opaque_value = "/client/v4/zones/zone-1/kv/";
    for request in upstream.requests() {
        let path = request.target.split('?').next().unwrap_or("");
        let allowed = request.method == "GET"
            && (path == ALLOWED
                || path == "/client/v4/ips"
                || path
                    .strip_prefix(&allowed_record)
                    .is_some_and(|id| !id.is_empty() && !id.contains('/'))
                // The opaque key name of zone-1: one segment (its slashes encoded).
                || path
                    .strip_prefix(opaque_value)
                    .is_some_and(|key| !key.is_empty() && !key.contains('/')));
        if !allowed {
            failures.push(format!(
                "upstream saw a request the policy does not allow: {} {}",
                request.method, request.target
            ));
        }
        for (name, value) in &request.headers {
            let text = String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase();
            let normal = normalised(name.as_str());
            if text.contains("evil") || normal.contains("evil") {
                failures.push(format!(
                    "upstream saw a spoofed header on {}: {name}: {text}",
                    request.target
                ));
            }
            if ["http2-settings", "x-original-url", "x-rewrite-url"].contains(&normal.as_str())
                || (normal == "upgrade" && text != "websocket")
            {
                failures.push(format!(
                    "upstream saw an upgrade or override header on {}: {name}: {text}",
                    request.target
                ));
            }
            if ["authorization", "x-auth-key", "x-auth-email"].contains(&normal.as_str()) {
                failures.push(format!(
                    "upstream saw a credential on {}: {name}",
                    request.target
                ));
            }
        }
        let principals: Vec<_> = request
            .headers
            .get_all("x-permgate-principal")
            .iter()
            .collect();
        if path != "/client/v4/ips" && principals != ["user:user-joe"] {
            failures.push(format!(
                "upstream saw principal {principals:?} on {}",
                request.target
            ));
        }
        let forwarded: Vec<_> = request.headers.get_all("x-forwarded-for").iter().collect();
        if forwarded != ["127.0.0.1"] {
            failures.push(format!(
                "upstream saw X-Forwarded-For {forwarded:?} on {}",
                request.target
            ));
        }
    }
}

/// The route the `opaque_params.txt` class adds: a Workers KV-like key name, declared opaque.
const OPAQUE_ROUTE: &str = r##"
routes:
  - id: kv.value
    method: GET
    path: /client/v4/zones/{zone_id}/kv/{key_name}
    permissions: [com.cloudflare.api.account.zone.dns-record.read]
    scope: { zone: zone_id }
    opaque: [key_name]
"##;

async fn bypass_setup() -> Setup {
    let upstream = start_upstream().await;
    let mut options = Options::new(&upstream.url());
    options.header_read_timeout_ms = 1_000;
    options.response_timeout_ms = 3_000;
    let config = write_config(&options);
    std::fs::write(config.dir.path().join("routes/opaque.yaml"), OPAQUE_ROUTE).unwrap();
    let gateway = start_gateway(&config).await;
    Setup {
        upstream,
        gateway,
        config,
    }
}

// ---- HTTP/1.x -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http1_corpus_is_refused_or_forwarded_canonically() {
    let cases = load_corpus();
    assert!(
        cases.len() >= 150,
        "the corpus has {} cases, expected at least 150",
        cases.len()
    );
    let setup = bypass_setup().await;
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut forwarded = 0;
    for case in &cases {
        let before = setup.upstream.requests().len();
        let (status, code) = exchange_answer(setup.addr(), &case.bytes).await;
        let seen = setup.upstream.requests();
        let new = &seen[before.min(seen.len())..];
        let label = format!("{}: {}", case.file, case.name);
        let ok = match &case.expect {
            Expect::Forward(target) | Expect::Either(target) => {
                let refused = matches!(case.expect, Expect::Either(_))
                    && status.is_none_or(|s| s >= 400)
                    && new.is_empty();
                let matches = status.is_some_and(|s| (200..300).contains(&s))
                    && new.len() == 1
                    && new[0].method == "GET"
                    && &new[0].target == target;
                if matches {
                    forwarded += 1;
                    for header in &case.lacks {
                        if new[0].headers.contains_key(header.as_str()) {
                            failures.push(format!("{label}: upstream got header {header}"));
                        }
                    }
                }
                matches || refused
            }
            Expect::Status(expected) => status == Some(*expected) && new.is_empty(),
            Expect::Answer(expected, expected_code) => {
                status == Some(*expected) && code == Some(*expected_code) && new.is_empty()
            }
            Expect::Reject => status.is_none_or(|s| s >= 400) && new.is_empty(),
        };
        if !ok {
            let got: Vec<_> = new
                .iter()
                .map(|r| format!("{} {}", r.method, r.target))
                .collect();
            failures.push(format!(
                "{label}: expected {:?}, got status {status:?} code {code:?}, upstream saw {got:?}",
                case.expect
            ));
        }
    }
    check_upstream(&setup.upstream, &mut failures);
    eprintln!(
        "bypass corpus: {} HTTP/1.x cases ({forwarded} forwarded) in {:?}",
        cases.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- HTTP/2 (h2c prior knowledge, hand-built frames) ------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap();
    let mut out = length.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1), `flags` in the first byte's high bits.
fn hpack_int(out: &mut Vec<u8>, prefix: u32, flags: u8, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | u8::try_from(value).unwrap());
        return;
    }
    out.push(flags | u8::try_from(max).unwrap());
    value -= max;
    while value >= 128 {
        out.push(u8::try_from(value % 128).unwrap() | 0x80);
        value /= 128;
    }
    out.push(u8::try_from(value).unwrap());
}

/// Literal header fields without indexing, new name, no Huffman: any bytes at all, as a fuzzer would.
fn header_block(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 7, 0, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 7, 0, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// How the server answered stream 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum H2Answer {
    Status(u16),
    Reset(u32),
    GoAway(u32),
    Closed,
}

/// Decodes `:status` from the first field of a response header block (hyper always sends it first): a
/// static-table index, or a literal with the `:status` name index and a plain or Huffman-coded value.
fn decode_status(block: &[u8]) -> Option<u16> {
    let mut index = 0;
    // Dynamic table size updates.
    while block.get(index)? & 0xE0 == 0x20 {
        index += 1;
    }
    let first = *block.get(index)?;
    if first & 0x80 != 0 {
        return match first & 0x7F {
            8 => Some(200),
            9 => Some(204),
            10 => Some(206),
            11 => Some(304),
            12 => Some(400),
            13 => Some(404),
            14 => Some(500),
            _ => None,
        };
    }
    let name_index = if first & 0x40 != 0 {
        first & 0x3F
    } else {
        first & 0x0F
    };
    if !(8..=14).contains(&name_index) {
        return None;
    }
    let length_byte = *block.get(index + 1)?;
    let length = usize::from(length_byte & 0x7F);
    let value = block.get(index + 2..index + 2 + length)?;
    let text = if length_byte & 0x80 == 0 {
        String::from_utf8(value.to_vec()).ok()?
    } else {
        huffman_digits(value)?
    };
    text.parse().ok()
}

/// Huffman-decodes a string of ASCII digits (RFC 7541 Appendix B: `0`-`2` are 5-bit codes 0-2, `3`-`9`
/// the 6-bit codes 0x19-0x1f).
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let mut out = String::new();
    let (mut code, mut length) = (0u32, 0u32);
    for byte in bytes {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            length += 1;
            if length == 5 && code <= 2 {
                out.push(char::from(b'0' + u8::try_from(code).ok()?));
                (code, length) = (0, 0);
            } else if length == 6 && (0x19..=0x1F).contains(&code) {
                out.push(char::from(b'3' + u8::try_from(code - 0x19).ok()?));
                (code, length) = (0, 0);
            } else if length >= 6 && out.len() == 3 {
                return Some(out);
            }
        }
    }
    Some(out)
}

/// Opens an h2c connection, sends one HEADERS frame (plus optional DATA) on stream 1 and reports the answer.
async fn h2_exchange(addr: SocketAddr, fields: &[(&str, &[u8])], data: Option<&[u8]>) -> H2Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let flags = if data.is_some() {
        END_HEADERS
    } else {
        END_HEADERS | END_STREAM
    };
    out.extend(frame(HEADERS, flags, 1, &header_block(fields)));
    if let Some(data) = data {
        out.extend(frame(DATA, END_STREAM, 1, data));
    }
    let _ = stream.write_all(&out).await;
    let answer = tokio::time::timeout(CASE_LIMIT, async {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            // Complete frames first.
            while buffer.len() >= 9 {
                let length = usize::from(buffer[0]) << 16
                    | usize::from(buffer[1]) << 8
                    | usize::from(buffer[2]);
                if buffer.len() < 9 + length {
                    break;
                }
                let kind = buffer[3];
                let flags = buffer[4];
                let stream_id =
                    u32::from_be_bytes([buffer[5], buffer[6], buffer[7], buffer[8]]) & 0x7FFF_FFFF;
                let payload: Vec<u8> = buffer[9..9 + length].to_vec();
                buffer.drain(..9 + length);
                match kind {
                    SETTINGS if flags & ACK == 0 => {
                        let _ = stream.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
                    }
                    HEADERS if stream_id == 1 => {
                        return decode_status(&payload).map_or(H2Answer::Closed, H2Answer::Status);
                    }
                    RST_STREAM if stream_id == 1 => {
                        let code = payload
                            .get(..4)
                            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                        return H2Answer::Reset(code);
                    }
                    GOAWAY => {
                        let code = payload
                            .get(4..8)
                            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                        return H2Answer::GoAway(code);
                    }
                    _ => {}
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return H2Answer::Closed,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    answer.expect("the gateway neither answered nor closed the h2 connection")
}

fn request_fields<'a>(path: &'a [u8], extra: &[(&'a str, &'a [u8])]) -> Vec<(&'a str, &'a [u8])> {
    let mut fields: Vec<(&str, &[u8])> = vec![
        (":method", b"GET"),
        (":scheme", b"http"),
        (":authority", b"gw.test"),
        (":path", path),
    ];
    fields.extend_from_slice(extra);
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http2_corpus_is_refused_or_forwarded_canonically() {
    let setup = bypass_setup().await;
    let auth = format!("Bearer {TOKEN_READ}");
    let auth = auth.as_bytes();
    let allowed = ALLOWED.as_bytes();
    let bearer_pair: (&str, &[u8]) = ("authorization", auth);
    type Fields<'a> = Vec<(&'a str, &'a [u8])>;
    let path_case =
        |path: &'static str| -> Fields<'_> { request_fields(path.as_bytes(), &[bearer_pair]) };
    let cases: Vec<(&str, Fields<'_>, Option<&[u8]>, Expect)> = vec![
        (
            "allowed",
            path_case(ALLOWED),
            None,
            Expect::Forward(ALLOWED.into()),
        ),
        (
            "decoded unreserved",
            path_case("/client/v4/zones/zone-1/%64ns_records"),
            None,
            Expect::Forward(ALLOWED.into()),
        ),
        (
            "encoded slash in an opaque parameter, as received",
            path_case("/client/v4/zones/zone-1/kv/%61%2fb"),
            None,
            Expect::Forward("/client/v4/zones/zone-1/kv/%61%2fb".into()),
        ),
        (
            "encoded slash in a parameter that is not opaque",
            path_case("/client/v4/zones/zone-1/dns_records/a%2Fb"),
            None,
            Expect::Status(400),
        ),
        (
            "dot-dot piece in an opaque parameter",
            path_case("/client/v4/zones/zone-1/kv/..%2Fdns_records"),
            None,
            Expect::Status(400),
        ),
        (
            "dot dot",
            path_case("/client/v4/zones/zone-1/../zone-2/dns_records"),
            None,
            Expect::Status(400),
        ),
        (
            "encoded dot dot",
            path_case("/client/v4/zones/zone-1/%2E%2e/zone-2/dns_records"),
            None,
            Expect::Status(400),
        ),
        (
            "overlong dot",
            path_case("/client/v4/zones/zone-1/%c0%ae%c0%ae/zone-2/dns_records"),
            None,
            Expect::Status(400),
        ),
        (
            "encoded slash",
            path_case("/client/v4/zones/zone-1%2fdns_records"),
            None,
            Expect::Status(400),
        ),
        (
            "encoded backslash",
            path_case("/client/v4/zones/zone-1%5Cdns_records"),
            None,
            Expect::Status(400),
        ),
        (
            "double slash",
            path_case("/client/v4//zones/zone-1/dns_records"),
            None,
            Expect::Status(400),
        ),
        (
            "semicolon",
            path_case("/client/v4/zones/zone-1;x/dns_records"),
            None,
            Expect::Status(400),
        ),
        (
            "encoded nul",
            path_case("/client/v4/zones/zone-1%00/dns_records"),
            None,
            Expect::Status(400),
        ),
        (
            "bad percent",
            path_case("/client/v4/zones/zone-1%g1/dns_records"),
            None,
            Expect::Status(400),
        ),
        (
            "raw backslash",
            path_case("/client/v4/zones/zone-1\\dns_records"),
            None,
            Expect::Reject,
        ),
        (
            "raw control",
            path_case("/client/v4/zones/zone-1\x01/dns_records"),
            None,
            Expect::Reject,
        ),
        (
            "raw space",
            path_case("/client/v4/zones/zone-1 /dns_records"),
            None,
            Expect::Reject,
        ),
        (
            "fragment",
            path_case("/client/v4/zones/zone-1/dns_records#x"),
            None,
            Expect::Either(ALLOWED.into()),
        ),
        ("empty path", path_case(""), None, Expect::Reject),
        (
            "relative path",
            path_case("client/v4/zones/zone-1/dns_records"),
            None,
            Expect::Reject,
        ),
        ("asterisk with get", path_case("*"), None, Expect::Reject),
        (
            "absolute path in :path",
            path_case("http://gw.test/client/v4/zones/zone-1/dns_records"),
            None,
            Expect::Reject,
        ),
        (
            "other zone",
            path_case("/client/v4/zones/zone-2/dns_records"),
            None,
            Expect::Status(403),
        ),
        (
            "two :path, allowed first",
            vec![
                (":method", b"GET"),
                (":scheme", b"http"),
                (":path", allowed),
                (":path", b"/client/v4/zones/zone-2/dns_records"),
                bearer_pair,
            ],
            None,
            Expect::Reject,
        ),
        (
            "two :path, allowed second",
            vec![
                (":method", b"GET"),
                (":scheme", b"http"),
                (":path", b"/client/v4/zones/zone-2/dns_records"),
                (":path", allowed),
                bearer_pair,
            ],
            None,
            Expect::Reject,
        ),
        (
            "two :method",
            vec![
                (":method", b"GET"),
                (":method", b"DELETE"),
                (":scheme", b"http"),
                (":path", allowed),
                bearer_pair,
            ],
            None,
            Expect::Reject,
        ),
        (
            "pseudo header after a regular one",
            vec![
                (":method", b"GET"),
                (":scheme", b"http"),
                bearer_pair,
                (":path", allowed),
            ],
            None,
            Expect::Reject,
        ),
        (
            "missing :path",
            vec![(":method", b"GET"), (":scheme", b"http"), bearer_pair],
            None,
            Expect::Reject,
        ),
        (
            "unknown pseudo header",
            request_fields(allowed, &[(":evil", b"1"), bearer_pair]),
            None,
            Expect::Reject,
        ),
        (
            "uppercase authorization",
            request_fields(allowed, &[("Authorization", auth)]),
            None,
            Expect::Reject,
        ),
        (
            "uppercase principal",
            request_fields(
                allowed,
                &[bearer_pair, ("X-Permgate-Principal", b"user:evil")],
            ),
            None,
            Expect::Reject,
        ),
        (
            "connection header",
            request_fields(allowed, &[bearer_pair, ("connection", b"keep-alive")]),
            None,
            Expect::Reject,
        ),
        (
            "keep-alive header",
            request_fields(allowed, &[bearer_pair, ("keep-alive", b"timeout=5")]),
            None,
            Expect::Reject,
        ),
        (
            "transfer-encoding",
            request_fields(allowed, &[bearer_pair, ("transfer-encoding", b"chunked")]),
            None,
            Expect::Reject,
        ),
        (
            "te trailers",
            request_fields(allowed, &[bearer_pair, ("te", b"trailers")]),
            None,
            Expect::Forward(ALLOWED.into()),
        ),
        (
            "te gzip",
            request_fields(allowed, &[bearer_pair, ("te", b"gzip")]),
            None,
            Expect::Reject,
        ),
        (
            "te trailers and gzip",
            request_fields(allowed, &[bearer_pair, ("te", b"trailers, gzip")]),
            None,
            Expect::Reject,
        ),
        (
            "upgrade header",
            request_fields(allowed, &[bearer_pair, ("upgrade", b"websocket")]),
            None,
            Expect::Reject,
        ),
        (
            "spoofed principal",
            request_fields(
                allowed,
                &[bearer_pair, ("x-permgate-principal", b"user:evil")],
            ),
            None,
            Expect::Forward(ALLOWED.into()),
        ),
        (
            "underscore principal",
            request_fields(
                allowed,
                &[bearer_pair, ("x_permgate_principal", b"user:evil")],
            ),
            None,
            Expect::Forward(ALLOWED.into()),
        ),
        (
            "spoofed forwarded for",
            request_fields(
                allowed,
                &[bearer_pair, ("x-forwarded-for", b"10.6.6.6, evil")],
            ),
            None,
            Expect::Forward(ALLOWED.into()),
        ),
        (
            "spoofed request id",
            request_fields(allowed, &[bearer_pair, ("x-request-id", b"evil-id")]),
            None,
            Expect::Forward(ALLOWED.into()),
        ),
        (
            "underscore auth key",
            request_fields(allowed, &[bearer_pair, ("x_auth_key", b"evil-key")]),
            None,
            Expect::Forward(ALLOWED.into()),
        ),
        (
            "method override",
            request_fields(
                allowed,
                &[bearer_pair, ("x-http-method-override", b"DELETE")],
            ),
            None,
            Expect::Status(400),
        ),
        (
            "underscore method override",
            request_fields(allowed, &[bearer_pair, ("x_http_method", b"DELETE")]),
            None,
            Expect::Status(400),
        ),
        (
            "two authorizations",
            request_fields(
                allowed,
                &[bearer_pair, ("authorization", b"Bearer pgt_test_dave")],
            ),
            None,
            Expect::Status(400),
        ),
        (
            "no credential",
            request_fields(allowed, &[]),
            None,
            Expect::Status(400),
        ),
        (
            "crlf in a value",
            request_fields(
                allowed,
                &[
                    bearer_pair,
                    ("x-a", b"b\r\nx-permgate-principal: user:evil"),
                ],
            ),
            None,
            Expect::Reject,
        ),
        (
            "nul in a value",
            request_fields(allowed, &[bearer_pair, ("x-a", b"b\0evil")]),
            None,
            Expect::Reject,
        ),
        (
            "space in a name",
            request_fields(allowed, &[bearer_pair, ("x a", b"evil")]),
            None,
            Expect::Reject,
        ),
        (
            "content-length larger than data",
            request_fields(allowed, &[bearer_pair, ("content-length", b"10")]),
            Some(b"ab"),
            Expect::Reject,
        ),
        (
            "content-length and data differ on post",
            vec![
                (":method", b"POST"),
                (":scheme", b"http"),
                (":path", allowed),
                bearer_pair,
                ("content-length", b"1"),
            ],
            Some(b"{}"),
            Expect::Reject,
        ),
        (
            "connect method",
            vec![
                (":method", b"CONNECT"),
                (":authority", b"gw.test:443"),
                bearer_pair,
            ],
            None,
            Expect::Reject,
        ),
        (
            "authority differs from host",
            request_fields(allowed, &[bearer_pair, ("host", b"other.example")]),
            None,
            Expect::Either(ALLOWED.into()),
        ),
        (
            "lowercase method",
            vec![
                (":method", b"get"),
                (":scheme", b"http"),
                (":path", allowed),
                bearer_pair,
            ],
            None,
            Expect::Reject,
        ),
    ];
    let mut failures = Vec::new();
    for (name, fields, data, expect) in &cases {
        let before = setup.upstream.requests().len();
        let answer = h2_exchange(setup.addr(), fields, *data).await;
        let seen = setup.upstream.requests();
        let new = &seen[before.min(seen.len())..];
        let ok = match expect {
            Expect::Forward(target) => {
                answer == H2Answer::Status(200) && new.len() == 1 && &new[0].target == target
            }
            Expect::Either(target) => {
                (answer == H2Answer::Status(200) && new.len() == 1 && &new[0].target == target)
                    || (new.is_empty()
                        && !matches!(answer, H2Answer::Status(status) if status < 400))
            }
            // The hand-built frames read no body: the status is what HTTP/2 cases check.
            Expect::Status(status) | Expect::Answer(status, _) => {
                answer == H2Answer::Status(*status) && new.is_empty()
            }
            Expect::Reject => {
                new.is_empty() && !matches!(answer, H2Answer::Status(status) if status < 400)
            }
        };
        if !ok {
            let got: Vec<_> = new
                .iter()
                .map(|r| format!("{} {}", r.method, r.target))
                .collect();
            let mut line = String::new();
            write!(
                line,
                "h2 {name}: expected {expect:?}, got {answer:?}, upstream saw {got:?}"
            )
            .unwrap();
            failures.push(line);
        }
    }
    check_upstream(&setup.upstream, &mut failures);
    eprintln!("bypass corpus: {} HTTP/2 cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_corpus_parses_and_covers_every_class() {
    let cases = load_corpus();
    let files: std::collections::BTreeSet<_> =
        cases.iter().map(|case| case.file.as_str()).collect();
    for class in [
        "dot_segments.txt",
        "separators.txt",
        "encoding.txt",
        "target_forms.txt",
        "method_override.txt",
        "connection_headers.txt",
        "spoofed_headers.txt",
        "smuggling.txt",
        "credentials.txt",
        "host_and_size.txt",
        "opaque_params.txt",
    ] {
        assert!(files.contains(class), "no corpus file {class}");
    }
    let names: std::collections::BTreeSet<_> = cases
        .iter()
        .map(|case| (case.file.as_str(), case.name.as_str()))
        .collect();
    assert_eq!(names.len(), cases.len(), "duplicate case names");
    assert_eq!(unescape(r"a\r\n\x41\\\0"), b"a\r\nA\\\0");
    assert_eq!(expand("{REPEAT:3:ab}"), b"ababab");
}

/// RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without a `Host`, or with more than
/// one (`Host` takes no part in the decision and is replaced towards the upstream, so this is hygiene,
/// not a bypass).
#[tokio::test]
async fn http11_requests_without_exactly_one_host_are_refused() {
    let setup = bypass_setup().await;
    let auth = format!("Authorization: Bearer {TOKEN_READ}");
    for head in [
        format!("GET {ALLOWED} HTTP/1.1\r\nConnection: close\r\n{auth}\r\n\r\n"),
        format!(
            "GET {ALLOWED} HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n{auth}\r\n\r\n"
        ),
    ] {
        assert_eq!(
            exchange(setup.addr(), head.as_bytes()).await,
            Some(400),
            "{head}"
        );
    }
    assert!(setup.upstream.requests().is_empty());
}

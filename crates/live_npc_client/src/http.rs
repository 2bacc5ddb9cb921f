//! A minimal HTTP/1.1 for the token endpoints (the simulator's `POST /v1alpha/auth_tokens`, the
//! token server, and the client that calls both): one request per connection
//! (`Connection: close`), JSON bodies, bounded sizes, no panics on bad input.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::scrub_secrets;

/// Why an HTTP exchange failed. Never contains a key or a token (URLs are scrubbed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL is not usable (`http://` or `https://` with a host).
    Url(String),
    /// The server could not be reached or the connection failed.
    Connect(String),
    /// TLS failed (certificate, handshake), or `https://` without the `tls` feature.
    Tls(String),
    /// The answer is not a complete, well-formed HTTP response.
    Response(String),
    /// No complete answer in time.
    Timeout,
}

/// Largest request or response head.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request or response body.
pub const MAX_BODY: usize = 1 << 20;
/// Headers parsed at most.
const MAX_HEADERS: usize = 64;

/// An HTTP request head (and, once read, its body).
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The query without `?`.
    pub query: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `name`, percent-decoded.
    pub fn query_values(&self, name: &str) -> Vec<String> {
        self.query
            .split('&')
            .filter_map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k) == name).then(|| percent_decode(v))
            })
            .collect()
    }
}

/// Decodes `%XX` escapes and `+` of a query component (invalid escapes are kept as they are).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the head ends (just after `\r\n\r\n`), if it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 4)
}

/// Reads from `stream` into `buf` until the head is complete. `Ok(None)`: the peer closed first
/// or the head is larger than [`MAX_HEAD`].
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = head_end(buf) {
            return Ok(Some(end));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Parses a complete request head (`buf[..head_len]`). `None` if it is not HTTP.
pub fn parse_request(buf: &[u8]) -> Option<Request> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let target = req.path?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some(Request {
        method: req.method?.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).trim().to_owned()))
            .collect(),
        body: Vec::new(),
    })
}

/// Reads the body of `req` (`Content-Length` only; requests with chunked bodies are refused).
/// `already` holds the bytes read past the head.
pub async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    req: &mut Request,
    already: &[u8],
) -> Result<(), (u16, &'static str)> {
    read_body_max(stream, req, already, MAX_BODY).await
}

/// [`read_body`] with a smaller cap: bodies over `max` bytes (and over [`MAX_BODY`]) are
/// refused with 413 before anything past the head is read.
pub async fn read_body_max<S: AsyncRead + Unpin>(
    stream: &mut S,
    req: &mut Request,
    already: &[u8],
    max: usize,
) -> Result<(), (u16, &'static str)> {
    if req.header("transfer-encoding").is_some_and(|t| !t.eq_ignore_ascii_case("identity")) {
        return Err((411, "A Content-Length is required."));
    }
    let len = match req.header("content-length") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| (400, "Invalid Content-Length."))?,
    };
    if len > max.min(MAX_BODY) {
        return Err((413, "The request body is too large."));
    }
    let mut body = already[..already.len().min(len)].to_vec();
    let mut chunk = [0u8; 8192];
    while body.len() < len {
        let want = len.saturating_sub(body.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]).await {
            Ok(0) | Err(_) => return Err((400, "The request body ended early.")),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    req.body = body;
    Ok(())
}

/// The reason phrase of a status.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes a complete JSON response and flushes it.
pub async fn write_json<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, body: &[u8]) -> io::Result<()> {
    write_response(stream, status, &[], body).await
}

/// The bytes of a complete JSON response with `extra` headers (names and values must not hold
/// CR or LF; such headers are left out).
pub fn response_bytes(status: u16, extra: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason_phrase(status),
        body.len()
    );
    for (name, value) in extra {
        if !name.contains(['\r', '\n', ':']) && !value.contains(['\r', '\n']) {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Writes a complete JSON response with `extra` headers (see [`response_bytes`]) and flushes it.
pub async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    extra: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    stream.write_all(&response_bytes(status, extra, body)).await?;
    stream.flush().await
}

/// The host of a `Host` header value (`name`, `name:port`, `1.2.3.4:port`, `[::1]:port`),
/// lower-cased, without brackets or a trailing dot. `None` if the value is malformed (an
/// unbracketed IPv6 address, a non-numeric port, an empty host, characters no host has).
pub fn host_of(value: &str) -> Option<String> {
    let value = value.trim();
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return None;
        }
        (inside, port)
    } else {
        match value.split_once(':') {
            None => (value, None),
            Some((h, p)) => (h, Some(p)),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':');
    if host.is_empty() || !host.chars().all(valid) {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

/// The gRPC status name Google APIs put in JSON errors for an HTTP status.
pub fn status_name(status: u16) -> &'static str {
    match status {
        400 | 411 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 => "UNIMPLEMENTED",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

/// A Google-style JSON error body: `{"error": {"code", "message", "status"}}`.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    serde_json::json!({"error": {"code": status, "message": message, "status": status_name(status)}})
        .to_string()
        .into_bytes()
}

/// A parsed client URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

impl Url {
    /// Parses `http://`, `https://` (and, for convenience, `ws://` as http, `wss://` as https).
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        use tokio_tungstenite::tungstenite::http::Uri;
        let bad = |why: &str| HttpError::Url(format!("{why}: {}", scrub_secrets(url)));
        let uri: Uri = url.trim().parse().map_err(|_| bad("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http" | "ws") => false,
            Some("https" | "wss") => true,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let target = if target.is_empty() { "/".to_owned() } else { target };
        Ok(Url { tls, host, port, target })
    }

    /// `Host` header value.
    pub(crate) fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default { host } else { format!("{host}:{}", self.port) }
    }

    /// This URL with another path (the query is dropped).
    pub fn with_path(&self, path: &str) -> Url {
        let base = self.target.split('?').next().unwrap_or("").trim_end_matches('/');
        Url { target: format!("{base}{path}"), ..self.clone() }
    }
}

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends `POST url` with a JSON body and `headers`; reads the whole response.
pub async fn post_json(
    url: &Url,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
    extra_root_pem: &[Vec<u8>],
) -> Result<Response, HttpError> {
    match tokio::time::timeout(timeout, post_inner(url, headers, body, extra_root_pem)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout),
    }
}

async fn post_inner(
    url: &Url,
    headers: &[(&str, &str)],
    body: &[u8],
    extra_root_pem: &[Vec<u8>],
) -> Result<Response, HttpError> {
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: bevy_live_npc/{}\r\n",
        url.target,
        url.host_header(),
        body.len(),
        env!("CARGO_PKG_VERSION"),
    );
    for (name, value) in headers {
        if value.contains(['\r', '\n']) || name.contains(['\r', '\n', ':']) {
            return Err(HttpError::Url("a header contains invalid characters".to_owned()));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| HttpError::Connect(format!("{}:{}: {e}", url.host, url.port)))?;
    let _ = tcp.set_nodelay(true);
    if url.tls {
        let mut stream = tls_connect(url, tcp, extra_root_pem).await?;
        exchange(&mut stream, head.as_bytes(), body).await
    } else {
        let mut stream = tcp;
        exchange(&mut stream, head.as_bytes(), body).await
    }
}

#[cfg(feature = "tls")]
async fn tls_connect(
    url: &Url,
    tcp: tokio::net::TcpStream,
    extra_root_pem: &[Vec<u8>],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, HttpError> {
    use rustls::pki_types::ServerName;
    let config = crate::tls::tls_config(extra_root_pem).map_err(|e| HttpError::Tls(e.reason))?;
    let name = ServerName::try_from(url.host.clone()).map_err(|e| HttpError::Tls(format!("server name: {e}")))?;
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| HttpError::Tls(e.to_string()))
}

#[cfg(not(feature = "tls"))]
async fn tls_connect(
    _url: &Url,
    _tcp: tokio::net::TcpStream,
    _extra_root_pem: &[Vec<u8>],
) -> Result<tokio::net::TcpStream, HttpError> {
    Err(HttpError::Tls("https:// needs the `tls` feature".to_owned()))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    head: &[u8],
    body: &[u8],
) -> Result<Response, HttpError> {
    let io = |e: io::Error| HttpError::Connect(e.to_string());
    stream.write_all(head).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut buf = Vec::with_capacity(4096);
    let end = read_head(stream, &mut buf)
        .await
        .map_err(io)?
        .ok_or_else(|| HttpError::Response("the connection closed before a complete response head".to_owned()))?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(HttpError::Response("not an HTTP response".to_owned())),
    }
    let status = resp.code.unwrap_or(0);
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    let chunked = header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
    let mut rest = buf[end..].to_vec();
    // Read to the end of the response (the server closes: `Connection: close`), bounded.
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(n) = length
            && !chunked
            && rest.len() >= n
        {
            rest.truncate(n);
            break;
        }
        if chunked && chunked_complete(&rest) {
            break;
        }
        if rest.len() > MAX_BODY + MAX_HEAD {
            return Err(HttpError::Response("the response body is too large".to_owned()));
        }
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => rest.extend_from_slice(&chunk[..n]),
            // A TLS peer that closes without close_notify: what was read is the body.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io(e)),
        }
    }
    let body = if chunked {
        dechunk(&rest).ok_or_else(|| HttpError::Response("malformed chunked body".to_owned()))?
    } else {
        rest
    };
    Ok(Response { status, body })
}

/// Decodes a chunked body; `None` if it is malformed or incomplete.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = memchr::memmem::find(data, b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        // Sizes come from the peer: checked, so `ffffffffffffffff` is malformed, not a panic.
        let framed = size.checked_add(2)?;
        if data.len() < framed || out.len().checked_add(size)? > MAX_BODY {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[framed..];
    }
}

/// Whether a chunked body has its last chunk.
fn chunked_complete(data: &[u8]) -> bool {
    dechunk(data).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://generativelanguage.googleapis.com").ok();
        assert_eq!(
            u,
            Some(Url { tls: true, host: "generativelanguage.googleapis.com".into(), port: 443, target: "/".into() })
        );
        let u = Url::parse("ws://127.0.0.1:9000/x?y=1").ok();
        assert_eq!(u.as_ref().map(|u| (u.tls, u.port, u.target.as_str())), Some((false, 9000, "/x?y=1")));
        assert_eq!(u.map(|u| u.with_path("/v1alpha/auth_tokens").target), Some("/x/v1alpha/auth_tokens".to_owned()));
        assert!(Url::parse("ftp://x").is_err());
        assert!(Url::parse("not a url").is_err());
        assert_eq!(Url::parse("http://[::1]:80/").map(|u| u.host_header()).ok(), Some("[::1]".into()));
    }

    #[test]
    fn chunks() {
        assert_eq!(dechunk(b"4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\n\r\n"), Some(b"Wikipedia".to_vec()));
        assert_eq!(dechunk(b"4\r\nWi"), None);
        assert_eq!(dechunk(b"zz\r\n"), None);
        // Hostile sizes: the largest `usize` (where `size + 2` overflowed) and one past the cap.
        assert_eq!(dechunk(b"ffffffffffffffff\r\nab\r\n0\r\n\r\n"), None);
        assert_eq!(dechunk(format!("{:x}\r\n", MAX_BODY + 1).as_bytes()), None);
    }

    #[test]
    fn requests() {
        let raw = b"POST /v1alpha/auth_tokens?key=a%2Bb HTTP/1.1\r\nHost: x\r\nX-Goog-Api-Key: k\r\nContent-Length: 2\r\n\r\n{}";
        let end = head_end(raw);
        assert_eq!(end, Some(raw.len() - 2));
        let req = parse_request(raw).unwrap_or_default();
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/v1alpha/auth_tokens"));
        assert_eq!(req.query_values("key"), ["a+b"]);
        assert_eq!(req.header("x-goog-api-key"), Some("k"));
        assert!(parse_request(b"\x16\x03\x01garbage\r\n\r\n").is_none());
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn hosts() {
        let h = |v: &str| host_of(v);
        assert_eq!(h("LocalHost:8787").as_deref(), Some("localhost"));
        assert_eq!(h("game.example.com.").as_deref(), Some("game.example.com"));
        assert_eq!(h("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(h("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(h("[::1]").as_deref(), Some("::1"));
        for bad in ["", ":80", "::1", "[::1]x", "[]:1", "a:b", "a:123456", "a b", "a:", "evil.com/x", "[::1]:"] {
            assert_eq!(h(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn responses_carry_extra_headers_but_no_injection() {
        let bytes = response_bytes(429, &[("Retry-After", "7"), ("X-Bad", "a\r\nSet-Cookie: x")], b"{}");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{text}");
        assert!(text.contains("\r\nRetry-After: 7\r\n"), "{text}");
        assert!(!text.contains("Set-Cookie"), "{text}");
        assert!(text.ends_with("\r\n\r\n{}"), "{text}");
    }
}

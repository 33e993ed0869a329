//! HTML built by hand, with one rule that makes it safe: markup is only ever a `&'static str` written in
//! this crate ([`Html::raw`]), and every value from a config, a request or a log goes through [`Html::text`],
//! which escapes `& < > " '` (so it is safe in element content and in quoted attribute values alike).
//! URLs put together from values escape their query components with [`url_component`] first.

use std::fmt::Write as _;

/// A page being written.
#[derive(Debug, Default)]
pub struct Html(String);

impl Html {
    /// An empty page.
    pub fn new() -> Self {
        Self(String::with_capacity(16 * 1024))
    }

    /// Markup as written in the source: never a value.
    pub fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// A value, escaped for element content and quoted attributes.
    pub fn text(&mut self, value: &str) -> &mut Self {
        escape_into(&mut self.0, value);
        self
    }

    /// A count (nothing to escape).
    pub fn count(&mut self, value: u64) -> &mut Self {
        let _ = write!(self.0, "{value}");
        self
    }

    /// `<tag>value</tag>` with `open` and `close` written in the source.
    pub fn element(&mut self, open: &'static str, value: &str, close: &'static str) -> &mut Self {
        self.raw(open).text(value).raw(close)
    }

    /// `<a href="href">label</a>`; `href` is escaped as an attribute value.
    pub fn link(&mut self, href: &str, label: &str) -> &mut Self {
        self.raw("<a href=\"")
            .text(href)
            .raw("\">")
            .text(label)
            .raw("</a>")
    }

    /// `<label>label <input attributes value="value"></label>`: the label and the input's attributes (its
    /// name first) written in the source, the value escaped.
    pub fn input(
        &mut self,
        label: &'static str,
        attributes: &'static str,
        value: &str,
    ) -> &mut Self {
        self.raw("<label>")
            .raw(label)
            .raw(" <input ")
            .raw(attributes)
            .raw(" value=\"")
            .text(value)
            .raw("\"></label>")
    }

    /// The page.
    pub fn finish(self) -> String {
        self.0
    }
}

/// Escapes `& < > " '`.
pub fn escape_into(out: &mut String, value: &str) {
    for character in value.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
}

/// `value` percent-encoded for a URL query component (everything but unreserved characters).
pub fn url_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// `path?name=value&…` with the values encoded; empty values are left out.
pub fn url_with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = path.to_string();
    let mut first = true;
    for (name, value) in pairs {
        if value.is_empty() {
            continue;
        }
        url.push(if first { '?' } else { '&' });
        first = false;
        url.push_str(name);
        url.push('=');
        url.push_str(&url_component(value));
    }
    url
}

/// The decoded `name=value` pairs of a query string (`application/x-www-form-urlencoded`: `+` is a space,
/// `%XX` a byte; a malformed escape is kept as written; bytes that are not UTF-8 are replaced).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(name), form_decode(value))
        })
        .collect()
}

fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let high = bytes
                    .get(index + 1)
                    .and_then(|b| char::from(*b).to_digit(16));
                let low = bytes
                    .get(index + 2)
                    .and_then(|b| char::from(*b).to_digit(16));
                if let (Some(high), Some(low)) = (high, low) {
                    out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                    index += 3;
                    continue;
                }
                out.push(b'%');
            }
            other => out.push(other),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_markup_is_not() {
        let mut html = Html::new();
        html.raw("<p title=\"")
            .text("a\"b'c")
            .raw("\">")
            .text("<script>alert(1)</script> & more")
            .raw("</p>");
        assert_eq!(
            html.finish(),
            "<p title=\"a&quot;b&#39;c\">&lt;script&gt;alert(1)&lt;/script&gt; &amp; more</p>"
        );
    }

    #[test]
    fn query_strings_round_trip() {
        let url = url_with_query(
            "/console/why-denied",
            &[("path", "/a b/c?d=e&f"), ("user", ""), ("ip", "::1")],
        );
        assert_eq!(
            url,
            "/console/why-denied?path=%2Fa%20b%2Fc%3Fd%3De%26f&ip=%3A%3A1"
        );
        let query = url.split_once('?').unwrap().1;
        assert_eq!(
            query_pairs(query),
            vec![
                ("path".to_string(), "/a b/c?d=e&f".to_string()),
                ("ip".to_string(), "::1".to_string())
            ]
        );
        assert_eq!(
            query_pairs("q=a+b%2&x=%zz&y"),
            vec![
                ("q".to_string(), "a b%2".to_string()),
                ("x".to_string(), "%zz".to_string()),
                ("y".to_string(), String::new())
            ]
        );
    }
}

//! Values the compilers parse the same way wherever they appear: CIDRs (`trusted_proxies`, token IP
//! conditions) and SHA-256 digests (`secret_sha256`, `api_key_sha256`).

use ipnet::IpNet;

/// Parses `10.0.0.0/8`, `2400:cb00::/32` or a bare address (a single-host range).
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// 64 hex digits (either case) to 32 bytes.
pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

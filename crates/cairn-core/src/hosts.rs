//! `Host` header patterns: which names a server answers to, against DNS rebinding (a
//! public name an attacker points at a loopback or private address). Shared by the
//! tracking server (`--allowed-hosts`) and `cairn serve`. Plain string logic: no HTTP
//! types.

/// Loopback names and the private address ranges (RFC 1918, RFC 4193), with any port:
/// what a browser on this machine or the internal network sends, never a public DNS name
/// an attacker could point at a private address.
pub fn default_allowed_hosts() -> Vec<String> {
    let mut hosts = Vec::new();
    for local in ["localhost", "127.0.0.1", "[::1]", "0.0.0.0"] {
        hosts.push(local.to_string());
        hosts.push(format!("{local}:*"));
    }
    hosts.extend(
        [
            "192.168.*",
            "10.*",
            "fc00:*",
            "fd00:*",
            "[fc00:*",
            "[fd00:*",
        ]
        .map(String::from),
    );
    hosts.extend((16..32).map(|i| format!("172.{i}.*")));
    hosts
}

/// Shell-style match where `*` is any run of characters (the only wildcard).
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern.eq_ignore_ascii_case(text);
    }
    let text = text.to_ascii_lowercase();
    let mut rest = text.as_str();
    for (i, part) in parts.iter().enumerate() {
        let part = part.to_ascii_lowercase();
        if i == 0 {
            match rest.strip_prefix(part.as_str()) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part.as_str());
        } else {
            match rest.find(part.as_str()) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Whether a `Host` header value is allowed.
pub fn host_allowed(allowed: &[String], host: &str) -> bool {
    !host.is_empty() && allowed.iter().any(|p| p == "*" || glob(p, host))
}

/// Whether a listen host (name or address, IPv6 with or without brackets) is loopback.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_matches(|c| c == '[' || c == ']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The default patterns for a server listening on `listen_host`: the defaults, plus that
/// host (with any port) when it is a specific non-loopback name or address.
pub fn allowed_hosts_for(listen_host: &str) -> Vec<String> {
    let mut hosts = default_allowed_hosts();
    let host = listen_host.trim_matches(|c| c == '[' || c == ']');
    let loopback = is_loopback(host);
    let unspecified = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    if !host.is_empty() && !loopback && !unspecified {
        let shown = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        hosts.push(shown.clone());
        hosts.push(format!("{shown}:*"));
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_hosts_are_local_and_private() {
        let d = default_allowed_hosts();
        for ok in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "10.1.2.3:5000",
            "192.168.0.7",
            "172.16.0.1:80",
            "172.31.255.255",
        ] {
            assert!(host_allowed(&d, ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example.com",
            "evil.example.com:5000",
            "172.32.0.1",
            "8.8.8.8:5000",
            "127.0.0.1.evil.com",
        ] {
            assert!(!host_allowed(&d, bad), "{bad}");
        }
    }

    #[test]
    fn patterns() {
        let hosts = vec![
            "mlflow.internal:*".to_string(),
            "*.corp.example".to_string(),
        ];
        assert!(host_allowed(&hosts, "mlflow.internal:443"));
        assert!(host_allowed(&hosts, "A.CORP.example"));
        assert!(!host_allowed(&hosts, "mlflow.internal"));
        assert!(host_allowed(&["*".to_string()], "anything"));
    }

    #[test]
    fn the_listen_host_joins_the_defaults() {
        assert!(allowed_hosts_for("10.1.2.3").contains(&"10.1.2.3:*".to_string()));
        assert!(allowed_hosts_for("mlflow.internal").contains(&"mlflow.internal".to_string()));
        assert!(allowed_hosts_for("2001:db8::1").contains(&"[2001:db8::1]:*".to_string()));
        for same in ["0.0.0.0", "::", "127.0.0.1", "localhost", "[::1]"] {
            assert_eq!(allowed_hosts_for(same), default_allowed_hosts(), "{same}");
        }
    }
}

//! Parses PostgreSQL connection strings in both libpq forms into keyword/value pairs.
//!
//! URL form: `postgres[ql]://[user[:password]@][host[:port][,host[:port]…]][/dbname][?key=value&…]`
//! Keyword form: `host=localhost port=5432 user=app password='with space'`.
//! Values keep libpq's meaning; [`super::database`] interprets them.

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;

/// Keyword/value pairs from a connection string, keyed by libpq keyword.
pub(crate) type ConnParams = BTreeMap<String, String>;

/// A connection string that cannot be parsed. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid database connection string: {0}")]
pub struct ConnInfoError(pub String);

/// Parses either form.
pub(crate) fn parse(input: &str) -> Result<ConnParams, ConnInfoError> {
    let trimmed = input.trim();
    if let Some(rest) = trimmed.strip_prefix("postgresql://").or_else(|| trimmed.strip_prefix("postgres://")) {
        parse_url(rest)
    } else {
        parse_keywords(trimmed)
    }
}

fn decode(part: &str, what: &str) -> Result<String, ConnInfoError> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ConnInfoError(format!("{what} is not valid percent-encoded UTF-8")))
}

fn parse_url(rest: &str) -> Result<ConnParams, ConnInfoError> {
    let mut params = ConnParams::new();
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = before_query.split_once('/').unwrap_or((before_query, ""));
    let hostspec = match authority.rsplit_once('@') {
        Some((userinfo, hostspec)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            insert_nonempty(&mut params, "user", decode(user, "the user name")?);
            if userinfo.contains(':') {
                params.insert("password".into(), decode(password, "the password")?);
            }
            hostspec
        }
        None => authority,
    };
    parse_hostspec(hostspec, &mut params)?;
    insert_nonempty(&mut params, "dbname", decode(path, "the database name")?);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| ConnInfoError("a query parameter is not of the form key=value".into()))?;
        params.insert(decode(key, "a parameter name")?, decode(value, "a parameter value")?);
    }
    Ok(params)
}

fn parse_hostspec(hostspec: &str, params: &mut ConnParams) -> Result<(), ConnInfoError> {
    if hostspec.is_empty() {
        return Ok(());
    }
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for entry in hostspec.split(',') {
        let (host, port) = split_host_port(entry)?;
        hosts.push(decode(host, "a host name")?);
        ports.push(port.to_owned());
    }
    params.insert("host".into(), hosts.join(","));
    if ports.iter().any(|p| !p.is_empty()) {
        params.insert("port".into(), ports.join(","));
    }
    Ok(())
}

fn split_host_port(entry: &str) -> Result<(&str, &str), ConnInfoError> {
    if let Some(bracketed) = entry.strip_prefix('[') {
        let (host, after) =
            bracketed.split_once(']').ok_or_else(|| ConnInfoError("an IPv6 address lacks its ']'".into()))?;
        return Ok((host, after.strip_prefix(':').unwrap_or_default()));
    }
    Ok(entry.split_once(':').unwrap_or((entry, "")))
}

fn insert_nonempty(params: &mut ConnParams, key: &str, value: String) {
    if !value.is_empty() {
        params.insert(key.into(), value);
    }
}

fn parse_keywords(input: &str) -> Result<ConnParams, ConnInfoError> {
    let mut params = ConnParams::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(params);
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConnInfoError(format!("keyword {key:?} is not followed by '='")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let value = keyword_value(&mut chars, &key)?;
        params.insert(key, value);
    }
}

fn keyword_value(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, key: &str) -> Result<String, ConnInfoError> {
    let mut value = String::new();
    if chars.next_if_eq(&'\'').is_some() {
        loop {
            match chars.next() {
                Some('\'') => return Ok(value),
                Some('\\') => value.extend(chars.next()),
                Some(c) => value.push(c),
                None => return Err(ConnInfoError(format!("the value of {key:?} lacks its closing quote"))),
            }
        }
    }
    while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
        if c == '\\' {
            value.extend(chars.next());
        } else {
            value.push(c);
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> ConnParams {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_a_full_url() {
        let parsed = parse("postgresql://app:s%40cret@db.example:6543/ckpt?sslmode=require&application_name=x");
        assert_eq!(
            parsed,
            Ok(params(&[
                ("user", "app"),
                ("password", "s@cret"),
                ("host", "db.example"),
                ("port", "6543"),
                ("dbname", "ckpt"),
                ("sslmode", "require"),
                ("application_name", "x"),
            ]))
        );
    }

    #[test]
    fn parses_several_hosts_and_ipv6() {
        let parsed = parse("postgres://h1:5432,[::1]:5433,h3/db?target_session_attrs=read-write");
        assert_eq!(
            parsed,
            Ok(params(&[
                ("host", "h1,::1,h3"),
                ("port", "5432,5433,"),
                ("dbname", "db"),
                ("target_session_attrs", "read-write"),
            ]))
        );
    }

    #[test]
    fn a_bare_url_has_no_parameters() {
        assert_eq!(parse("postgresql://"), Ok(ConnParams::new()));
        assert_eq!(parse("postgresql://localhost"), Ok(params(&[("host", "localhost")])));
    }

    #[test]
    fn parses_the_keyword_form_with_quotes_and_escapes() {
        let parsed = parse(r"host=localhost  port = 5432 password='a b\'c' dbname=x\ y");
        assert_eq!(
            parsed,
            Ok(params(&[("host", "localhost"), ("port", "5432"), ("password", "a b'c"), ("dbname", "x y")]))
        );
    }

    #[test]
    fn errors_never_repeat_the_password() {
        let err = parse("host=x password='unterminated").expect_err("bad");
        assert!(!err.to_string().contains("unterminated"));
        let err = parse("postgresql://u:hunter2@h/db?password%3Dhunter2").expect_err("bad");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

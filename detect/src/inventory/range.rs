//! Ansible host ranges: `web[01:20].example.com`, `db-[a:f]`, `n[0:10:2]`,
//! several per name.

/// Upper bound on the hosts one name may expand to, so a typo cannot
/// allocate without end.
const MAX_EXPANSION: usize = 65_536;

/// Expands every `[begin:end]` / `[begin:end:step]` range in a host name.
/// Numeric ranges keep zero padding when `begin` has a leading zero;
/// alphabetic ranges go over single letters. A name without a range is
/// returned as is. The error says what is wrong with the range.
pub fn expand_host_pattern(name: &str) -> Result<Vec<String>, String> {
    let Some(open) = name.find('[') else { return Ok(vec![name.to_owned()]) };
    let Some(close_rel) = name[open..].find(']') else {
        return Err(format!("`{name}`: `[` without a closing `]`"));
    };
    let close = open + close_rel;
    let inner = &name[open + 1..close];
    if !inner.contains(':') {
        return Err(format!("`{name}`: `[{inner}]` is not a range like [01:20] or [a:f]"));
    }
    let (head, tail) = (&name[..open], &name[close + 1..]);
    let items = expand_range(inner).map_err(|why| format!("`{name}`: range `[{inner}]` {why}"))?;
    let rests = expand_host_pattern(tail)?;
    if items.len().saturating_mul(rests.len()) > MAX_EXPANSION {
        return Err(format!("`{name}` expands to more than {MAX_EXPANSION} hosts"));
    }
    let mut out = Vec::with_capacity(items.len() * rests.len());
    for item in &items {
        for rest in &rests {
            out.push(format!("{head}{item}{rest}"));
        }
    }
    Ok(out)
}

fn expand_range(inner: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = inner.split(':').collect();
    let (begin, end, step) = match parts.as_slice() {
        [b, e] => (*b, *e, None),
        [b, e, s] => (*b, *e, Some(*s)),
        _ => return Err("must be begin:end or begin:end:step".into()),
    };
    let step = match step {
        None => 1,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("has step `{s}`, expected a positive number"))?,
    };
    if end.is_empty() {
        return Err("has no end value".into());
    }
    let begin = if begin.is_empty() { "0" } else { begin };
    if begin.chars().all(|c| c.is_ascii_digit()) && end.chars().all(|c| c.is_ascii_digit()) {
        let width = if begin.len() > 1 && begin.starts_with('0') {
            if begin.len() != end.len() {
                return Err("must have begin and end of equal width when zero-padded".into());
            }
            begin.len()
        } else {
            0
        };
        let b: u64 = begin.parse().map_err(|_| format!("begin `{begin}` is too large"))?;
        let e: u64 = end.parse().map_err(|_| format!("end `{end}` is too large"))?;
        if b > e {
            return Err("has begin greater than end".into());
        }
        if (e - b) / step as u64 >= MAX_EXPANSION as u64 {
            return Err(format!("has more than {MAX_EXPANSION} values"));
        }
        return Ok((b..=e).step_by(step).map(|n| format!("{n:0width$}")).collect());
    }
    let letter = |s: &str| {
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_alphabetic() => Some(c),
            _ => None,
        }
    };
    match (letter(begin), letter(end)) {
        (Some(b), Some(e)) => {
            if b > e {
                return Err("has begin greater than end".into());
            }
            Ok((b..=e).filter(char::is_ascii_alphabetic).step_by(step).map(String::from).collect())
        }
        _ => Err("must be numbers (01:20) or single letters (a:f)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ranges_keep_padding() {
        let hosts = expand_host_pattern("web[01:03].example.com").expect("valid");
        assert_eq!(hosts, ["web01.example.com", "web02.example.com", "web03.example.com"]);
        assert_eq!(expand_host_pattern("n[8:10]").expect("valid"), ["n8", "n9", "n10"]);
        assert_eq!(expand_host_pattern("n[0:6:3]").expect("valid"), ["n0", "n3", "n6"]);
        assert_eq!(expand_host_pattern("n[:1]").expect("valid"), ["n0", "n1"]);
    }

    #[test]
    fn alphabetic_and_multiple_ranges() {
        assert_eq!(expand_host_pattern("db-[a:c]").expect("valid"), ["db-a", "db-b", "db-c"]);
        assert_eq!(expand_host_pattern("r[1:2]-[a:b]").expect("valid"), ["r1-a", "r1-b", "r2-a", "r2-b"]);
        assert_eq!(expand_host_pattern("plain.example.com").expect("valid"), ["plain.example.com"]);
    }

    #[test]
    fn bad_ranges_say_why() {
        for (input, why) in [
            ("web[01:3]", "equal width"),
            ("web[5:1]", "begin greater than end"),
            ("web[1:]", "no end value"),
            ("web[1:2", "without a closing"),
            ("web[a:5]", "numbers (01:20) or single letters"),
            ("web[1:9:0]", "positive number"),
            ("web[12]", "not a range"),
            ("web[0:9999999]", "more than"),
        ] {
            let err = expand_host_pattern(input).expect_err(input);
            assert!(err.contains(why), "{input}: {err}");
        }
    }
}

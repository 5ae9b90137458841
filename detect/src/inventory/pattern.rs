//! Ansible host patterns for `--limit`: `web:db`, `web,db`, `!web`,
//! `&prod`, `web*`, `all`.

use std::collections::BTreeSet;

use super::ParsedInventory;

/// The hosts `pattern` selects.
pub(crate) fn select(inventory: &ParsedInventory, pattern: &str) -> BTreeSet<String> {
    let terms: Vec<&str> = pattern.split([':', ',']).map(str::trim).filter(|t| !t.is_empty()).collect();
    let mut selected: BTreeSet<String> = BTreeSet::new();
    let (mut intersections, mut exclusions) = (Vec::new(), Vec::new());
    for term in terms {
        if let Some(t) = term.strip_prefix('!') {
            exclusions.push(t);
        } else if let Some(t) = term.strip_prefix('&') {
            intersections.push(t);
        } else {
            selected.extend(matching(inventory, term));
        }
    }
    for term in intersections {
        let keep = matching(inventory, term);
        selected.retain(|h| keep.contains(h));
    }
    for term in exclusions {
        let drop = matching(inventory, term);
        selected.retain(|h| !drop.contains(h));
    }
    selected
}

fn matching(inventory: &ParsedInventory, term: &str) -> BTreeSet<String> {
    inventory
        .hosts
        .values()
        .filter(|host| glob(term, &host.name) || host.groups.iter().any(|g| glob(term, g)))
        .map(|host| host.name.clone())
        .collect()
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else { return pattern == text };
    if parts.len() == 1 {
        return pattern == text;
    }
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("web*", "web01"));
        assert!(glob("*01", "web01"));
        assert!(glob("w*b*1", "web01"));
        assert!(!glob("db*", "web01"));
        assert!(glob("web01", "web01"));
        assert!(!glob("a*a", "a"));
    }
}

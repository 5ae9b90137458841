//! How this project's programs (`rustle-cross`, `rustle-agent`) report to
//! the person running them: colour only on a terminal, and an error chain
//! without repeats.

use std::io::IsTerminal;

/// ANSI colours in log lines only on a terminal, and not with `NO_COLOR`
/// set (<https://no-color.org>): a log file written from stderr stays plain
/// text.
pub fn colour_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The error and its causes, `: `-separated, leaving out a cause whose text
/// the message before it already carries (many errors name their source).
pub fn render_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut cause = Some(error);
    while let Some(current) = cause {
        let line = current.to_string();
        if !text.contains(&line) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&line);
        }
        cause = current.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Leaf(String);

    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct Wrapper {
        message: String,
        #[source]
        source: Leaf,
    }

    #[test]
    fn a_cause_the_message_already_names_is_said_once() {
        let repeated =
            Wrapper { message: "reading agent.toml: no such file".into(), source: Leaf("no such file".into()) };
        assert_eq!(render_error(&repeated), "reading agent.toml: no such file");
        let new = Wrapper { message: "reading agent.toml".into(), source: Leaf("no such file".into()) };
        assert_eq!(render_error(&new), "reading agent.toml: no such file");
    }
}

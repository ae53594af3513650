//! Aligned text tables for people (every command that lists things), with
//! optional colour that never changes the alignment.

use std::io::IsTerminal;

/// Whether output to stdout may be coloured: stdout is a terminal and
/// `NO_COLOR` is not set (<https://no-color.org>). Callers printing JSON
/// never colour.
pub(crate) fn colour_stdout() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// An ANSI SGR code (`"1"` bold, `"32"` green, ...) for a cell, by column
/// and text; `None` leaves the cell plain.
pub(crate) type Paint<'a> = &'a dyn Fn(usize, &str) -> Option<&'static str>;

/// Renders `headers` and `rows` as columns separated by two spaces, each as
/// wide as its widest cell (trailing spaces trimmed). With `paint`, cells
/// are wrapped in colour codes after padding, so columns stay aligned; the
/// header row is bold.
pub(crate) fn render_table(headers: &[&str], rows: &[Vec<String>], paint: Option<Paint>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String], header: bool| {
        let last = cells.len().min(widths.len()).saturating_sub(1);
        let mut text = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            let padded = if i == last {
                c.clone()
            } else {
                format!("{c:<w$}  ")
            };
            let code = match paint {
                Some(_) if header => Some("1"),
                Some(p) => p(i, c),
                None => None,
            };
            match code {
                Some(code) => {
                    // Colour the text, not the padding after it.
                    let body = padded.trim_end();
                    let pad = &padded[body.len()..];
                    text.push_str(&format!("\x1b[{code}m{body}\x1b[0m{pad}"));
                }
                None => text.push_str(&padded),
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    line(&headers, true);
    for row in rows {
        line(row, false);
    }
    out
}

/// Prints a table (see [`render_table`]) without colour.
pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", render_table(headers, rows, None));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_and_trailing_space_trimmed() {
        let t = render_table(
            &["ID", "STATE"],
            &[
                vec!["a".into(), "TASK_RUNNING".into()],
                vec!["longer-id".into(), "".into()],
            ],
            None,
        );
        assert_eq!(
            t, "ID         STATE\na          TASK_RUNNING\nlonger-id\n",
            "{t}"
        );
    }

    #[test]
    fn colour_does_not_move_columns() {
        let paint = |col: usize, _: &str| (col == 0).then_some("32");
        let t = render_table(&["A", "B"], &[vec!["x".into(), "y".into()]], Some(&paint));
        assert_eq!(
            t, "\x1b[1mA\x1b[0m  \x1b[1mB\x1b[0m\n\x1b[32mx\x1b[0m  y\n",
            "{t:?}"
        );
    }
}

//! Reading a members CSV: a header row naming the columns, then one member per row. Every row
//! is checked on its own; bad rows are reported by line number with their reasons.

use super::member::{MemberRaw, MemberSpec};
use crate::i18n::Lang;

/// Columns of the members CSV, in export order. `platform`, `external_user_id` and
/// `display_name` are required; the rest may be missing or empty.
pub const COLUMNS: [&str; 7] = ["platform", "external_user_id", "display_name", "group_id", "role", "tags", "notes"];
const REQUIRED: [&str; 3] = ["platform", "external_user_id", "display_name"];
pub const MAX_ROWS: usize = 20_000;

#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    /// 1-based line in the file (the header is line 1).
    pub line: u64,
    /// i18n keys, or `field: key` pairs.
    pub problems: Vec<(String, &'static str)>,
}

impl RowError {
    pub fn describe(&self, lang: Lang) -> String {
        self.problems
            .iter()
            .map(|(field, key)| {
                let msg = crate::i18n::t(lang, key);
                if field.is_empty() {
                    msg.to_string()
                } else {
                    format!("{field}: {msg}")
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub rows: Vec<(u64, MemberSpec)>,
    pub errors: Vec<RowError>,
}

/// Parses the whole file. `Err` only when the file as a whole is unusable (no header, missing
/// required columns, not UTF-8, too many rows); the key says why.
pub fn parse(bytes: &[u8]) -> Result<Parsed, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "import.error_encoding")?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rdr = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers: Vec<String> =
        rdr.headers().map_err(|_| "import.error_header")?.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    if REQUIRED.iter().any(|r| !headers.iter().any(|h| h == r)) {
        return Err("import.error_header");
    }
    let col = |name: &str| headers.iter().position(|h| h == name);
    let idx: Vec<Option<usize>> = COLUMNS.iter().map(|c| col(c)).collect();
    let mut out = Parsed::default();
    let mut lines = LineCounter::new(text.as_bytes());
    for (n, record) in rdr.records().enumerate() {
        if n >= MAX_ROWS {
            return Err("import.error_too_many");
        }
        // The csv reader's own line numbers miss blank lines and line breaks inside quoted
        // fields; count them from the record's byte offset instead, as an editor would.
        let line =
            record.as_ref().ok().and_then(|r| r.position()).map(|p| lines.line_at(p.byte())).unwrap_or(n as u64 + 2);
        let record = match record {
            Ok(r) => r,
            Err(_) => {
                out.errors.push(RowError { line, problems: vec![(String::new(), "import.error_row_syntax")] });
                continue;
            }
        };
        if record.iter().all(|f| f.is_empty()) {
            continue;
        }
        let get = |i: usize| restore(idx[i].and_then(|j| record.get(j)).unwrap_or("")).to_string();
        let raw = MemberRaw {
            platform: get(0),
            external_user_id: get(1),
            display_name: get(2),
            group_id: get(3),
            role: get(4),
            tags: get(5).replace('|', ","),
            notes: get(6),
        };
        match raw.parse() {
            Ok(spec) => out.rows.push((line, spec)),
            Err(fe) => out.errors.push(RowError {
                line,
                problems: fe
                    .0
                    .into_iter()
                    .flat_map(|(f, keys)| keys.into_iter().map(move |k| (f.clone(), k)))
                    .collect(),
            }),
        }
    }
    Ok(out)
}

/// A cell as a spreadsheet may open it: text starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return would be run as a formula (CSV injection), so such a cell gets a leading `'`,
/// which spreadsheets show as text. [`restore`] takes it off again on import.
pub fn neutralise(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell
    }
}

/// Undoes [`neutralise`]: an exported file re-imports to the same values.
pub fn restore(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => cell,
    }
}

/// Line numbers of byte offsets, for offsets that only ever grow (one pass over the file).
struct LineCounter<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter { bytes, pos: 0, line: 1 }
    }

    /// The 1-based line of the first character at or after `offset` that is not a line break
    /// (a record's offset may point at the blank lines before it).
    fn line_at(&mut self, offset: u64) -> u64 {
        let mut start = (offset as usize).min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.pos {
            self.line += self.bytes[self.pos..start].iter().filter(|&&b| b == b'\n').count() as u64;
            self.pos = start;
        }
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_restored() {
        for cell in ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            let safe = neutralise(cell.to_string());
            assert_eq!(safe, format!("'{cell}"));
            assert_eq!(restore(&safe), cell);
        }
        for cell in ["Alice", "'quoted", "1-2", ""] {
            assert_eq!(neutralise(cell.to_string()), cell);
            assert_eq!(restore(cell), cell);
        }
    }

    #[test]
    fn good_rows_are_kept_and_bad_rows_reported_by_line() {
        let csv = "\u{feff}platform,external_user_id,display_name,group_id,tags\n\
                   qq,1001,Alice,,vip|new\n\
                   icq,1002,Bob,,\n\
                   \n\
                   wechat,,Carol,abc,\n\
                   telegram,77,\"Dan, Jr.\",,\n";
        let p = parse(csv.as_bytes()).unwrap();
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[0].1.tags, vec!["vip", "new"]);
        assert_eq!(p.rows[1].1.display_name, "Dan, Jr.");
        assert_eq!(p.errors.len(), 2);
        assert_eq!(p.errors[0].line, 3);
        assert!(p.errors[0].problems.iter().any(|(f, _)| f == "platform"));
        assert_eq!(p.errors[1].line, 5);
        let fields: Vec<&str> = p.errors[1].problems.iter().map(|(f, _)| f.as_str()).collect();
        assert!(fields.contains(&"external_user_id") && fields.contains(&"group_id"));
    }

    #[test]
    fn a_file_without_required_columns_is_refused() {
        assert_eq!(parse(b"name,id\nA,1\n").unwrap_err(), "import.error_header");
        assert_eq!(parse(&[0xff, 0xfe, 0x00]).unwrap_err(), "import.error_encoding");
    }
}

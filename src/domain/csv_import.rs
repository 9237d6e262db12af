//! Reading a members CSV: a header row naming the columns, then one member per row. Every row
//! is checked on its own; bad rows are reported by line number with their reasons. Files come
//! from Excel as often as not: UTF-8 with or without a BOM, or GBK/GB18030 (what "CSV" means on
//! a Chinese Windows), with Chinese column headers and platform names (微信, QQ).

use super::member::{MemberRaw, MemberSpec};
use crate::i18n::Lang;

/// Columns of the members CSV, in export order. `platform`, `external_user_id` and
/// `display_name` are required; the rest may be missing or empty.
pub const COLUMNS: [&str; 7] = ["platform", "external_user_id", "display_name", "group_id", "role", "tags", "notes"];
const REQUIRED: [&str; 3] = ["platform", "external_user_id", "display_name"];
pub const MAX_ROWS: usize = 20_000;
/// Export-only columns (ignored on import).
pub const BALANCE: &str = "balance";
pub const LAST_ACTIVE: &str = "last_active_at";
/// The UTF-8 byte order mark that makes Excel read a CSV file as UTF-8.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Column headers as Chinese operators write them, and the column each one means.
const HEADER_ALIASES: [(&str, &str); 17] = [
    ("平台", "platform"),
    ("用户id", "external_user_id"),
    ("用户 id", "external_user_id"),
    ("用户号", "external_user_id"),
    ("账号", "external_user_id"),
    ("平台用户id", "external_user_id"),
    ("昵称", "display_name"),
    ("名称", "display_name"),
    ("姓名", "display_name"),
    ("显示名", "display_name"),
    ("群编号", "group_id"),
    ("群id", "group_id"),
    ("群 id", "group_id"),
    ("角色", "role"),
    ("群角色", "role"),
    ("标签", "tags"),
    ("备注", "notes"),
];

/// Platform names as people write them, and the platform each one means.
const PLATFORM_ALIASES: [(&str, &str); 9] = [
    ("微信", "wechat"),
    ("weixin", "wechat"),
    ("企业微信", "wechat"),
    ("qq", "qq"),
    ("qq群", "qq"),
    ("电报", "telegram"),
    ("tg", "telegram"),
    ("whatsapp", "whatsapp"),
    ("其他", "other"),
];

/// A header cell as the column it names ("昵称" → `display_name`), or as typed, lower-cased.
fn column_of(header: &str) -> String {
    let h = header.trim().trim_start_matches('\u{feff}').to_lowercase();
    HEADER_ALIASES.iter().find(|(alias, _)| *alias == h).map(|(_, c)| c.to_string()).unwrap_or(h)
}

/// A platform cell as Shoal's code for it ("微信" → `wechat`, "QQ" → `qq`); unknown names stay
/// as typed so the error can quote them.
pub fn platform_code(cell: &str) -> String {
    let v = cell.trim().to_lowercase();
    PLATFORM_ALIASES.iter().find(|(alias, _)| *alias == v).map(|(_, c)| c.to_string()).unwrap_or(v)
}

/// The file's text: UTF-8 (a BOM is dropped), UTF-16 with a BOM (Excel's "Unicode text"), or
/// else GB18030, the superset of GBK that Excel writes on a Chinese Windows.
pub fn decode(bytes: &[u8]) -> Result<String, &'static str> {
    if let Some((enc, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, had_errors) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        return if had_errors { Err("import.error_encoding") } else { Ok(text.into_owned()) };
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.to_string());
    }
    let (text, had_errors) = encoding_rs::GB18030.decode_without_bom_handling(bytes);
    if had_errors {
        Err("import.error_encoding")
    } else {
        Ok(text.into_owned())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    /// 1-based line in the file (the header is line 1).
    pub line: u64,
    /// i18n keys, or `field: key` pairs.
    pub problems: Vec<(String, &'static str)>,
    /// The values as typed in the row, per column, so that a message can quote the bad one.
    pub values: Vec<(String, String)>,
}

impl RowError {
    /// A row error about the whole row (no column).
    pub fn row(line: u64, key: &'static str) -> RowError {
        RowError { line, problems: vec![(String::new(), key)], values: Vec::new() }
    }

    /// A row error about one column with the value that was typed there.
    pub fn field(line: u64, field: &str, key: &'static str, value: String) -> RowError {
        RowError { line, problems: vec![(field.to_string(), key)], values: vec![(field.to_string(), value)] }
    }

    /// Each problem in words: the column's name, the value typed, what is wrong and, for a
    /// choice, the values allowed. `平台「ICQ」不是可选的值。可选：微信、QQ、…`.
    pub fn describe(&self, lang: Lang) -> String {
        let tr = crate::i18n::Tr(lang);
        self.problems
            .iter()
            .map(|(field, key)| {
                let msg = tr.t(key);
                if field.is_empty() {
                    return msg.to_string();
                }
                let column = crate::i18n::lookup(lang, &format!("import.column.{field}")).unwrap_or(field.as_str());
                let value = self.values.iter().find(|(f, _)| f == field).map(|(_, v)| v.as_str()).unwrap_or("");
                let mut out = if value.is_empty() {
                    tr.f("import.problem", &[("column", &column), ("message", &msg)])
                } else {
                    tr.f("import.problem_value", &[("column", &column), ("value", &value), ("message", &msg)])
                };
                if *key == "error.choice" {
                    if let Some(allowed) = allowed_values(field, tr) {
                        out.push_str(&tr.f("import.allowed", &[("values", &allowed)]));
                    }
                }
                out
            })
            .collect::<Vec<_>>()
            .join(tr.t("import.problem_separator"))
    }
}

/// The values a choice column accepts, in words, or None for columns whose values are not a
/// fixed list (a group id must be one of the operator's groups).
fn allowed_values(field: &str, tr: crate::i18n::Tr) -> Option<String> {
    let sep = tr.t("audit.list_separator");
    match field {
        "platform" => Some(
            super::Platform::ALL
                .iter()
                .map(|p| format!("{} ({})", tr.tk("platform", p.as_str()), p.as_str()))
                .collect::<Vec<_>>()
                .join(sep),
        ),
        "role" => Some(
            super::member::ROLES
                .iter()
                .map(|r| format!("{} ({r})", tr.tk("member_role", r)))
                .collect::<Vec<_>>()
                .join(sep),
        ),
        "group_id" => Some(tr.t("import.allowed_groups").to_string()),
        _ => None,
    }
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub rows: Vec<(u64, MemberSpec)>,
    pub errors: Vec<RowError>,
}

/// Parses the whole file. `Err` only when the file as a whole is unusable (no header, missing
/// required columns, an encoding that is neither UTF-8 nor GB18030, too many rows); the key
/// says why.
pub fn parse(bytes: &[u8]) -> Result<Parsed, &'static str> {
    let text = decode(bytes)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut rdr = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers: Vec<String> = rdr.headers().map_err(|_| "import.error_header")?.iter().map(column_of).collect();
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
                out.errors.push(RowError::row(line, "import.error_row_syntax"));
                continue;
            }
        };
        if record.iter().all(|f| f.is_empty()) {
            continue;
        }
        let get = |i: usize| restore(idx[i].and_then(|j| record.get(j)).unwrap_or("")).to_string();
        let raw = MemberRaw {
            platform: platform_code(&get(0)),
            external_user_id: get(1),
            display_name: get(2),
            group_id: get(3),
            role: get(4),
            tags: get(5).replace('|', ","),
            notes: get(6),
        };
        let values: Vec<(String, String)> = COLUMNS.iter().enumerate().map(|(i, c)| (c.to_string(), get(i))).collect();
        match raw.parse() {
            Ok(spec) => out.rows.push((line, spec)),
            Err(fe) => out.errors.push(RowError {
                line,
                problems: fe
                    .0
                    .into_iter()
                    .flat_map(|(f, keys)| keys.into_iter().map(move |k| (f.clone(), k)))
                    .collect(),
                values,
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
    fn gbk_files_with_chinese_headers_and_platform_names_are_read() {
        let csv = "平台,用户ID,昵称,标签\n微信,wxid_1,张三,新人\nQQ,10001,李四,\n";
        let (gbk, _, _) = encoding_rs::GBK.encode(csv);
        let p = parse(&gbk).unwrap();
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[0].1.platform, crate::domain::Platform::Wechat);
        assert_eq!(p.rows[0].1.display_name, "张三");
        assert_eq!(p.rows[1].1.platform, crate::domain::Platform::Qq);
    }

    #[test]
    fn a_bad_choice_names_the_value_and_the_allowed_ones() {
        let p = parse("platform,external_user_id,display_name\nICQ,1,A\n".as_bytes()).unwrap();
        let zh = p.errors[0].describe(Lang::ZhCn);
        assert!(zh.contains("平台") && zh.contains("「ICQ」") && zh.contains("微信") && zh.contains("QQ"), "{zh}");
        assert!(!zh.contains(':'), "no ASCII colon in Chinese: {zh}");
        let en = p.errors[0].describe(Lang::En);
        assert!(en.contains("ICQ") && en.contains("WeChat"), "{en}");
    }

    #[test]
    fn a_file_without_required_columns_is_refused() {
        assert_eq!(parse(b"name,id\nA,1\n").unwrap_err(), "import.error_header");
        assert_eq!(parse(&[0xff, 0xfe, 0x00]).unwrap_err(), "import.error_encoding");
    }
}

//! Member pages: manual add, CSV import and export, scoping, search and paging.

use reqwest::{Client, StatusCode};

use crate::harness::{location, TestApp};

const HEADER: &str = "platform,external_user_id,display_name,group_id,role,tags,notes";

async fn member_id(app: &TestApp, platform: &str, ext: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT id FROM members WHERE platform = $1 AND external_user_id = $2")
        .bind(platform)
        .bind(ext)
        .fetch_optional(&app.db)
        .await
        .unwrap()
}

/// Inserts a member directly, optionally with an open membership in `group`.
async fn seed_member(app: &TestApp, platform: &str, ext: &str, name: &str, group: Option<i64>) -> i64 {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO members (platform, external_user_id, display_name) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(platform)
    .bind(ext)
    .bind(name)
    .fetch_one(&app.db)
    .await
    .unwrap();
    if let Some(g) = group {
        sqlx::query("INSERT INTO memberships (member_id, group_id) VALUES ($1, $2)")
            .bind(id)
            .bind(g)
            .execute(&app.db)
            .await
            .unwrap();
    }
    id
}

async fn page(app: &TestApp, c: &Client, path: &str) -> (StatusCode, String) {
    let r = c.get(app.url(path)).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The text inside the element with `id` (up to the next `<`).
fn text_of(body: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\"");
    let i = body.find(&marker)? + marker.len();
    let start = i + body[i..].find('>')? + 1;
    let end = start + body[start..].find('<')?;
    Some(body[start..end].trim().to_string())
}

/// The (line, reason) rows of the import error table.
fn import_errors(body: &str) -> Vec<(u64, String)> {
    let Some(i) = body.find("id=\"import-errors\"") else { return Vec::new() };
    let table = &body[i..i + body[i..].find("</table>").unwrap()];
    let tbody = &table[table.find("<tbody>").unwrap()..];
    tbody
        .split("<tr>")
        .skip(1)
        .map(|row| {
            let cells: Vec<&str> = row
                .split("<td")
                .skip(1)
                .map(|c| {
                    let c = &c[c.find('>').unwrap() + 1..];
                    &c[..c.find("</td>").unwrap()]
                })
                .collect();
            (cells[0].trim().parse().expect("line number"), cells[1].trim().to_string())
        })
        .collect()
}

/// Ids of the members listed on a members list page.
fn listed_ids(body: &str) -> Vec<i64> {
    let Some(i) = body.find("id=\"members\"") else { return Vec::new() };
    body[i..].split("<td><a href=\"/members/").skip(1).map(|s| s[..s.find('"').unwrap()].parse().unwrap()).collect()
}

async fn import(app: &TestApp, c: &Client, csv: &str, strict: bool) -> (StatusCode, String) {
    let fields: &[(&str, &str)] = if strict { &[("mode", "strict")] } else { &[] };
    let r = app
        .post_multipart(c, "/members/import", "/members/import", fields, vec![("file", "members.csv", csv.into())])
        .await;
    (r.status(), r.text().await.unwrap())
}

async fn export(app: &TestApp, c: &Client) -> String {
    let r = c.get(app.url("/members/export.csv")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

// ---- manual add ----

#[tokio::test]
async fn adding_a_member_with_a_group_leads_to_their_page_showing_the_membership() {
    let app = TestApp::spawn().await;
    let g = app.group("Readers").await;
    let c = app.admin().await;
    let gs = g.to_string();
    let r = app
        .post_form(
            &c,
            "/members/new",
            "/members/new",
            &[
                ("platform", "qq"),
                ("external_user_id", " 10001 "),
                ("display_name", "Alice"),
                ("group_id", &gs),
                ("role", "admin"),
                ("tags", "vip, new"),
                ("notes", "met at the meetup"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let id = member_id(&app, "qq", "10001").await.expect("member written with a trimmed id");
    assert_eq!(location(&r), format!("/members/{id}"));

    let (status, body) = page(&app, &c, &format!("/members/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Member added."), "success flash");
    assert!(body.contains("<h1>Alice</h1>"));
    assert!(body.contains("met at the meetup"));
    let table = &body[body.find("id=\"memberships\"").expect("memberships table")..];
    assert!(table.contains(&format!("<a href=\"/groups/{g}\">Readers</a>")), "membership shown");

    let (tags, notes): (Vec<String>, String) =
        sqlx::query_as("SELECT tags, notes FROM members WHERE id = $1").bind(id).fetch_one(&app.db).await.unwrap();
    assert_eq!(tags, vec!["vip", "new"]);
    assert_eq!(notes, "met at the meetup");
    let role: String =
        sqlx::query_scalar("SELECT role FROM memberships WHERE member_id = $1 AND group_id = $2 AND left_at IS NULL")
            .bind(id)
            .bind(g)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(role, "admin");
    let (action, kind): (String, String) =
        sqlx::query_as("SELECT action, actor_kind FROM audit_log WHERE target_kind = 'member' AND target_id = $1")
            .bind(id.to_string())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((action.as_str(), kind.as_str()), ("member.create", "operator"));
}

#[tokio::test]
async fn a_member_can_be_added_without_a_group_by_an_unscoped_operator() {
    let app = TestApp::spawn().await;
    let c = app.login_as("otto", "operator", true, &[]).await;
    let r = app
        .post_form(
            &c,
            "/members/new",
            "/members/new",
            &[("platform", "telegram"), ("external_user_id", "77"), ("display_name", "Loner"), ("group_id", "")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let id = member_id(&app, "telegram", "77").await.expect("member");
    assert_eq!(location(&r), format!("/members/{id}"));
    assert_eq!(app.count("memberships").await, 0);
    let (_, body) = page(&app, &c, &format!("/members/{id}")).await;
    assert!(body.contains("Not in any group you can see."));
}

#[tokio::test]
async fn bad_member_input_comes_back_with_messages_and_typed_values_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let r = app
        .post_form(
            &c,
            "/members/new",
            "/members/new",
            &[
                ("platform", "icq"),
                ("external_user_id", "kept-id-42"),
                ("display_name", "   "),
                ("role", "boss"),
                ("tags", "kept-tag, other"),
                ("notes", "kept notes <b>"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("value=\"kept-id-42\""), "typed user id kept");
    assert!(body.contains("value=\"kept-tag, other\""), "typed tags kept");
    assert!(body.contains("kept notes &#60;b&#62;</textarea>"), "typed notes kept, escaped");
    for field in ["platform", "display_name", "role"] {
        assert!(body.contains(&format!("id=\"err-{field}\"")), "message for {field}");
    }
    assert!(!body.contains("id=\"err-external_user_id\""), "no message for a good field");
    assert!(body.contains("This field is required."));
    assert!(body.contains("name=\"_csrf\""), "the form can be sent again");
    assert_eq!(app.count("members").await, 0);
    assert_eq!(app.count("memberships").await, 0);
    assert_eq!(app.count("audit_log").await, 0);
}

#[tokio::test]
async fn a_member_in_a_group_that_does_not_exist_is_refused() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let r = app
        .post_form(
            &c,
            "/members/new",
            "/members/new",
            &[("platform", "qq"), ("external_user_id", "5"), ("display_name", "Ghost"), ("group_id", "987654")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"err-group_id\""));
    assert!(body.contains("value=\"Ghost\""));
    assert_eq!(app.count("members").await, 0, "the member insert was rolled back");
    assert_eq!(app.count("audit_log").await, 0);
}

#[tokio::test]
async fn a_duplicate_member_is_refused_with_the_duplicate_message() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let existing = seed_member(&app, "wechat", "wx_dup", "First", None).await;
    let r = app
        .post_form(
            &c,
            "/members/new",
            "/members/new",
            &[("platform", "wechat"), ("external_user_id", "wx_dup"), ("display_name", "Second")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"err-external_user_id\""));
    assert!(body.contains("A member with this platform and user id exists already."));
    assert!(body.contains("value=\"Second\""), "typed name kept");
    assert_eq!(app.count("members").await, 1);
    let name: String = sqlx::query_scalar("SELECT display_name FROM members WHERE id = $1")
        .bind(existing)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(name, "First");
    assert_eq!(app.count("audit_log").await, 0);
}

#[tokio::test]
async fn a_viewer_cannot_add_or_import_members() {
    let app = TestApp::spawn().await;
    let c = app.login_as("vera", "viewer", true, &[]).await;
    assert_eq!(c.get(app.url("/members/new")).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(c.get(app.url("/members/import")).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let r = app
        .post_form(
            &c,
            "/members",
            "/members/new",
            &[("platform", "qq"), ("external_user_id", "1"), ("display_name", "x")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let csv = format!("{HEADER}\nqq,1,x,,,,\n");
    let r = app.post_multipart(&c, "/members", "/members/import", &[], vec![("file", "m.csv", csv.into_bytes())]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("members").await, 0);
    // Reading is fine.
    assert_eq!(c.get(app.url("/members")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(c.get(app.url("/members/export.csv")).send().await.unwrap().status(), StatusCode::OK);
}

// ---- CSV import ----

#[tokio::test]
async fn an_import_keeps_the_good_rows_and_lists_the_bad_ones_by_line() {
    let app = TestApp::spawn().await;
    let g = app.group("Importers").await;
    let c = app.admin().await;
    let csv = format!(
        "{HEADER}\n\
         qq,1001,Alice,{g},admin,vip|new,first row\n\
         icq,1002,Bob,,,,\n\
         wechat,wx_3,\"Carol, Jr.\",,,,\n\
         telegram,,Dan,,,,\n\
         qq,1005,Eve,999999,,,\n"
    );
    let (status, body) = import(&app, &c, &csv, false).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "some rows failed");
    assert_eq!(text_of(&body, "import-created").as_deref(), Some("2"));
    assert_eq!(text_of(&body, "import-updated").as_deref(), Some("0"));
    assert_eq!(text_of(&body, "import-failed").as_deref(), Some("3"));
    let errors = import_errors(&body);
    let lines: Vec<u64> = errors.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![3, 5, 6], "{errors:?}");
    assert!(errors[0].1.starts_with("platform “"), "{errors:?}");
    assert!(errors[1].1.contains("user id: This field is required."), "{errors:?}");
    assert!(errors[2].1.starts_with("group number “"), "{errors:?}");

    assert_eq!(app.count("members").await, 2);
    let alice = member_id(&app, "qq", "1001").await.expect("Alice imported");
    assert!(member_id(&app, "wechat", "wx_3").await.is_some(), "Carol imported");
    assert!(member_id(&app, "qq", "1005").await.is_none(), "Eve's group does not exist");
    let (tags, notes): (Vec<String>, String) =
        sqlx::query_as("SELECT tags, notes FROM members WHERE id = $1").bind(alice).fetch_one(&app.db).await.unwrap();
    assert_eq!(tags, vec!["vip", "new"]);
    assert_eq!(notes, "first row");
    let role: String = sqlx::query_scalar("SELECT role FROM memberships WHERE member_id = $1 AND group_id = $2")
        .bind(alice)
        .bind(g)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(role, "admin");
    let carol: String = sqlx::query_scalar("SELECT display_name FROM members WHERE external_user_id = 'wx_3'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(carol, "Carol, Jr.");
    let details: serde_json::Value = sqlx::query_scalar("SELECT details FROM audit_log WHERE action = 'member.import'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(details["created"], 2);
    assert_eq!(details["failed_rows"], 3);
}

#[tokio::test]
async fn import_line_numbers_count_blank_lines_and_multi_line_fields() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let csv = format!(
        "{HEADER}\r\n\
         qq,1001,Alice,,,,\"a note\r\non two lines\"\r\n\
         \r\n\
         icq,1002,Bob,,,,\r\n\
         qq,1003,Carol,,,,\r\n\
         \r\n\
         \r\n\
         telegram,,Dan,,,,\r\n"
    );
    let (status, body) = import(&app, &c, &csv, false).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let lines: Vec<u64> = import_errors(&body).iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![5, 9], "the lines an editor shows for Bob and Dan");
    assert_eq!(app.count("members").await, 2);
}

#[tokio::test]
async fn a_clean_import_answers_200_with_no_error_table() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    // Columns in another order, a BOM, and only the required ones.
    let csv = "\u{feff}display_name,external_user_id,platform\nAnn,a1,discord\nBen,b2,whatsapp\n";
    let (status, body) = import(&app, &c, csv, false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&body, "import-created").as_deref(), Some("2"));
    assert!(!body.contains("id=\"import-errors\""));
    let name: String = sqlx::query_scalar("SELECT display_name FROM members WHERE platform = 'whatsapp'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(name, "Ben");
}

#[tokio::test]
async fn a_strict_import_with_a_bad_row_writes_nothing() {
    let app = TestApp::spawn().await;
    let g = app.group("G").await;
    let c = app.admin().await;
    let csv = format!("{HEADER}\nqq,1001,Alice,{g},,,\nqq,1002,Bob,,,,\nqq,,NoId,,,,\n");
    let (status, body) = import(&app, &c, &csv, true).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("Nothing was imported because some rows have errors."));
    assert!(text_of(&body, "import-created").is_none(), "no created count after a rollback");
    assert_eq!(import_errors(&body).iter().map(|(l, _)| *l).collect::<Vec<_>>(), vec![4]);
    assert!(body.contains("id=\"mode\" name=\"mode\" type=\"checkbox\" value=\"strict\" checked"), "strict kept");
    assert_eq!(app.count("members").await, 0);
    assert_eq!(app.count("memberships").await, 0);
    assert_eq!(app.count("audit_log").await, 0);

    // The same file without the bad row goes through in strict mode.
    let csv = format!("{HEADER}\nqq,1001,Alice,{g},,,\nqq,1002,Bob,,,,\n");
    let (status, body) = import(&app, &c, &csv, true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&body, "import-created").as_deref(), Some("2"));
    assert_eq!(app.count("members").await, 2);
}

#[tokio::test]
async fn a_file_without_the_required_header_is_refused_whole() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let (status, body) = import(&app, &c, "qq,1001,Alice\nqq,1002,Bob\n", false).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        text_of(&body, "err-file").as_deref(),
        Some("The first row must name the columns and include platform, external_user_id and display_name.")
    );
    assert!(!body.contains("id=\"import-result\""));
    // A header lacking one required column is no better.
    let (status, _) = import(&app, &c, "platform,display_name\nqq,Alice\n", false).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.count("members").await, 0);
    assert_eq!(app.count("audit_log").await, 0);
}

#[tokio::test]
async fn an_import_without_a_file_or_in_an_unknown_encoding_is_refused_and_gbk_is_read() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let r = app.post_multipart(&c, "/members/import", "/members/import", &[("mode", "strict")], vec![]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(text_of(&r.text().await.unwrap(), "err-file").as_deref(), Some("Choose a file."));
    // "platform,external_user_id,display_name\nqq,1,张三" in GBK.
    let mut gbk = format!("{HEADER}\nqq,1,").into_bytes();
    gbk.extend_from_slice(&[0xd5, 0xc5, 0xc8, 0xfd, b'\n']);
    // Not UTF-8 nor GB18030 (0xFF never starts a GB18030 character): refused.
    let mut bad = format!("{HEADER}\nqq,1,").into_bytes();
    bad.extend_from_slice(&[0xff, b'\n']);
    let r = app.post_multipart(&c, "/members/import", "/members/import", &[], vec![("file", "bad.csv", bad)]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text_of(&r.text().await.unwrap(), "err-file").is_some_and(|m| m.contains("UTF-8")));
    assert_eq!(app.count("members").await, 0);
    // GBK, as Excel saves "CSV" on a Chinese Windows: read.
    let r = app.post_multipart(&c, "/members/import", "/members/import", &[], vec![("file", "gbk.csv", gbk)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let name: String = sqlx::query_scalar("SELECT display_name FROM members").fetch_one(&app.db).await.unwrap();
    assert_eq!(name, "张三");
}

#[tokio::test]
async fn importing_the_same_members_again_updates_instead_of_duplicating() {
    let app = TestApp::spawn().await;
    let g = app.group("G").await;
    let c = app.admin().await;
    let csv = format!("{HEADER}\nqq,1001,Alice,{g},member,a|b,note one\nqq,1002,Bob,{g},,,\n");
    let (status, body) = import(&app, &c, &csv, false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&body, "import-created").as_deref(), Some("2"));
    let alice = member_id(&app, "qq", "1001").await.unwrap();

    // Same people: a new name and role; empty tags and notes keep the old ones.
    let csv = format!("{HEADER}\nqq,1001,Alice Liu,{g},owner,,\nqq,1002,Bob,{g},,,\n");
    let (status, body) = import(&app, &c, &csv, false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(&body, "import-created").as_deref(), Some("0"));
    assert_eq!(text_of(&body, "import-updated").as_deref(), Some("2"));
    assert_eq!(app.count("members").await, 2);
    assert_eq!(app.count("memberships").await, 2, "no second membership in the same group");
    assert_eq!(member_id(&app, "qq", "1001").await, Some(alice), "same row");
    let (name, tags, notes): (String, Vec<String>, String) =
        sqlx::query_as("SELECT display_name, tags, notes FROM members WHERE id = $1")
            .bind(alice)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(name, "Alice Liu");
    assert_eq!(tags, vec!["a", "b"]);
    assert_eq!(notes, "note one");
    let role: String = sqlx::query_scalar("SELECT role FROM memberships WHERE member_id = $1")
        .bind(alice)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(role, "owner");
}

// ---- CSV export ----

#[tokio::test]
async fn the_export_is_csv_with_one_line_per_open_membership() {
    let app = TestApp::spawn().await;
    let g1 = app.group("One").await;
    let g2 = app.group("Two").await;
    let c = app.admin().await;
    let alice = seed_member(&app, "qq", "1001", "Alice", Some(g1)).await;
    sqlx::query("INSERT INTO memberships (member_id, group_id, role) VALUES ($1, $2, 'owner')")
        .bind(alice)
        .bind(g2)
        .execute(&app.db)
        .await
        .unwrap();
    seed_member(&app, "qq", "1002", "Bob", None).await;
    let carol = seed_member(&app, "qq", "1003", "Carol", Some(g1)).await;
    sqlx::query("UPDATE memberships SET left_at = now() WHERE member_id = $1")
        .bind(carol)
        .execute(&app.db)
        .await
        .unwrap();

    let r = c.get(app.url("/members/export.csv")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(ct.starts_with("text/csv"), "{ct}");
    let cd = r.headers().get("content-disposition").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(cd.starts_with("attachment"), "{cd}");
    let body = r.text().await.unwrap();
    let body = body.trim_start_matches('\u{feff}');
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], format!("{HEADER},balance,last_active_at (Asia/Shanghai)"));
    let mut rows = lines[1..].to_vec();
    rows.sort();
    let mut expected = vec![
        format!("qq,1001,Alice,{g1},member,,,0,"),
        format!("qq,1001,Alice,{g2},owner,,,0,"),
        "qq,1002,Bob,,,,,0,".to_string(),
        "qq,1003,Carol,,,,,0,".to_string(),
    ];
    expected.sort();
    assert_eq!(rows, expected, "one line per open membership, one bare line for the others");
}

#[tokio::test]
async fn importing_an_export_changes_nothing() {
    let app = TestApp::spawn().await;
    let g1 = app.group("One").await;
    let g2 = app.group("Two").await;
    let c = app.admin().await;
    // Values that need quoting survive the trip.
    let csv = format!(
        "{HEADER}\n\
         qq,1001,\"Wong, Alice\",{g1},admin,vip|北京,\"says \"\"hi\"\"\nand more\"\n\
         qq,1001,\"Wong, Alice\",{g2},member,,\n\
         telegram,@bob,Bob,,,,\n\
         wechat,wx_3,张三,{g2},owner,new,\n\
         telegram,-42,\"=HYPERLINK(\"\"http://evil\"\")\",,,,@cmd\n"
    );
    let (status, _) = import(&app, &c, &csv, true).await;
    assert_eq!(status, StatusCode::OK);
    let snapshot = |db: sqlx::PgPool| async move {
        let members: Vec<(i64, String, String, String, Vec<String>, String)> =
            sqlx::query_as("SELECT id, platform, external_user_id, display_name, tags, notes FROM members ORDER BY id")
                .fetch_all(&db)
                .await
                .unwrap();
        let memberships: Vec<(i64, i64, i64, String)> =
            sqlx::query_as("SELECT id, member_id, group_id, role FROM memberships ORDER BY id")
                .fetch_all(&db)
                .await
                .unwrap();
        (members, memberships)
    };
    let before = snapshot(app.db.clone()).await;
    assert_eq!(before.0.len(), 4);
    assert_eq!(before.1.len(), 3);
    assert_eq!(before.0[3].3, "=HYPERLINK(\"http://evil\")");
    assert_eq!(before.0[0].5, "says \"hi\"\nand more");

    let exported = export(&app, &c).await;
    let exported = exported.trim_start_matches('\u{feff}').to_string();
    assert!(exported.starts_with(HEADER), "{exported}");
    // Spreadsheets would run these as formulas: they leave as text.
    assert!(exported.contains("telegram,'-42,\"'=HYPERLINK(\"\"http://evil\"\")\",,,,'@cmd"), "{exported}");
    let (status, body) = import(&app, &c, &exported, false).await;
    assert_eq!(status, StatusCode::OK, "{:?}", import_errors(&body));
    assert_eq!(text_of(&body, "import-created").as_deref(), Some("0"));
    assert!(import_errors(&body).is_empty());
    assert_eq!(snapshot(app.db.clone()).await, before, "the export re-imports to the same data");
}

#[tokio::test]
async fn tags_typed_with_the_csv_separator_survive_an_export_and_reimport() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let r = app
        .post_form(
            &c,
            "/members/new",
            "/members/new",
            &[("platform", "qq"), ("external_user_id", "7"), ("display_name", "Piper"), ("tags", "gold|vip, new")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let tags = || async {
        let t: Vec<String> = sqlx::query_scalar("SELECT tags FROM members WHERE external_user_id = '7'")
            .fetch_one(&app.db)
            .await
            .unwrap();
        t
    };
    let before = tags().await;
    let exported = export(&app, &c).await;
    let (status, _) = import(&app, &c, &exported, false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tags().await, before, "the CSV round trip keeps the tags as they were");
    assert_eq!(before, vec!["gold", "vip", "new"], "| separates tags everywhere, as in the CSV");
}

// ---- scoping ----

#[tokio::test]
async fn a_scoped_operator_sees_only_members_of_their_groups() {
    let app = TestApp::spawn().await;
    let a = app.group("Group A").await;
    let b = app.group("Group B").await;
    let in_a = seed_member(&app, "qq", "1", "Anna in A", Some(a)).await;
    let in_b = seed_member(&app, "qq", "2", "Boris in B", Some(b)).await;
    let nowhere = seed_member(&app, "qq", "3", "Nadia nowhere", None).await;
    let both = seed_member(&app, "qq", "4", "Zoe in both", Some(a)).await;
    sqlx::query("INSERT INTO memberships (member_id, group_id) VALUES ($1, $2)")
        .bind(both)
        .bind(b)
        .execute(&app.db)
        .await
        .unwrap();
    let c = app.login_as("olga", "operator", false, &[a]).await;

    let (status, list) = page(&app, &c, "/members").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed_ids(&list), vec![in_a, both]);
    assert!(!list.contains("Boris in B") && !list.contains("Nadia nowhere"));
    assert!(!list.contains("Group B"), "the group filter offers only their groups");

    for id in [in_b, nowhere] {
        assert_eq!(page(&app, &c, &format!("/members/{id}")).await.0, StatusCode::NOT_FOUND, "member {id}");
        assert_eq!(page(&app, &c, &format!("/members/{id}/edit")).await.0, StatusCode::NOT_FOUND, "member {id}");
    }
    let (status, detail) = page(&app, &c, &format!("/members/{both}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(detail.contains("Group A") && !detail.contains("Group B"), "only memberships in scope");

    let exported = export(&app, &c).await;
    let rows: Vec<&str> = exported.lines().skip(1).collect();
    assert_eq!(rows, vec![format!("qq,1,Anna in A,{a},member,,,0,"), format!("qq,4,Zoe in both,{a},member,,,0,")]);

    // Nothing they cannot see can be changed either.
    let r = app
        .post_form(
            &c,
            "/members",
            &format!("/members/{in_b}/edit"),
            &[("platform", "qq"), ("external_user_id", "2"), ("display_name", "Renamed")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let name: String = sqlx::query_scalar("SELECT display_name FROM members WHERE id = $1")
        .bind(in_b)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(name, "Boris in B");
}

#[tokio::test]
async fn a_scoped_operator_must_put_a_new_member_into_one_of_their_groups() {
    let app = TestApp::spawn().await;
    let a = app.group("Group A").await;
    let b = app.group("Group B").await;
    let c = app.login_as("olga", "operator", false, &[a]).await;

    let (status, form) = page(&app, &c, "/members/new").await;
    assert_eq!(status, StatusCode::OK);
    let select = &form[form.find("id=\"group_id\"").unwrap()..];
    let select = &select[..select.find("</select>").unwrap()];
    assert!(!select.contains("value=\"\""), "no 'No group' choice");
    assert!(select.contains(&format!("value=\"{a}\"")) && !select.contains(&format!("value=\"{b}\"")));

    let base = [("platform", "qq"), ("external_user_id", "42"), ("display_name", "Newbie")];
    let r = app.post_form(&c, "/members/new", "/members/new", &base).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert_eq!(text_of(&body, "err-group_id").as_deref(), Some("This field is required."));
    assert!(body.contains("value=\"Newbie\""));

    let bs = b.to_string();
    let mut other = base.to_vec();
    other.push(("group_id", &bs));
    let r = app.post_form(&c, "/members/new", "/members/new", &other).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"err-group_id\""));
    assert_eq!(app.count("members").await, 0);

    let as_ = a.to_string();
    let mut mine = base.to_vec();
    mine.push(("group_id", &as_));
    let r = app.post_form(&c, "/members/new", "/members/new", &mine).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let id = member_id(&app, "qq", "42").await.unwrap();
    assert_eq!(location(&r), format!("/members/{id}"));
    assert_eq!(page(&app, &c, &format!("/members/{id}")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_scoped_operator_imports_only_into_their_groups() {
    let app = TestApp::spawn().await;
    let a = app.group("Group A").await;
    let b = app.group("Group B").await;
    let c = app.login_as("olga", "operator", false, &[a]).await;
    let csv = format!("{HEADER}\nqq,1,Ok,{a},,,\nqq,2,NoGroup,,,,\nqq,3,OtherGroup,{b},,,\n");
    let (status, body) = import(&app, &c, &csv, false).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(text_of(&body, "import-created").as_deref(), Some("1"));
    let errors = import_errors(&body);
    assert_eq!(errors.iter().map(|(l, _)| *l).collect::<Vec<_>>(), vec![3, 4]);
    assert!(errors.iter().all(|(_, why)| why.starts_with("group number")), "{errors:?}");
    assert_eq!(app.count("members").await, 1);
    assert_eq!(app.count("memberships").await, 1);
}

// ---- search and paging ----

#[tokio::test]
async fn the_member_list_searches_names_and_ids() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let alice = seed_member(&app, "qq", "1001", "Alice Wong", None).await;
    let malice = seed_member(&app, "wechat", "wx_m", "Malice", None).await;
    let bob = seed_member(&app, "qq", "2002", "Bob", None).await;
    seed_member(&app, "telegram", "99", "Carol", None).await;

    let (status, body) = page(&app, &c, "/members?q=ALICE").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed_ids(&body), vec![alice, malice], "case-insensitive, sorted by name");
    assert!(body.contains("value=\"ALICE\""), "the search box keeps the query");
    assert_eq!(listed_ids(&page(&app, &c, "/members?q=2002").await.1), vec![bob], "by user id");
    assert_eq!(listed_ids(&page(&app, &c, "/members?q=_").await.1), vec![malice], "LIKE wildcards are literal");
    let (_, none) = page(&app, &c, "/members?q=zzz").await;
    assert!(listed_ids(&none).is_empty());
    assert!(none.contains("No members match."));
    assert_eq!(listed_ids(&page(&app, &c, "/members?q=+").await.1).len(), 4, "a blank query lists everyone");
    assert_eq!(listed_ids(&page(&app, &c, "/members?platform=qq").await.1), vec![alice, bob]);
}

#[tokio::test]
async fn one_and_two_character_searches_match_names_and_ids_through_their_index() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let wei = seed_member(&app, "wechat", "wx_1", "张伟", None).await;
    let weiming = seed_member(&app, "qq", "3003", "李张伟明", None).await;
    let fang = seed_member(&app, "qq", "4004", "王芳", None).await;
    let zhang = seed_member(&app, "telegram", "zw88", "Zhang Wei", None).await;
    let found = |q: &'static str| {
        let (app, c) = (&app, &c);
        async move {
            let mut ids = listed_ids(&page(app, c, &format!("/members?q={}", urlencoding::encode(q))).await.1);
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<i64>| {
        v.sort();
        v
    };
    assert_eq!(found("张伟").await, sorted(vec![wei, weiming]), "a two-character name, also inside a longer one");
    assert_eq!(found("伟明").await, vec![weiming]);
    assert_eq!(found("芳").await, vec![fang]);
    assert_eq!(found("张").await, sorted(vec![wei, weiming]));
    assert_eq!(found("ZH").await, vec![zhang], "case-insensitive");
    assert_eq!(found("88").await, vec![zhang], "by user id");
    assert_eq!(found("赵").await, Vec::<i64>::new());
    // A renamed member is found by the new name only.
    sqlx::query("UPDATE members SET display_name = '赵敏' WHERE id = $1").bind(fang).execute(&app.db).await.unwrap();
    assert_eq!(found("赵").await, vec![fang]);
    assert_eq!(found("芳").await, Vec::<i64>::new());
    // The store's condition is the index's expression, so a rare short search reads the index
    // instead of every member.
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM members m WHERE shoal_short_grams(m.display_name, m.external_user_id) @> ARRAY[lower($1)]::text[]",
    )
    .bind("张伟")
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert!(plan.iter().any(|l| l.contains("members_search_short")), "{plan:?}");
}

/// How often the first- and second-character indexes were read, with this connection's own
/// reads flushed to the statistics first.
async fn index_scans(conn: &mut sqlx::PgConnection) -> Vec<(String, i64)> {
    sqlx::query("SELECT pg_stat_force_next_flush()").execute(&mut *conn).await.unwrap();
    sqlx::query_as(
        "SELECT indexrelname::text, idx_scan FROM pg_stat_user_indexes
         WHERE indexrelname IN ('members_first_char', 'members_second_char') ORDER BY 1",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_one_character_search_pages_through_names_that_begin_with_it_have_it_second_or_hold_it_elsewhere() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    // 张 first, second, further in, in the id only, first and again later, a one-character
    // name; and members without it, interleaved with them in name order.
    sqlx::query(
        "INSERT INTO members (platform, external_user_id, display_name)
         SELECT 'qq', i || '-' || k, n FROM generate_series(1, 24) i,
           LATERAL (VALUES (1, '张' || lpad(i::text, 2, '0')), (2, '李张' || i), (3, '王小张' || i),
                           (4, '张张' || i), (5, '刘' || i), (6, '吴' || i)) v(k, n)
         UNION ALL SELECT 'wechat', '张' || i, 'Bob ' || i FROM generate_series(1, 12) i
         UNION ALL SELECT 'telegram', 'one', '张'
         UNION ALL SELECT 'telegram', i || '-' || k, n FROM generate_series(1, 5) i,
           LATERAL (VALUES (1, 'Lily ' || i), (2, 'aL ' || i), (3, 'bal ' || i), (4, 'Max ' || i)) v(k, n)
         UNION ALL SELECT 'telegram', 'l' || i, 'Ann ' || i FROM generate_series(1, 3) i",
    )
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("UPDATE members SET deleted_at = now() WHERE display_name = '张01'").execute(&app.db).await.unwrap();
    let expected = |q: &'static str| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT id FROM members WHERE deleted_at IS NULL
                   AND (display_name ILIKE '%' || $1 || '%' OR external_user_id ILIKE '%' || $1 || '%')
                 ORDER BY display_name, id",
            )
            .bind(q)
            .fetch_all(&db)
            .await
            .unwrap()
        }
    };
    // 张: 23 + 24 + 24 + 24 names, 12 ids and the one-character name, over three pages; l: five
    // names each first, second and third, and three ids.
    for (q, matches) in [("张", 108), ("l", 18), ("L", 18)] {
        let all = expected(q).await;
        assert_eq!(all.len(), matches, "{q}: the seeded matches");
        // Forward, page by page, following the last member of each page.
        let path = |seek: &str| format!("/members?q={}{seek}", urlencoding::encode(q));
        let mut pages: Vec<Vec<i64>> = vec![listed_ids(&page(&app, &c, &path("")).await.1)];
        while pages.last().unwrap().len() == 50 {
            let last = *pages.last().unwrap().last().unwrap();
            pages.push(listed_ids(&page(&app, &c, &path(&format!("&after={last}"))).await.1));
        }
        assert_eq!(pages.concat(), all, "{q}: every match once, in name order");
        // And back from the last page.
        if pages.len() > 1 {
            let first_of_last = pages.last().unwrap()[0];
            let back = listed_ids(&page(&app, &c, &path(&format!("&before={first_of_last}"))).await.1);
            assert_eq!(back, pages[pages.len() - 2], "{q}: the page before");
        }
        // The API's list, in id order.
        let mut conn = app.db.acquire().await.unwrap();
        let f = shoal::store::members::Filter { q: Some(q.into()), ..Default::default() };
        let api: Vec<i64> =
            shoal::store::members::list_after(&mut conn, &f, 0, 1000).await.unwrap().iter().map(|m| m.id).collect();
        let mut by_id = all.clone();
        by_id.sort();
        assert_eq!(api, by_id, "{q}: the API's list");
    }
    // The store's page reads the indexes of first and second characters (their expressions
    // are the store's conditions), counted in the index statistics of this connection.
    let mut conn = app.db.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off").execute(&mut *conn).await.unwrap();
    let before = index_scans(&mut conn).await;
    let f = shoal::store::members::Filter { q: Some("张".into()), ..Default::default() };
    let rows = shoal::store::members::page(&mut conn, &f, shoal::store::members::Seek::First, 50).await.unwrap();
    assert_eq!(rows.rows.len(), 50);
    let after = index_scans(&mut conn).await;
    sqlx::query("RESET enable_seqscan").execute(&mut *conn).await.unwrap();
    assert_eq!(before.len(), 2);
    for (b, a) in before.iter().zip(&after) {
        assert!(a.1 > b.1, "{} was not read: {before:?} → {after:?}", a.0);
    }
}

#[tokio::test]
async fn the_member_list_pages_by_fifty_and_keeps_the_search_in_page_links() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    sqlx::query(
        "INSERT INTO members (platform, external_user_id, display_name)
         SELECT 'qq', (1000 + i)::text, 'Member ' || lpad(i::text, 3, '0') FROM generate_series(1, 120) i",
    )
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO members (platform, external_user_id, display_name) VALUES ('qq', 'x', 'Zed')")
        .execute(&app.db)
        .await
        .unwrap();
    let by_name: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM members ORDER BY display_name, id").fetch_all(&app.db).await.unwrap();

    // Pages continue from the last member shown (keyset), not from an offset.
    let next_of = |body: &str| -> Option<String> {
        let end = body.find("\" rel=\"next\"")?;
        let start = body[..end].rfind("href=\"")? + 6;
        Some(body[start..end].replace("&#38;", "&"))
    };
    let (_, p1) = page(&app, &c, "/members").await;
    assert_eq!(listed_ids(&p1), by_name[..50]);
    assert!(p1.contains(&format!("href=\"/members?after={}\" rel=\"next\"", by_name[49])));
    assert!(p1.contains("121 in total"));
    let (_, p2) = page(&app, &c, &next_of(&p1).unwrap()).await;
    let (_, p3) = page(&app, &c, &next_of(&p2).unwrap()).await;
    assert_eq!(listed_ids(&p3), by_name[100..]);
    assert!(!p3.contains("rel=\"next\""));

    // With a search: 120 matches, the links keep q.
    let (_, s1) = page(&app, &c, "/members?q=Member").await;
    assert_eq!(listed_ids(&s1).len(), 50);
    assert!(s1.contains("120 in total"));
    assert!(s1.contains(&format!("href=\"/members?q=Member&#38;after={}\"", by_name[49])), "q kept in the next link");
    let (_, s2) = page(&app, &c, &next_of(&s1).unwrap()).await;
    let (_, s3) = page(&app, &c, &next_of(&s2).unwrap()).await;
    assert_eq!(listed_ids(&s3), by_name[100..120]);
    let (_, narrow) = page(&app, &c, "/members?q=Member+11").await;
    assert_eq!(listed_ids(&narrow), by_name[109..119], "Member 110 to 119");
    assert!(!narrow.contains("rel=\"next\"") && !narrow.contains("rel=\"prev\""), "one page needs no pager");
}

//! Speed at a million members, as far as tests can show it (the figures are bench/million.sh's):
//! search and tag filters are capped before any query, pool connections carry the statement
//! timeout, the member list continues from a row's key (ties included), large counts are
//! estimates and say so, the member export streams, the ledger's day totals follow every write,
//! and a group's check-in page shows a page of each list.

use reqwest::{Client, StatusCode};
use serde_json::json;

use crate::harness::{self, post_generic, TestApp};

async fn get(c: &Client, app: &TestApp, path: &str) -> (StatusCode, String) {
    let r = c.get(app.url(path)).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn get_zh(c: &Client, app: &TestApp, path: &str) -> (StatusCode, String) {
    let r = c.get(app.url(path)).header("accept-language", "zh-CN").send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn api(app: &TestApp, token: &str, path: &str) -> (StatusCode, serde_json::Value) {
    let r = Client::new().get(app.url(path)).bearer_auth(token).send().await.unwrap();
    let status = r.status();
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
    if status.is_client_error() {
        assert_eq!(ct, "application/problem+json", "{path}");
    }
    (status, body)
}

/// Ids of the members listed on a members list page, in order.
fn listed_ids(body: &str) -> Vec<i64> {
    let Some(i) = body.find("id=\"members\"") else { return Vec::new() };
    body[i..].split("<td><a href=\"/members/").skip(1).map(|s| s[..s.find('"').unwrap()].parse().unwrap()).collect()
}

/// The target of the link with `rel`, unescaped.
fn link(body: &str, rel: &str) -> Option<String> {
    let marker = format!("\" rel=\"{rel}\"");
    let end = body.find(&marker)?;
    let start = body[..end].rfind("href=\"")? + "href=\"".len();
    Some(body[start..end].replace("&#38;", "&").replace("&amp;", "&"))
}

// ---------------------------------------------------------------- search caps

#[tokio::test]
async fn over_long_search_and_tag_filters_are_refused_with_a_message_in_pages_and_the_api() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let token = app.token("admin", true, &[]).await;
    sqlx::query("INSERT INTO members (platform, external_user_id, display_name) VALUES ('qq', '1', 'Ann')")
        .execute(&app.db)
        .await
        .unwrap();
    let long = urlencoding::encode(&"界".repeat(101)).into_owned();
    let just_right = "a".repeat(100);

    for path in [format!("/members?q={long}"), format!("/members?tag={long}"), format!("/groups?q={long}")] {
        let (status, body) = get(&c, &app, &path).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert!(body.contains("id=\"filter-errors\"") && body.contains("Use at most 100 characters."), "{path}");
        assert!(!body.contains("id=\"members\"") && !body.contains("id=\"groups\""), "no list: {path}");
        let (status, body) = get_zh(&c, &app, &path).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.contains("最多 100 个字符。"), "{path}");
    }
    let (status, body) = get(&c, &app, &format!("/members?q={just_right}")).await;
    assert_eq!(status, StatusCode::OK, "100 characters are fine");
    assert!(!body.contains("filter-errors"));
    assert_eq!(listed_ids(&get(&c, &app, "/members?q=ann").await.1).len(), 1, "a search still finds");

    for path in [
        format!("/api/v1/members?q={long}"),
        format!("/api/v1/members?tag={long}"),
        format!("/api/v1/groups?q={long}"),
        format!("/api/v1/groups?tag={long}"),
    ] {
        let (status, body) = api(&app, &token, &path).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        let field = if path.contains("tag=") { "tag" } else { "q" };
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
    let (status, body) = api(&app, &token, &format!("/api/v1/members?q={just_right}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = api(&app, &token, "/api/v1/members?q=ANN").await;
    assert_eq!(body["items"].as_array().map(Vec::len), Some(1));
}

// ---------------------------------------------------------------- statement timeout

#[tokio::test]
async fn pool_connections_carry_the_configured_statement_timeout_and_migrations_do_not() {
    let (_pool, opts) = harness::fresh_db().await;
    let mut config = shoal::Config::defaults();
    assert_eq!(config.database.statement_timeout_ms, 25_000, "the default");
    assert!(config.database.statement_timeout_ms < config.http.request_timeout_secs * 1000);
    config.database.url = harness::url_of(&opts);
    config.database.statement_timeout_ms = 300;
    config.database.max_connections = 2;
    let db = shoal::db::Database::open(&config).await.expect("open");

    let shown: String = sqlx::query_scalar("SHOW statement_timeout").fetch_one(&db.pool).await.unwrap();
    assert_eq!(shown, "300ms");
    let err = sqlx::query("SELECT pg_sleep(3)").execute(&db.pool).await.expect_err("cancelled");
    let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("57014"), "query_canceled: {err}");

    // Migrations lift the timeout for themselves and put it back.
    shoal::db::migrate(&db.pool).await.expect("migrate");
    let mut conns = Vec::new();
    for _ in 0..2 {
        conns.push(db.pool.acquire().await.unwrap());
    }
    for conn in &mut conns {
        let shown: String = sqlx::query_scalar("SHOW statement_timeout").fetch_one(&mut **conn).await.unwrap();
        assert_eq!(shown, "300ms");
    }
    drop(conns);
    db.close().await;
}

/// Connections are not pinged on every hand-out (a round trip per request), yet one that died
/// while idle is noticed before use and replaced, so the caller never sees it.
#[tokio::test]
async fn a_pooled_connection_that_died_while_idle_is_replaced_before_use() {
    let (admin, opts) = harness::fresh_db().await;
    let mut config = shoal::Config::defaults();
    config.database.url = harness::url_of(&opts);
    config.database.max_connections = 1;
    let db = shoal::db::Database::open(&config).await.expect("open");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&db.pool).await.unwrap();
    // In use a moment ago: handed out again without a ping, it is the same connection.
    let again: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&db.pool).await.unwrap();
    assert_eq!(again, pid);
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(&admin).await.unwrap();
    assert!(killed);
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let fresh: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&db.pool)
        .await
        .expect("the dead connection is replaced, not handed out");
    assert_ne!(fresh, pid);
    db.close().await;
}

// ---------------------------------------------------------------- keyset pages

#[tokio::test]
async fn the_member_list_walks_every_member_once_in_name_order_across_ties_and_back() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    // 131 members, half of them named alike: pages must split the ties by id.
    sqlx::query(
        "INSERT INTO members (platform, external_user_id, display_name, tags)
         SELECT 'qq', i::text, CASE WHEN i % 2 = 0 THEN 'Tie' ELSE 'N' || lpad((i % 17)::text, 2, '0') END,
                CASE WHEN i % 5 <> 0 THEN ARRAY['vip'] ELSE '{}' END
         FROM generate_series(1, 131) i",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let expected: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM members ORDER BY display_name, id").fetch_all(&app.db).await.unwrap();

    let mut pages = Vec::new();
    let mut path = Some("/members".to_string());
    while let Some(p) = path {
        let (status, body) = get(&c, &app, &p).await;
        assert_eq!(status, StatusCode::OK, "{p}");
        pages.push((p, listed_ids(&body)));
        path = link(&body, "next");
        assert!(pages.len() < 10, "the pages end");
    }
    assert_eq!(pages.iter().map(|(_, ids)| ids.len()).collect::<Vec<_>>(), vec![50, 50, 31]);
    assert_eq!(pages.iter().flat_map(|(_, ids)| ids.clone()).collect::<Vec<_>>(), expected);

    // Back from the last page, page by page, to the first.
    let (_, last) = get(&c, &app, &pages[2].0).await;
    let back = link(&last, "prev").expect("a previous page");
    let (_, middle) = get(&c, &app, &back).await;
    assert_eq!(listed_ids(&middle), pages[1].1);
    let (_, first) = get(&c, &app, &link(&middle, "prev").expect("the first page")).await;
    assert_eq!(listed_ids(&first), pages[0].1);
    assert!(link(&first, "prev").is_none() && link(&first, "next").is_some());
    assert!(first.contains("131 in total"), "a small list counts exactly");

    // Filters stay in the links; a link to a member who is gone starts over.
    let vip: Vec<i64> = sqlx::query_scalar("SELECT id FROM members WHERE 'vip' = ANY(tags) ORDER BY display_name, id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    let (_, v1) = get(&c, &app, "/members?tag=vip&q=Tie").await;
    let ties: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM members WHERE 'vip' = ANY(tags) AND display_name = 'Tie' ORDER BY id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(listed_ids(&v1), ties[..50]);
    assert_eq!(vip.len(), 105);
    let (_, v1) = get(&c, &app, "/members?tag=vip").await;
    assert_eq!(listed_ids(&v1), vip[..50]);
    let next = link(&v1, "next").unwrap_or_default();
    assert!(next.starts_with("/members?tag=vip&after="), "{next}");
    assert_eq!(listed_ids(&get(&c, &app, &next).await.1), vip[50..100]);
    assert_eq!(listed_ids(&get(&c, &app, "/members?after=999999").await.1), expected[..50]);
}

#[tokio::test]
async fn large_totals_are_estimates_or_capped_counts_and_say_so_in_both_languages() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    sqlx::query(
        "INSERT INTO members (platform, external_user_id, display_name)
         SELECT 'qq', i::text, 'Member ' || i FROM generate_series(1, 12000) i",
    )
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("ANALYZE members").execute(&app.db).await.unwrap();

    let (_, body) = get(&c, &app, "/members").await;
    assert!(body.contains("About 12000 in total"), "{}", &body[body.find("list-total").unwrap_or(0)..][..80]);
    let (_, body) = get_zh(&c, &app, "/members").await;
    assert!(body.contains("约 12000 条"));
    // A filter matching more than the cap counts up to it.
    let (_, body) = get(&c, &app, "/members?q=member").await;
    assert!(body.contains("More than 10000"));
    let (_, body) = get_zh(&c, &app, "/members?q=member").await;
    assert!(body.contains("超过 10000 条"));
    // Two characters have no trigram: such a search shows its page but counts nothing.
    let (_, body) = get(&c, &app, "/members?q=Me").await;
    assert_eq!(listed_ids(&body).len(), 50);
    assert!(!body.contains("in total") && !body.contains("More than"), "no count for a two-character search");
    let (_, body) = get(&c, &app, "/members?q=member+1200").await;
    assert!(body.contains("2 in total"), "Member 1200 and Member 12000, counted exactly");
    let (_, body) = get(&c, &app, "/").await;
    assert!(body.contains("about 12000"), "the dashboard's card");
}

// ---------------------------------------------------------------- export

#[tokio::test]
async fn the_member_export_streams_in_parts_and_holds_every_open_membership() {
    let app = TestApp::spawn().await;
    let g1 = app.group("One").await;
    let g2 = app.group("Two").await;
    let c = app.admin().await;
    // 4 500 members: more than two parts. Every member is in g1, every third in g2 too; one
    // left g1; every seventh is in no group; a formula-looking name sits on a part boundary.
    sqlx::query(
        "INSERT INTO members (platform, external_user_id, display_name, tags)
         SELECT 'qq', (100000 + i)::text, CASE WHEN i = 2000 THEN '=1+1' ELSE 'M' || i END,
                CASE WHEN i % 5 = 0 THEN ARRAY['a', 'b'] ELSE '{}' END
         FROM generate_series(1, 4500) i",
    )
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO memberships (member_id, group_id, role)
         SELECT id, $1, CASE WHEN id % 11 = 0 THEN 'admin' ELSE 'member' END FROM members WHERE id % 7 <> 0
         UNION ALL SELECT id, $2, 'member' FROM members WHERE id % 3 = 0 AND id % 7 <> 0",
    )
    .bind(g1)
    .bind(g2)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE memberships SET left_at = now() WHERE group_id = $1 AND member_id = (SELECT min(id) FROM members)",
    )
    .bind(g1)
    .execute(&app.db)
    .await
    .unwrap();
    type Line = (i64, String, String, Option<i64>, Option<String>, Vec<String>);
    let rows: Vec<Line> = sqlx::query_as(
        "SELECT m.id, m.external_user_id, m.display_name, s.group_id, s.role, m.tags FROM members m
         LEFT JOIN memberships s ON s.member_id = m.id AND s.left_at IS NULL ORDER BY m.id, s.group_id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    // A BOM for Excel, then the columns the import reads, the balance and last activity.
    let mut expected = String::from(
        "\u{feff}platform,external_user_id,display_name,group_id,role,tags,notes,balance,last_active_at (Asia/Shanghai)\n",
    );
    for (_, ext, name, group, role, tags) in &rows {
        let name = if name.starts_with('=') { format!("'{name}") } else { name.clone() };
        let group = group.map(|g| g.to_string()).unwrap_or_default();
        expected.push_str(&format!(
            "qq,{ext},{name},{group},{},{},,0,\n",
            role.clone().unwrap_or_default(),
            tags.join("|")
        ));
    }

    let r = c.get(app.url("/members/export.csv")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("content-length").is_none(), "not one buffer of known length: {:?}", r.headers());
    assert_eq!(r.headers().get("transfer-encoding").and_then(|v| v.to_str().ok()), Some("chunked"));
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let body = r.text().await.unwrap();
    assert_eq!(body.lines().count(), expected.lines().count());
    assert!(body.contains(",'=1+1,"), "formulas neutralised");
    assert_eq!(body, expected);

    // A scoped operator's export holds the members of their group, with that group only.
    let o = app.login_as("olga", "operator", false, &[g2]).await;
    let body = o.get(app.url("/members/export.csv")).send().await.unwrap().text().await.unwrap();
    let in_g2 = rows.iter().filter(|r| r.3 == Some(g2)).count();
    assert_eq!(body.lines().count(), 1 + in_g2);
    assert!(body.lines().skip(1).all(|l| l.contains(&format!(",{g2},"))));
}

// ---------------------------------------------------------------- ledger day totals

#[tokio::test]
async fn the_ledger_day_totals_follow_every_write_and_feed_the_points_overview() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let token = app.token("admin", true, &[]).await;
    let _room: i64 = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, external_chat_id) VALUES ('Room', 'qq', 500, 'room-1') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let bridge: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('generic', 'qq', 'Hub', 'hub-secret') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    // Check-ins (one statement each) create and credit two members.
    for (n, who) in [(1, "ann"), (2, "bob")] {
        let ev = json!({"event_id": format!("e{n}"), "kind": "checkin", "group_id": "room-1", "member_id": who,
                        "display_name": who, "timestamp": chrono::Utc::now().timestamp()});
        let (s, r) = post_generic(&app, bridge, "hub-secret", ev).await;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
    let id = |who: &'static str| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT id FROM members WHERE external_user_id = $1")
                .bind(who)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    let (ann, bob) = (id("ann").await, id("bob").await);
    let post = |member: i64, body: serde_json::Value, key: &'static str| {
        let (url, token) = (app.url(&format!("/api/v1/members/{member}/points")), token.clone());
        async move {
            Client::new().post(url).bearer_auth(token).header("idempotency-key", key).json(&body).send().await.unwrap()
        }
    };
    assert_eq!(post(ann, json!({"delta": 50}), "k1").await.status(), StatusCode::CREATED);
    assert_eq!(post(ann, json!({"delta": 50}), "k1").await.status(), StatusCode::OK, "a replay adds nothing");
    assert_eq!(post(ann, json!({"delta": -20}), "k2").await.status(), StatusCode::CREATED);
    assert_eq!(
        post(bob, json!({"delta": 7, "kind": "adjustment"}), "k3").await.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "a correction says why"
    );
    assert_eq!(
        post(bob, json!({"delta": 7, "kind": "adjustment", "note": "fix"}), "k3").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(post(bob, json!({"delta": -500}), "k4").await.status(), StatusCode::UNPROCESSABLE_ENTITY);

    type Kinds = Vec<(String, i64, i64, i64)>;
    let totals = |db: sqlx::PgPool| async move {
        let rollup: Kinds = sqlx::query_as(
            "SELECT kind, sum(entries)::bigint, sum(earned)::bigint, sum(spent)::bigint FROM points_daily
             GROUP BY kind HAVING sum(entries) <> 0 ORDER BY kind",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        let ledger: Kinds = sqlx::query_as(
            "SELECT kind, count(*), COALESCE(sum(delta) FILTER (WHERE delta > 0), 0)::bigint,
                    COALESCE(-sum(delta) FILTER (WHERE delta < 0), 0)::bigint
             FROM points_ledger GROUP BY kind ORDER BY kind",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        let balances: i64 = sqlx::query_scalar("SELECT COALESCE(sum(balance), 0)::bigint FROM points_accounts")
            .fetch_one(&db)
            .await
            .unwrap();
        (rollup, ledger, balances)
    };
    let (rollup, ledger, balances) = totals(app.db.clone()).await;
    assert_eq!(rollup, ledger);
    assert_eq!(ledger, vec![("adjustment".into(), 1, 7, 0), ("api".into(), 2, 50, 20), ("checkin".into(), 2, 2, 0)]);
    assert_eq!(balances, 39);

    let (status, page) = get(&c, &app, "/points").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"points-outstanding\">39<"), "the outstanding balance");
    let api_row = &page[page.find("data-kind=\"api\"").expect("api row")..];
    let api_row = &api_row[..api_row.find("</tr>").unwrap()];
    assert!(api_row.contains(">2<") && api_row.contains(">50<") && api_row.contains(">20<"), "{api_row}");

    // A deleted member's entries stay; their balance is forfeited by one more entry, which the
    // day totals count like any other.
    let r = Client::new().delete(app.url(&format!("/api/v1/members/{bob}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (rollup, ledger, balances) = totals(app.db.clone()).await;
    assert_eq!(rollup, ledger);
    assert!(ledger.contains(&("forfeit".into(), 1, 0, 8)), "{ledger:?}");
    assert_eq!(balances, 31);
    let (_, page) = get(&c, &app, "/points").await;
    assert!(page.contains("id=\"points-outstanding\">31<"));
}

// ---------------------------------------------------------------- a group's check-ins

#[tokio::test]
async fn a_big_groups_checkin_page_shows_a_page_of_each_list_with_links_to_the_rest() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let g = app.group("Big").await;
    // 230 members checked in today (the group's day: Asia/Shanghai from midnight), in order.
    sqlx::query(
        "WITH m AS (
            INSERT INTO members (platform, external_user_id, display_name)
            SELECT 'qq', i::text, 'M' || lpad(i::text, 3, '0') FROM generate_series(1, 230) i RETURNING id
         ), c AS (
            INSERT INTO checkins (member_id, group_id, day, at, streak)
            SELECT id, $1, (now() AT TIME ZONE 'Asia/Shanghai')::date, now() - (1000 - id) * interval '1 millisecond', 1
            FROM m RETURNING 1
         )
         INSERT INTO checkin_days (group_id, day, checkins)
         SELECT $1, (now() AT TIME ZONE 'Asia/Shanghai')::date, count(*) FROM c",
    )
    .bind(g)
    .execute(&app.db)
    .await
    .unwrap();
    let count = |body: &str, marker: &str| body.matches(marker).count();
    let ranks = |body: &str| -> Vec<i64> {
        body.split("<tr class=\"checkin-row\"")
            .skip(1)
            .map(|r| {
                let i = r.find("<td class=\"num\">").unwrap() + "<td class=\"num\">".len();
                r[i..i + r[i..].find('<').unwrap()].trim().parse().unwrap()
            })
            .collect()
    };

    let (status, body) = get(&c, &app, &format!("/groups/{g}/checkins")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("id=\"today-total\">230<"), "the day's count, all pages");
    assert_eq!(ranks(&body), (1..=100).collect::<Vec<_>>());
    let calendar = &body[body.find("id=\"calendar-table\"").unwrap()..];
    assert_eq!(count(calendar, "<tr data-member="), 50, "a page of the calendar");
    assert!(body.len() < 200_000, "the page is {} bytes", body.len());
    let next = link(&body, "next").expect("today's next page");
    assert!(next.contains("today_page=2"), "{next}");

    let (_, last) = get(&c, &app, &format!("/groups/{g}/checkins?today_page=3")).await;
    assert_eq!(ranks(&last), (201..=230).collect::<Vec<_>>(), "ranks go on across pages");
    let (_, cal) = get(&c, &app, &format!("/groups/{g}/checkins?calendar_page=5")).await;
    let calendar = &cal[cal.find("id=\"calendar-table\"").unwrap()..];
    assert_eq!(count(calendar, "<tr data-member="), 30);
    let first_on_page: i64 =
        sqlx::query_scalar("SELECT id FROM members ORDER BY id OFFSET 200 LIMIT 1").fetch_one(&app.db).await.unwrap();
    assert!(calendar.contains(&format!("<tr data-member=\"{first_on_page}\"")), "same days: by member id");
    let (status, _) = get(&c, &app, &format!("/groups/{g}/checkins?today_page=x&calendar_page=-4")).await;
    assert_eq!(status, StatusCode::OK, "a bad page number is the first page");
}

#[tokio::test]
async fn a_group_filter_counts_the_groups_current_members() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let g = app.group("Room").await;
    let other = app.group("Other").await;
    // 60 in the group (one of them in the other group too), 1 who left, 5 elsewhere.
    sqlx::query(
        "WITH m AS (
            INSERT INTO members (platform, external_user_id, display_name)
            SELECT 'qq', i::text, 'M' || i FROM generate_series(1, 66) i RETURNING id
         )
         INSERT INTO memberships (member_id, group_id, left_at)
         SELECT id, CASE WHEN id % 11 = 0 AND id > 60 THEN $2 ELSE $1 END,
                CASE WHEN id = (SELECT max(id) FROM m) THEN now() END FROM m",
    )
    .bind(g)
    .bind(other)
    .execute(&app.db)
    .await
    .unwrap();
    let current: i64 = sqlx::query_scalar("SELECT count(*) FROM memberships WHERE group_id = $1 AND left_at IS NULL")
        .bind(g)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(current > 50, "more than a page");
    let (_, body) = get(&c, &app, &format!("/members?group={g}")).await;
    assert_eq!(listed_ids(&body).len(), 50);
    assert!(body.contains(&format!("{current} in total")), "{current}");
}

#[tokio::test]
async fn scoped_lists_and_the_points_overview_are_planned_for_their_scope_each_time() {
    use shoal::store::{members, points};
    let app = TestApp::spawn().await;
    let g: i64 =
        sqlx::query_scalar("INSERT INTO groups (name, platform, capacity) VALUES ('Scoped', 'qq', 500) RETURNING id")
            .fetch_one(&app.db)
            .await
            .unwrap();
    sqlx::query(
        "WITH m AS (INSERT INTO members (platform, external_user_id, display_name)
                    SELECT 'qq', i::text, 'Member ' || i FROM generate_series(1, 30) i RETURNING id)
         INSERT INTO memberships (member_id, group_id) SELECT id, $1 FROM m WHERE id % 3 = 0",
    )
    .bind(g)
    .execute(&app.db)
    .await
    .unwrap();
    let mut conn = app.db.acquire().await.unwrap();
    let scoped = members::Filter { scope: Some(vec![g]), ..Default::default() };
    // More than the five runs after which PostgreSQL may switch a prepared statement to its
    // generic plan, the plan made without knowing the scope.
    for _ in 0..6 {
        let page = members::page(&mut conn, &scoped, members::Seek::First, 50).await.unwrap();
        assert_eq!(page.rows.len(), 10, "the scope's members only");
        assert!(matches!(members::total(&mut conn, &scoped).await.unwrap(), shoal::store::Total::Exact(10)));
        assert_eq!(members::list_after(&mut conn, &scoped, 0, 50).await.unwrap().len(), 10);
        points::overview(&mut conn, Some(&[g])).await.unwrap();
    }
    // The overview within the scope, against the same figures read plainly: member i holds i
    // points from an adjustment, every fifth one more from a check-in (ids 3, 6 … 30 in scope).
    sqlx::query(
        "INSERT INTO points_ledger (member_id, delta, kind, idempotency_key)
         SELECT id, id, 'adjustment', 'a' || id FROM members
         UNION ALL SELECT id, 1, 'checkin', 'c' || id FROM members WHERE id % 5 = 0 ORDER BY 1, 2",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO points_accounts (member_id, balance) SELECT member_id, sum(delta) FROM points_ledger GROUP BY 1",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    let o = points::overview(&mut conn, Some(&[g])).await.unwrap();
    let in_scope = "member_id IN (SELECT member_id FROM memberships WHERE group_id = $1)";
    let (holders, balance): (i64, i64) =
        sqlx::query_as(&format!("SELECT count(*), sum(balance)::bigint FROM points_accounts WHERE {in_scope}"))
            .bind(g)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!((holders, balance), (10, 3 * 55 + 2));
    assert!(matches!(o.holders, shoal::store::Total::Exact(n) if n == holders));
    assert_eq!(o.balance, balance);
    let top: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT member_id FROM points_accounts WHERE {in_scope} ORDER BY balance DESC, member_id LIMIT 20"
    ))
    .bind(g)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(o.top.iter().map(|t| t.member_id).collect::<Vec<_>>(), top);
    let recent: Vec<i64> =
        sqlx::query_scalar(&format!("SELECT member_id FROM points_ledger WHERE {in_scope} ORDER BY id DESC LIMIT 50"))
            .bind(g)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(recent.len(), 12);
    assert_eq!(o.recent.iter().map(|r| r.member_id).collect::<Vec<_>>(), recent);
    let kinds: Vec<(String, i64, i64)> =
        o.by_kind.iter().map(|k| (k.kind.as_str().to_string(), k.entries, k.earned)).collect();
    assert_eq!(kinds, vec![("adjustment".to_string(), 10, 3 * 55), ("checkin".to_string(), 2, 2)]);
    // The same list for every group is prepared (the check below can see sqlx's statements).
    members::page(&mut conn, &members::Filter::default(), members::Seek::First, 50).await.unwrap();
    let prepared: Vec<String> =
        sqlx::query_scalar("SELECT statement FROM pg_prepared_statements").fetch_all(&mut *conn).await.unwrap();
    assert!(prepared.iter().any(|s| s.contains("ORDER BY m.display_name")), "{prepared:#?}");
    let with_scope: Vec<&String> = prepared.iter().filter(|s| s.contains("group_id = ANY(")).collect();
    assert!(with_scope.is_empty(), "statements with a scope were prepared: {with_scope:#?}");
}

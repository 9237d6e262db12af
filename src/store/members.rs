//! Members (one person on one platform) and their memberships in groups.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::{like_pattern, Total, COUNT_CAP};
use crate::domain::member::{MemberRole, MemberSpec};
use crate::domain::Platform;

/// A member as lists and pages show them. Deleted members (anonymised, `deleted_at` set) are
/// never listed or found: their rows stay only for the ledger and check-in history.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub id: i64,
    pub platform: Platform,
    pub external_user_id: String,
    pub display_name: String,
    pub tags: Vec<String>,
    pub notes: String,
    pub last_active_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Open memberships (in scope, for lists).
    pub group_count: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MembershipRow {
    pub id: i64,
    pub group_id: i64,
    pub group_name: String,
    pub role: MemberRole,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub q: Option<String>,
    pub platform: Option<Platform>,
    pub group_id: Option<i64>,
    pub tag: Option<String>,
    pub scope: Option<Vec<i64>>,
}

/// Where a page of the name-ordered list starts: at the beginning, or after or before the
/// member with this id (the last or first row of the page the link was on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    First,
    After(i64),
    Before(i64),
}

/// One page of the member list, in name order, and whether there are rows on either side.
#[derive(Debug)]
pub struct NamePage {
    pub rows: Vec<MemberRow>,
    pub has_prev: bool,
    pub has_next: bool,
}

/// Which of a one-character search's matches a query takes. Names are ordered by their first
/// characters, so a character common there (a surname; a given name's first character) comes
/// in blocks of the name order that a walk must read through. Such a search is therefore asked
/// in three parts, each through an index in name order or one that holds few of the matches:
/// names that begin with the character (`members_first_char`), names whose second character it
/// is (`members_second_char`), and members who hold it further in their name or in their id
/// (`members_search_short`, which leaves out a name's first two characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Matches {
    All,
    FirstCharacter,
    SecondCharacter,
    Elsewhere,
}

/// The conditions of `f`, only those that are set, so that each search gets a plan that uses
/// the index that fits it. A scoped principal sees a member when the member has (or had) a
/// membership in one of its groups. The search goes through the trigram index on name and id
/// together (`members_search_trgm`), or for one or two characters the indexes of their pieces
/// (see [`Matches`]); each column is then checked on its own, so that a match never spans the
/// two. `part` picks one part of a one-character search.
fn push_filter(b: &mut QueryBuilder<'_, Postgres>, f: &Filter, part: Matches) {
    b.push(" WHERE m.deleted_at IS NULL");
    if let Some(scope) = &f.scope {
        b.push(" AND EXISTS (SELECT 1 FROM memberships s WHERE s.member_id = m.id AND s.group_id = ANY(");
        b.push_bind(scope.clone()).push("))");
    }
    if let Some(q) = &f.q {
        let p = like_pattern(q);
        // The one- and two-character pieces (`members_search_short`).
        let pieces = |b: &mut QueryBuilder<'_, Postgres>| {
            b.push(" shoal_short_grams(m.display_name, m.external_user_id) @> ARRAY[lower(");
            b.push_bind(q.clone()).push(")]::text[]");
        };
        let first = |b: &mut QueryBuilder<'_, Postgres>| {
            b.push(" lower(left(m.display_name, 1)) = lower(").push_bind(q.clone()).push(")");
        };
        let second = |b: &mut QueryBuilder<'_, Postgres>| {
            b.push(" lower(substr(m.display_name, 2, 1)) = lower(").push_bind(q.clone()).push(")");
        };
        let kind = search_kind(f);
        match (kind, part) {
            (Some(SearchKind::OneCharacter), Matches::All) => {
                b.push(" AND (");
                first(b);
                b.push(" OR");
                second(b);
                b.push(" OR");
                pieces(b);
                b.push(")");
            }
            (Some(SearchKind::OneCharacter), Matches::FirstCharacter) => {
                b.push(" AND");
                first(b);
            }
            (Some(SearchKind::OneCharacter), Matches::SecondCharacter) => {
                b.push(" AND");
                second(b);
                b.push(" AND NOT");
                first(b);
            }
            (Some(SearchKind::OneCharacter), Matches::Elsewhere) => {
                b.push(" AND");
                pieces(b);
                b.push(" AND NOT");
                first(b);
                b.push(" AND NOT");
                second(b);
                // The pieces are exact too (a search is trimmed, so never the separator), but
                // this check steadies the plan: the planner estimates it at a fixed third, while
                // its estimate of the `ILIKE`, from a sample of names, multiplied with the
                // pieces' own and swung between 32 and 52 000 rows for `l` from one `ANALYZE` to
                // the next (at 32 it read and sorted all 200 000 matches). Without any check, a
                // character absent there was estimated at 2 600 and the name order walked.
                b.push(" AND strpos(lower(m.display_name || ' ' || m.external_user_id), lower(");
                b.push_bind(q.clone()).push(")) > 0");
            }
            (Some(SearchKind::TwoCharacters), _) => {
                b.push(" AND");
                pieces(b);
            }
            (None, _) => {
                b.push(" AND (m.display_name || ' ' || m.external_user_id) ILIKE ")
                    .push_bind(p.clone())
                    .push(" ESCAPE '\\'");
            }
        }
        // Each column is checked on its own, except in the parts of a one-character search,
        // which are exact (see the `Elsewhere` arm).
        if kind != Some(SearchKind::OneCharacter) || part == Matches::All {
            b.push(" AND (m.display_name ILIKE ").push_bind(p.clone());
            b.push(" ESCAPE '\\' OR m.external_user_id ILIKE ").push_bind(p).push(" ESCAPE '\\')");
        }
    }
    if let Some(platform) = f.platform {
        b.push(" AND m.platform = ").push_bind(platform);
    }
    if let Some(g) = f.group_id {
        b.push(
            " AND EXISTS (SELECT 1 FROM memberships s WHERE s.member_id = m.id AND s.left_at IS NULL AND s.group_id = ",
        );
        b.push_bind(g).push(")");
    }
    if let Some(tag) = &f.tag {
        // `@>` can use the GIN index on tags; `= ANY(tags)` cannot.
        b.push(" AND m.tags @> ARRAY[").push_bind(tag.clone()).push("]::text[]");
    }
}

/// The columns of [`MemberRow`] over `m`, a page of members already cut to size (the caller
/// pushes that subquery and closes it): the open memberships (in scope) are counted for those
/// rows only.
fn push_columns(b: &mut QueryBuilder<'_, Postgres>, scope: Option<&[i64]>) {
    b.push(
        "SELECT m.id, m.platform, m.external_user_id, m.display_name, m.tags, m.notes, m.last_active_at,
            m.created_at, m.updated_at,
            (SELECT count(*) FROM memberships s WHERE s.member_id = m.id AND s.left_at IS NULL",
    );
    if let Some(scope) = scope {
        b.push(" AND s.group_id = ANY(").push_bind(scope.to_vec()).push(")");
    }
    b.push(") AS group_count FROM (");
}

/// A group with fewer open memberships than this is listed from its memberships (read them
/// all, sort by name); a larger one by walking the name index until a page is full. Reading a
/// group costs its size; the walk costs about a page times the share of members outside it.
const SMALL_GROUP: i64 = 10_000;

/// Whether the group has fewer than [`SMALL_GROUP`] open memberships (counting stops there).
async fn small_group(conn: &mut PgConnection, group: i64) -> sqlx::Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM memberships WHERE group_id = $1 AND left_at IS NULL LIMIT $2) x",
    )
    .bind(group)
    .bind(SMALL_GROUP)
    .fetch_one(conn)
    .await?;
    Ok(n < SMALL_GROUP)
}

/// A page of `limit` members in name order (then id), continuing from `seek`. The key of the
/// member a link points at is looked up first; a link to a member who is gone starts over.
pub async fn page(conn: &mut PgConnection, f: &Filter, seek: Seek, limit: i64) -> sqlx::Result<NamePage> {
    let cursor = match seek {
        Seek::After(id) | Seek::Before(id) => {
            sqlx::query_scalar::<_, String>("SELECT display_name FROM members WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
                .map(|name| (name, id))
        }
        Seek::First => None,
    };
    let found = cursor.is_some();
    let backwards = matches!(seek, Seek::Before(_)) && found;
    let fenced = match f.group_id {
        Some(g) => small_group(&mut *conn, g).await?,
        None => false,
    };
    let order = if backwards { " ORDER BY m.display_name DESC, m.id DESC" } else { " ORDER BY m.display_name, m.id" };
    // The members after (or before) the link's member, in the list's order, one more than a page.
    let seek_page = |b: &mut QueryBuilder<'_, Postgres>| {
        if let Some((name, id)) = &cursor {
            b.push(if backwards { " AND (m.display_name, m.id) < (" } else { " AND (m.display_name, m.id) > (" });
            b.push_bind(name.clone()).push(", ").push_bind(*id).push(")");
        }
        b.push(order).push(" LIMIT ").push_bind(limit + 1);
    };
    let mut b = QueryBuilder::new("");
    push_columns(&mut b, f.scope.as_deref());
    if fenced {
        // OFFSET 0 keeps the planner from walking the name index for a small group's members:
        // the group's rows are found through its memberships, then sorted.
        b.push("SELECT m.* FROM (SELECT m.* FROM members m");
        push_filter(&mut b, f, Matches::All);
        b.push(" OFFSET 0) m WHERE TRUE");
        seek_page(&mut b);
    } else if search_kind(f) == Some(SearchKind::OneCharacter) {
        // A page of each part, merged: no one plan is fast in name order for all three.
        let parts = [Matches::FirstCharacter, Matches::SecondCharacter, Matches::Elsewhere];
        for (i, part) in parts.into_iter().enumerate() {
            b.push(if i == 0 { "SELECT m.* FROM ((" } else { ") UNION ALL (" });
            b.push("SELECT m.* FROM members m");
            push_filter(&mut b, f, part);
            seek_page(&mut b);
        }
        b.push(")) m").push(order).push(" LIMIT ").push_bind(limit + 1);
    } else {
        b.push("SELECT m.* FROM members m");
        push_filter(&mut b, f, Matches::All);
        seek_page(&mut b);
    }
    b.push(") m").push(order);
    let mut rows: Vec<MemberRow> = b.build_query_as().persistent(prepared(f)).fetch_all(conn).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if backwards {
        rows.reverse();
    }
    let (has_prev, has_next) = if backwards { (more, true) } else { (found, more) };
    Ok(NamePage { rows, has_prev, has_next })
}

/// Searches shorter than this have no trigram (pg_trgm needs three characters): they go
/// through the indexes of one- and two-character pieces and of names' first characters
/// instead (see [`Matches`]), and their matches are not counted (one character matches a large
/// share of all members).
pub const MIN_INDEXED_SEARCH: usize = 3;

/// The number of members matching `f`: the planner's estimate for the whole unfiltered table
/// once it is large, else an exact count that stops at [`COUNT_CAP`]; not counted for a search
/// shorter than [`MIN_INDEXED_SEARCH`].
pub async fn total(conn: &mut PgConnection, f: &Filter) -> sqlx::Result<Total> {
    if search_kind(f).is_some() {
        return Ok(Total::Unknown);
    }
    let unfiltered =
        f.scope.is_none() && f.q.is_none() && f.platform.is_none() && f.group_id.is_none() && f.tag.is_none();
    if unfiltered {
        if let Some(n) = super::estimated_rows(&mut *conn, "members").await? {
            if n > COUNT_CAP {
                return Ok(Total::About(n));
            }
        }
    }
    if let (Some(g), None, None, None, None) = (f.group_id, &f.q, &f.platform, &f.tag, &f.scope) {
        // Only a group: its open memberships are its members (one open membership per member
        // and group), counted without visiting the members.
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM memberships WHERE group_id = $1 AND left_at IS NULL LIMIT $2) x",
        )
        .bind(g)
        .bind(COUNT_CAP + 1)
        .fetch_one(conn)
        .await?;
        return Ok(if n > COUNT_CAP { Total::MoreThan(COUNT_CAP) } else { Total::Exact(n) });
    }
    let mut b = QueryBuilder::new("SELECT count(*) FROM (SELECT 1 FROM members m");
    push_filter(&mut b, f, Matches::All);
    b.push(" LIMIT ").push_bind(COUNT_CAP + 1).push(") x");
    let n: i64 = b.build_query_scalar().persistent(prepared(f)).fetch_one(conn).await?;
    Ok(if n > COUNT_CAP { Total::MoreThan(COUNT_CAP) } else { Total::Exact(n) })
}

/// Keyset pagination for the API: members with id > `after`, in id order.
pub async fn list_after(conn: &mut PgConnection, f: &Filter, after: i64, limit: i64) -> sqlx::Result<Vec<MemberRow>> {
    let mut b = QueryBuilder::new("");
    push_columns(&mut b, f.scope.as_deref());
    b.push("SELECT m.* FROM members m");
    push_filter(&mut b, f, Matches::All);
    b.push(" AND m.id > ").push_bind(after).push(" ORDER BY m.id LIMIT ").push_bind(limit);
    b.push(") m ORDER BY m.id");
    b.build_query_as().persistent(prepared(f)).fetch_all(conn).await
}

/// Whether a list statement for `f` may be prepared (planned once for any value). It is not for
/// a short search (see [`search_kind`]) nor within a scope: the scope's size decides the plan
/// (a small scope's members are read through their memberships, a large one's by walking the
/// list), and the generic plan, made without it, walked the name order for a group of 2 000
/// members at a million (p95 115 ms for the list, against 20 ms planned for the scope).
fn prepared(f: &Filter) -> bool {
    search_kind(f).is_none() && f.scope.is_none()
}

/// A search too short for a trigram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SearchKind {
    OneCharacter,
    TwoCharacters,
}

/// Whether `f` searches for one or two characters (shorter than [`MIN_INDEXED_SEARCH`]). Such a
/// statement is planned for its value each time (not prepared): a character common in the
/// rest of names (a letter of the nicknames) is found fastest by walking the list's order, a
/// rare one through `members_search_short`, and a prepared statement's generic plan, made
/// without the value, took the index for both (0.5 s for 张 at a million members, before the
/// first-character index).
fn search_kind(f: &Filter) -> Option<SearchKind> {
    match f.q.as_deref().map(|q| q.chars().count()) {
        Some(1) => Some(SearchKind::OneCharacter),
        Some(n) if (2..MIN_INDEXED_SEARCH).contains(&n) => Some(SearchKind::TwoCharacters),
        _ => None,
    }
}

/// One member, if visible within `scope`.
pub async fn get(conn: &mut PgConnection, id: i64, scope: Option<&[i64]>) -> sqlx::Result<Option<MemberRow>> {
    let f = Filter { scope: scope.map(|s| s.to_vec()), ..Filter::default() };
    let mut b = QueryBuilder::new("");
    push_columns(&mut b, scope);
    b.push("SELECT m.* FROM members m");
    push_filter(&mut b, &f, Matches::All);
    b.push(" AND m.id = ").push_bind(id).push(") m");
    b.build_query_as().fetch_optional(conn).await
}

pub async fn memberships(
    conn: &mut PgConnection,
    member_id: i64,
    scope: Option<&[i64]>,
) -> sqlx::Result<Vec<MembershipRow>> {
    sqlx::query_as(
        "SELECT s.id, s.group_id, g.name AS group_name, s.role, s.joined_at, s.left_at
         FROM memberships s JOIN groups g ON g.id = s.group_id
         WHERE s.member_id = $1 AND ($2::bigint[] IS NULL OR s.group_id = ANY($2))
         ORDER BY s.left_at IS NOT NULL, s.joined_at DESC",
    )
    .bind(member_id)
    .bind(scope)
    .fetch_all(conn)
    .await
}

/// Inserts a new member; a duplicate (platform, external id) is a unique violation on
/// `members_platform_external_user_id_key`.
pub async fn insert(conn: &mut PgConnection, m: &MemberSpec) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO members (platform, external_user_id, display_name, tags, notes)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(m.platform)
    .bind(&m.external_user_id)
    .bind(&m.display_name)
    .bind(&m.tags)
    .bind(&m.notes)
    .fetch_one(conn)
    .await
}

/// Inserts or updates by (platform, external id); returns the id and whether it was new.
pub async fn upsert(conn: &mut PgConnection, m: &MemberSpec) -> sqlx::Result<(i64, bool)> {
    sqlx::query_as(
        "INSERT INTO members (platform, external_user_id, display_name, tags, notes)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (platform, external_user_id) DO UPDATE SET display_name = EXCLUDED.display_name,
            tags = CASE WHEN cardinality(EXCLUDED.tags) > 0 THEN EXCLUDED.tags ELSE members.tags END,
            notes = CASE WHEN EXCLUDED.notes <> '' THEN EXCLUDED.notes ELSE members.notes END,
            updated_at = now()
         RETURNING id, (xmax = 0) AS inserted",
    )
    .bind(m.platform)
    .bind(&m.external_user_id)
    .bind(&m.display_name)
    .bind(&m.tags)
    .bind(&m.notes)
    .fetch_one(conn)
    .await
}

/// [`upsert`] for a principal scoped to `scope`: a new member is inserted; an existing one is
/// updated only when the scope sees it (it has or had a membership in one of those groups).
/// `None`: the member exists outside the scope, and nothing was written.
pub async fn upsert_in_scope(
    conn: &mut PgConnection,
    m: &MemberSpec,
    scope: &[i64],
) -> sqlx::Result<Option<(i64, bool)>> {
    sqlx::query_as(
        "WITH ins AS (
            INSERT INTO members (platform, external_user_id, display_name, tags, notes)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (platform, external_user_id) DO NOTHING
            RETURNING id),
         upd AS (
            UPDATE members m SET display_name = $3,
                tags = CASE WHEN cardinality($4::text[]) > 0 THEN $4 ELSE m.tags END,
                notes = CASE WHEN $5 <> '' THEN $5 ELSE m.notes END,
                updated_at = now()
            WHERE m.platform = $1 AND m.external_user_id = $2 AND NOT EXISTS (SELECT 1 FROM ins)
              AND EXISTS (SELECT 1 FROM memberships s WHERE s.member_id = m.id AND s.group_id = ANY($6))
            RETURNING m.id)
         SELECT id, TRUE AS inserted FROM ins UNION ALL SELECT id, FALSE FROM upd",
    )
    .bind(m.platform)
    .bind(&m.external_user_id)
    .bind(&m.display_name)
    .bind(&m.tags)
    .bind(&m.notes)
    .bind(scope)
    .fetch_optional(conn)
    .await
}

pub async fn update(conn: &mut PgConnection, id: i64, m: &MemberSpec) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE members SET platform = $2, external_user_id = $3, display_name = $4, tags = $5, notes = $6, updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(m.platform)
    .bind(&m.external_user_id)
    .bind(&m.display_name)
    .bind(&m.tags)
    .bind(&m.notes)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Deletes a member the way Shoal deletes people: the row stays for the history that refers to
/// it (ledger entries, check-ins), with everything that identifies the person scrubbed — name,
/// platform user id (so the same person coming back is a new member), tags, notes, last
/// activity — and `deleted_at` set, after which no list or lookup finds it. The caller closes
/// the memberships (`store::memberships::close_all`) and settles the balance first. False when
/// there is no such member (or it was deleted already).
pub async fn anonymise(conn: &mut PgConnection, id: i64) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE members SET external_user_id = 'deleted:' || id, display_name = '', tags = '{}', notes = '',
                last_active_at = NULL, deleted_at = now(), updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Members in scope with one open membership per line (or none), for CSV export.
#[derive(Debug, sqlx::FromRow)]
pub struct ExportRow {
    pub member_id: i64,
    pub platform: Platform,
    pub external_user_id: String,
    pub display_name: String,
    pub group_id: Option<i64>,
    pub role: Option<MemberRole>,
    pub tags: Vec<String>,
    pub notes: String,
    pub balance: i64,
    pub last_active_at: Option<DateTime<Utc>>,
}

/// One part of the export: the next `members` members after id `after` (in id order) that are
/// in scope — for a scoped principal, those with an open membership in one of its groups — each
/// with one line per open membership in scope, or one bare line. Parts are short statements, so
/// an export of a million members holds no connection and no snapshot for its whole length.
pub async fn export_part(
    conn: &mut PgConnection,
    scope: Option<&[i64]>,
    after: i64,
    members: i64,
) -> sqlx::Result<Vec<ExportRow>> {
    sqlx::query_as(
        "SELECT m.id AS member_id, m.platform, m.external_user_id, m.display_name, s.group_id, s.role, m.tags, m.notes,
                COALESCE(pa.balance, 0) AS balance, m.last_active_at
         FROM (SELECT * FROM members m
               WHERE m.id > $2 AND m.deleted_at IS NULL
                 AND ($1::bigint[] IS NULL OR EXISTS (SELECT 1 FROM memberships s
                      WHERE s.member_id = m.id AND s.left_at IS NULL AND s.group_id = ANY($1)))
               ORDER BY m.id LIMIT $3) m
         LEFT JOIN points_accounts pa ON pa.member_id = m.id
         LEFT JOIN memberships s ON s.member_id = m.id AND s.left_at IS NULL
            AND ($1::bigint[] IS NULL OR s.group_id = ANY($1))
         ORDER BY m.id, s.group_id",
    )
    .bind(scope)
    .bind(after)
    .bind(members)
    .fetch_all(conn)
    .await
}

//! The entry questionnaire's SQL: the questions a join request was sent, and the applicant's
//! answers (one row per question, `join_request_answers`), read per request for the queue and
//! per member for the member's page.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

/// Records the questions sent with a pending request.
pub async fn set_questions(conn: &mut PgConnection, request_id: i64, questions: &[String]) -> sqlx::Result<()> {
    sqlx::query("UPDATE join_requests SET questions = $2 WHERE id = $1")
        .bind(request_id)
        .bind(questions)
        .execute(conn)
        .await?;
    Ok(())
}

/// Writes a request's answers (`answers[i]` answers `questions[i]`).
pub async fn insert_answers(
    conn: &mut PgConnection,
    request_id: i64,
    group_id: i64,
    member_id: Option<i64>,
    questions: &[String],
    answers: &[String],
) -> sqlx::Result<()> {
    let positions: Vec<i16> = (0..questions.len().min(answers.len()) as i16).collect();
    sqlx::query(
        "INSERT INTO join_request_answers (join_request_id, position, group_id, member_id, question, answer)
         SELECT $1, p, $2, $3, q, a FROM unnest($4::smallint[], $5::text[], $6::text[]) AS t (p, q, a)",
    )
    .bind(request_id)
    .bind(group_id)
    .bind(member_id)
    .bind(&positions)
    .bind(&questions[..positions.len()])
    .bind(&answers[..positions.len()])
    .execute(conn)
    .await?;
    Ok(())
}

/// One answer to one question.
#[derive(Debug, Clone, Default, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct AnswerRow {
    pub join_request_id: i64,
    pub question: String,
    pub answer: String,
    pub answered_at: DateTime<Utc>,
}

/// The answers of the given requests, by request and question order.
pub async fn answers_for(conn: &mut PgConnection, request_ids: &[i64]) -> sqlx::Result<Vec<AnswerRow>> {
    sqlx::query_as(
        "SELECT join_request_id, question, answer, answered_at FROM join_request_answers
         WHERE join_request_id = ANY ($1) ORDER BY join_request_id, position",
    )
    .bind(request_ids)
    .fetch_all(conn)
    .await
}

/// A member's answers, with the group they were given for.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct MemberAnswer {
    pub join_request_id: i64,
    pub group_id: i64,
    pub group_name: String,
    pub question: String,
    pub answer: String,
    pub answered_at: DateTime<Utc>,
}

/// A member's answers in the groups in scope (`groups` None: all), newest request first.
pub async fn answers_of_member(
    conn: &mut PgConnection,
    member_id: i64,
    groups: Option<&[i64]>,
) -> sqlx::Result<Vec<MemberAnswer>> {
    sqlx::query_as(
        "SELECT a.join_request_id, a.group_id, g.name AS group_name, a.question, a.answer, a.answered_at
         FROM join_request_answers a JOIN groups g ON g.id = a.group_id
         WHERE a.member_id = $1 AND ($2::bigint[] IS NULL OR a.group_id = ANY ($2))
         ORDER BY a.join_request_id DESC, a.position LIMIT 200",
    )
    .bind(member_id)
    .bind(groups)
    .fetch_all(conn)
    .await
}

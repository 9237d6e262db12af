//! Fission: invite campaigns (任务宝) and invite records. One function per use case — campaigns
//! (`create`, `update`), review decisions (`decide`) — plus what the bridge path and the job
//! system call: `record_join` and `record_leave` inside a delivery's transaction, and
//! `confirm_job` (`JobKind::InviteConfirm`) after the hold period. Rewards are ledger entries
//! (`store::points::post`, `LedgerKind::Invite`) keyed per (campaign, member, stage, round); a
//! reversal writes a compensating entry, never an update, floored at a zero balance with the
//! shortfall kept on the reward row.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::{Connection, PgConnection};

use super::{invalid, record, Done};
use crate::auth::Principal;
use crate::domain::action::Action;
use crate::domain::bridge::Kind;
use crate::domain::checkin::render;
use crate::domain::invite::{
    self, CampaignSpec, Decision, InviteReason, InviteSource, InviteState, Stage, BURST_JOINS, BURST_WINDOW_MINUTES,
    REFERRAL_WINDOW_MINUTES, SCAN_CODES_PER_CLIENT,
};
use crate::domain::points::{IdempotencyKey, LedgerKind};
use crate::error::{AppError, AppResult};
use crate::i18n::{Lang, Tr};
use crate::jobs::{JobContext, Outcome};
use crate::store;
use crate::store::invites::{self as db, CampaignRow, NewRecord, RecordRow};
use crate::store::jobs::{Claimed, JobKind, NewJob};
use crate::store::points::{Applied, Posting};

// ---------------------------------------------------------------- campaigns

/// Checks what a campaign refers to (groups in scope, the live code, the poster template); the
/// live code's id.
async fn check_refs(conn: &mut PgConnection, who: &Principal, spec: &CampaignSpec) -> AppResult<Option<i64>> {
    for g in &spec.group_ids {
        if !who.sees_group(*g) || store::groups::get(conn, *g).await?.is_none() {
            return Err(invalid("group_ids", "invites.error.groups_bad"));
        }
    }
    let live_code = match &spec.live_code_slug {
        None => None,
        Some(slug) => match store::live_codes::by_slug(conn, slug).await? {
            Some(l) => Some(l.id),
            None => return Err(invalid("live_code_slug", "invites.error.live_code_unknown")),
        },
    };
    if let Some(t) = spec.poster_template_id {
        let scope = who.group_filter();
        if store::posters::get(conn, t, scope.as_deref()).await?.is_none() {
            return Err(invalid("poster_template_id", "invites.error.template_unknown"));
        }
    }
    Ok(live_code)
}

/// Creates a campaign over groups the principal sees. `campaign.create`.
pub async fn create(conn: &mut PgConnection, who: &Principal, spec: &CampaignSpec) -> AppResult<Done<CampaignRow>> {
    who.require_write()?;
    let live_code = check_refs(conn, who, spec).await?;
    let id = db::insert(conn, spec, live_code).await?;
    record(conn, who, "campaign.create", "campaign", Some(id), json!({"name": spec.name, "group_ids": spec.group_ids}))
        .await?;
    let scope = who.group_filter();
    Ok(Done::plain(db::get(conn, id, scope.as_deref()).await?.ok_or(AppError::NotFound)?))
}

/// Changes a campaign in the principal's scope. `campaign.update`.
pub async fn update(
    conn: &mut PgConnection,
    who: &Principal,
    id: i64,
    spec: &CampaignSpec,
) -> AppResult<Done<CampaignRow>> {
    who.require_write()?;
    let scope = who.group_filter();
    db::get(conn, id, scope.as_deref()).await?.ok_or(AppError::NotFound)?;
    let live_code = check_refs(conn, who, spec).await?;
    db::update(conn, id, spec, live_code).await?;
    record(conn, who, "campaign.update", "campaign", Some(id), json!({"name": spec.name, "group_ids": spec.group_ids}))
        .await?;
    Ok(Done::plain(db::get(conn, id, scope.as_deref()).await?.ok_or(AppError::NotFound)?))
}

/// A campaign in the principal's scope (404 otherwise).
pub async fn get(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<CampaignRow> {
    let scope = who.group_filter();
    db::get(conn, id, scope.as_deref()).await?.ok_or(AppError::NotFound)
}

// ---------------------------------------------------------------- the bridge path

/// A join as the bridge path saw it, after the membership was opened.
#[derive(Debug, Clone)]
pub struct JoinSeen<'a> {
    pub bridge_kind: Kind,
    pub invitee: i64,
    pub group: i64,
    pub at: DateTime<Utc>,
    /// The inviter the platform named (OneBot `operator_id`, Telegram's adder or link creator,
    /// the generic `inviter`).
    pub inviter: Option<i64>,
    /// The invite link's name (Telegram): a personal code when Shoal made the link.
    pub invite_link_name: Option<&'a str>,
}

/// Writes the invite records of a join, in the delivery's transaction: one per active campaign
/// covering the group, when an inviter is known — a personal link's code first, then the
/// inviter the platform named, else the one pending referral (a scan with `?r=`) sent to this
/// group within [`REFERRAL_WINDOW_MINUTES`]. No self-invites, no credit for a re-join within the
/// campaign's `rejoin_days`, one credited inviter per invitee and campaign (the first); the rest
/// are kept as not credited. Suspicious invites are flagged for review.
pub async fn record_join(conn: &mut PgConnection, j: &JoinSeen<'_>) -> sqlx::Result<()> {
    let campaigns = db::campaigns_for_group(conn, j.group, j.at).await?;
    if campaigns.is_empty() {
        return Ok(());
    }
    let mut referral = None;
    let mut found = None;
    if let Some(code) = j.invite_link_name.map(str::trim).filter(|c| invite::is_code(c)) {
        if let Some(m) = db::member_by_code(conn, code).await? {
            found = Some((m, InviteSource::PlatformLink));
        }
    }
    if found.is_none() {
        if let Some(m) = j.inviter {
            let source =
                if j.bridge_kind == Kind::Generic { InviteSource::Generic } else { InviteSource::PlatformInviter };
            found = Some((m, source));
        }
    }
    if found.is_none() {
        if let Some((id, m, client)) = db::sole_referral(conn, j.group, j.at, REFERRAL_WINDOW_MINUTES).await? {
            referral = Some((id, client));
            found = Some((m, InviteSource::Scan));
        }
    }
    let Some((inviter, source)) = found else { return Ok(()) };
    let scan_many = match &referral {
        Some((_, client)) => db::codes_scanned_by(conn, client).await? >= SCAN_CODES_PER_CLIENT,
        None => false,
    };
    for c in campaigns {
        let mut r = NewRecord {
            campaign_id: c.id,
            inviter,
            invitee: j.invitee,
            level2: None,
            group_id: j.group,
            source,
            invite_link_name: j.invite_link_name,
            state: InviteState::NotCredited,
            reason: None,
            joined_at: j.at,
            hold_until: j.at + Duration::days(c.hold_days as i64),
        };
        if inviter == j.invitee {
            r.reason = Some(InviteReason::SelfInvite);
        } else if db::was_member_recently(conn, j.invitee, j.group, j.at, c.rejoin_days).await? {
            r.reason = Some(InviteReason::Rejoin);
        } else {
            db::lock_inviter(conn, c.id, inviter).await?;
            let burst = db::credited_since(conn, c.id, inviter, Utc::now() - Duration::minutes(BURST_WINDOW_MINUTES))
                .await?
                >= BURST_JOINS - 1;
            (r.state, r.reason) = if burst {
                (InviteState::Flagged, Some(InviteReason::Burst))
            } else if scan_many {
                (InviteState::Flagged, Some(InviteReason::ScanManyCodes))
            } else {
                (InviteState::Pending, None)
            };
            // Level 2 is the inviter's own credited inviter; nobody above them is ever looked up.
            r.level2 = db::credited_inviter(conn, c.id, inviter).await?.filter(|l2| *l2 != j.invitee && *l2 != inviter);
        }
        let id = match db::insert_record(conn, &r).await? {
            Some(id) => {
                if r.state == InviteState::Pending {
                    store::jobs::enqueue(conn, &confirm_job_for(id, r.hold_until)).await?;
                }
                id
            }
            None => {
                // Someone was credited with this invitee first: kept, not credited.
                let kept = NewRecord {
                    state: InviteState::NotCredited,
                    reason: Some(InviteReason::AlreadyCredited),
                    level2: None,
                    ..r
                };
                match db::insert_record(conn, &kept).await? {
                    Some(id) => id,
                    None => continue,
                }
            }
        };
        if let Some((referral, _)) = &referral {
            db::match_referral(conn, *referral, id).await?;
        }
    }
    Ok(())
}

/// A leave (or kick) at `at` in the delivery's transaction: every credited record of the
/// member in the group whose hold had not ended at `at` is reversed; a reward it had earned
/// already (a leave reported after the confirmation, or one whose own time lies inside the hold)
/// is taken back by a compensating entry.
pub async fn record_leave(conn: &mut PgConnection, member: i64, group: i64, at: DateTime<Utc>) -> sqlx::Result<()> {
    for r in db::held_at(conn, member, group, at).await? {
        let from = [InviteState::Pending, InviteState::Flagged, InviteState::Confirmed];
        if db::set_state(conn, r.id, &from, InviteState::Reversed, Some(InviteReason::Left), None).await?
            && r.state == InviteState::Confirmed
        {
            undo_confirmed(conn, &r).await?;
        }
    }
    Ok(())
}

/// A scan with a personal code: a pending referral, when the code is a member's (else
/// nothing). Called off the scan's response path.
pub async fn record_scan(
    pool: &sqlx::PgPool,
    code: &str,
    live_code: i64,
    group: Option<i64>,
    client: &str,
) -> sqlx::Result<()> {
    if !invite::is_code(code) {
        return Ok(());
    }
    let mut conn = pool.acquire().await?;
    if let Some(inviter) = db::member_by_code(&mut conn, code).await? {
        db::insert_referral(&mut conn, inviter, live_code, group, client).await?;
    }
    Ok(())
}

/// The scanning client as referrals keep it: a SHA-256 of its address and browser (32 hex
/// digits), never the address itself.
pub fn client_key(ip: Option<std::net::IpAddr>, ua: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(ip.map(|i| i.to_string()).unwrap_or_default().as_bytes());
    h.update(b"|");
    h.update(ua.as_bytes());
    hex::encode(&h.finalize()[..16])
}

// ---------------------------------------------------------------- the hold period

/// The payload of an `invite_confirm` job.
#[derive(Debug, serde::Deserialize)]
struct ConfirmPayload {
    record_id: i64,
}

/// The job that confirms record `id` once its hold is over: due at `hold_until`, one per record
/// ever (its dedupe key).
fn confirm_job_for(id: i64, hold_until: DateTime<Utc>) -> NewJob {
    NewJob {
        kind: JobKind::InviteConfirm,
        payload: json!({"record_id": id}),
        run_at: Some(hold_until),
        max_attempts: 10,
        dedupe_key: Some(format!("invite_confirm:{id}")),
    }
}

/// `JobKind::InviteConfirm`: a pending record whose hold is over becomes confirmed (a
/// conditional update: exactly once, whichever process and however often the job runs), and
/// the inviter's stage rewards and the level-2 reward are paid in the same transaction. A record
/// no longer pending (reversed, flagged, decided) is left alone; one whose invitee left without
/// the leave being seen is reversed; one whose hold is not over yet runs again at its end.
pub async fn confirm_job(ctx: &JobContext, job: &Claimed) -> Outcome {
    let Ok(p) = serde_json::from_value::<ConfirmPayload>(job.job.payload.clone()) else {
        return Outcome::Dead { error: "the payload names no record".into() };
    };
    match confirm(ctx, p.record_id).await {
        Ok(o) => o,
        Err(e) => Outcome::Retry { error: e.to_string(), after: None },
    }
}

async fn confirm(ctx: &JobContext, id: i64) -> sqlx::Result<Outcome> {
    let mut tx = ctx.db.begin().await?;
    let Some(r) = db::lock_record(&mut tx, id).await? else { return Ok(Outcome::Done) };
    if r.state != InviteState::Pending {
        return Ok(Outcome::Done);
    }
    if r.hold_until > Utc::now() {
        return Ok(Outcome::Later { at: r.hold_until });
    }
    let in_group = match r.group_id {
        Some(g) => db::still_member(&mut tx, r.invitee_member_id, g).await?,
        None => true,
    };
    if !in_group {
        db::set_state(&mut tx, id, &[InviteState::Pending], InviteState::Reversed, Some(InviteReason::Left), None)
            .await?;
    } else if db::confirm(&mut tx, id).await? {
        pay_confirmed(&mut tx, &ctx.config, &r).await?;
    }
    tx.commit().await?;
    Ok(Outcome::Done)
}

/// What a record's confirmation pays: the inviter's stages now reached, and the level-2 points
/// to the inviter's inviter.
async fn pay_confirmed(conn: &mut PgConnection, config: &crate::Config, r: &RecordRow) -> sqlx::Result<()> {
    let Some(c) = db::get(conn, r.campaign_id, None).await? else { return Ok(()) };
    settle_stages(conn, Some(config), &c, r.inviter_member_id, r.group_id).await?;
    if let Some(l2) = r.level2_member_id.filter(|_| c.level2_points > 0) {
        if let Some(w) = db::insert_reward(conn, c.id, l2, 2, r.invitee_member_id, c.level2_points, None).await? {
            let key = IdempotencyKey::invite_reward(c.id, l2, 2, w.stage, w.round);
            let reference = format!("campaign:{}:level2:{}", c.id, r.invitee_member_id);
            let entry = credit(conn, l2, w.points, &reference, &key).await?;
            if let Some(e) = entry {
                db::set_reward_entry(conn, w.id, e).await?;
            }
        }
    }
    Ok(())
}

/// A confirmed record stopped counting (reversed or rejected): the inviter's stages are settled
/// again (rewards no longer reached are taken back) and its level-2 reward is taken back.
async fn undo_confirmed(conn: &mut PgConnection, r: &RecordRow) -> sqlx::Result<()> {
    let Some(c) = db::get(conn, r.campaign_id, None).await? else { return Ok(()) };
    settle_stages(conn, None, &c, r.inviter_member_id, None).await?;
    if let Some(l2) = r.level2_member_id {
        for w in db::active_rewards(conn, c.id, l2, 2).await? {
            if w.stage == r.invitee_member_id {
                take_back(conn, l2, &w, c.id).await?;
            }
        }
    }
    Ok(())
}

/// Makes a member's standing stage rewards in a campaign match their confirmed invites: each
/// stage reached and not paid is paid (and its tag given, and the member told through the
/// group's bot when `config` is given); each paid stage no longer reached is taken back.
/// Serialised per (campaign, member).
async fn settle_stages(
    conn: &mut PgConnection,
    config: Option<&crate::Config>,
    c: &CampaignRow,
    member: i64,
    group: Option<i64>,
) -> sqlx::Result<()> {
    db::lock_inviter(conn, c.id, member).await?;
    let confirmed = db::confirmed_count(conn, c.id, member).await?;
    let paid = db::active_rewards(conn, c.id, member, 1).await?;
    for w in paid.iter().filter(|w| w.stage > confirmed) {
        take_back(conn, member, w, c.id).await?;
    }
    for s in invite::reached(&c.stages.0, confirmed) {
        let Some(w) = db::insert_reward(conn, c.id, member, 1, s.invites, s.points, s.tag.as_deref()).await? else {
            continue;
        };
        if s.points > 0 {
            let key = IdempotencyKey::invite_reward(c.id, member, 1, w.stage, w.round);
            let reference = format!("campaign:{}:stage:{}", c.id, s.invites);
            if let Some(e) = credit(conn, member, s.points, &reference, &key).await? {
                db::set_reward_entry(conn, w.id, e).await?;
            }
        }
        if let Some(tag) = &s.tag {
            db::add_tag(conn, member, tag).await?;
        }
        if let (Some(config), Some(group)) = (config, group) {
            tell_stage(conn, config, c, member, group, s, confirmed).await?;
        }
    }
    Ok(())
}

/// A credit to the ledger; the entry's id (None: the key was used before and nothing new).
async fn credit(
    conn: &mut PgConnection,
    member: i64,
    points: i64,
    reference: &str,
    key: &IdempotencyKey,
) -> sqlx::Result<Option<i64>> {
    let applied = store::points::post(
        conn,
        Posting {
            member_id: member,
            delta: points,
            kind: LedgerKind::Invite,
            reference,
            key,
            request_hash: None,
            operator_id: None,
            note: "",
        },
    )
    .await?;
    Ok(match applied {
        Applied::New { entry, .. } => Some(entry.id),
        _ => None,
    })
}

/// Takes a paid reward back with a compensating entry (never by changing the entry). The
/// balance never goes below zero: what was spent meanwhile cannot be taken, so the entry takes
/// what is there and the rest is kept as the reward's `shortfall`.
async fn take_back(
    conn: &mut PgConnection,
    member: i64,
    w: &store::invites::RewardRow,
    campaign: i64,
) -> sqlx::Result<()> {
    let key = IdempotencyKey::invite_reversal(w.id);
    let reference = format!("campaign:{campaign}:reversal:{}", w.id);
    let mut take = w.points;
    let mut entry = None;
    // Two tries at most: a spend that raced the first is seen (and the account locked) by it.
    for _ in 0..2 {
        if take <= 0 {
            break;
        }
        let mut sp = conn.begin().await?;
        let applied = store::points::post(
            &mut sp,
            Posting {
                member_id: member,
                delta: -take,
                kind: LedgerKind::Invite,
                reference: &reference,
                key: &key,
                request_hash: None,
                operator_id: None,
                note: "",
            },
        )
        .await?;
        match applied {
            Applied::New { entry: e, .. } | Applied::Existing(e) => {
                sp.commit().await?;
                take = -e.delta;
                entry = Some(e.id);
                break;
            }
            Applied::Insufficient { balance } => {
                sp.rollback().await?;
                take = take.min(balance.max(0));
            }
        }
    }
    let taken = if entry.is_some() { take } else { 0 };
    db::reverse_reward(conn, w.id, entry, (w.points - taken).max(0)).await?;
    Ok(())
}

/// Tells a member through the group's bot that they reached a stage (an outbound job).
async fn tell_stage(
    conn: &mut PgConnection,
    config: &crate::Config,
    c: &CampaignRow,
    member: i64,
    group: i64,
    s: &Stage,
    confirmed: i64,
) -> sqlx::Result<()> {
    let Some((bridge, chat)) = db::group_chat(conn, group).await? else { return Ok(()) };
    let Some(user) = db::external_id(conn, member).await? else { return Ok(()) };
    let template =
        if c.reply_stage.is_empty() { Tr(Lang::ZhCn).t("invites.bot.stage") } else { c.reply_stage.as_str() };
    let text = render(
        template,
        &[
            ("campaign", c.name.clone()),
            ("invites", confirmed.to_string()),
            ("points", s.points.to_string()),
            ("stage", s.invites.to_string()),
        ],
    );
    let action =
        Action::Send { chat_id: chat, text, reply_to: None, thread_id: None, mention: true, user_id: Some(user) };
    let key = format!("invite_stage:{}:{member}:{}", c.id, s.invites);
    let origin = format!("campaign:{}", c.id);
    store::jobs::enqueue(conn, &crate::outbound::dispatch::job(config, bridge, action, &origin, Some(key))).await?;
    Ok(())
}

// ---------------------------------------------------------------- review

/// An operator's decision on a record of a campaign in their scope. Approve: a flagged record
/// is credited (confirmed now when its hold is over, else pending with its confirmation job).
/// Reject: a pending, flagged or confirmed record stops counting; a confirmed one's rewards are
/// taken back. Anything else is a 409. `invite.approve` / `invite.reject`.
pub async fn decide(
    conn: &mut PgConnection,
    config: &crate::Config,
    who: &Principal,
    id: i64,
    decision: Decision,
) -> AppResult<Done<RecordRow>> {
    who.require_write()?;
    let r = db::lock_record(conn, id).await?.ok_or(AppError::NotFound)?;
    get(conn, who, r.campaign_id).await?;
    let operator = super::points::operator_of(who);
    let conflict = || AppError::Conflict("this invite record is not waiting for that decision".into());
    match decision {
        Decision::Approve => {
            if r.state != InviteState::Flagged {
                return Err(conflict());
            }
            if r.hold_until <= Utc::now() {
                db::set_state(
                    conn,
                    id,
                    &[InviteState::Flagged],
                    InviteState::Confirmed,
                    Some(InviteReason::Operator),
                    operator,
                )
                .await?;
                pay_confirmed(conn, config, &r).await?;
            } else {
                db::set_state(
                    conn,
                    id,
                    &[InviteState::Flagged],
                    InviteState::Pending,
                    Some(InviteReason::Operator),
                    operator,
                )
                .await?;
                store::jobs::enqueue(conn, &confirm_job_for(id, r.hold_until)).await?;
            }
        }
        Decision::Reject => {
            let from = [InviteState::Pending, InviteState::Flagged, InviteState::Confirmed];
            if !db::set_state(conn, id, &from, InviteState::Rejected, Some(InviteReason::Operator), operator).await? {
                return Err(conflict());
            }
            if r.state == InviteState::Confirmed {
                undo_confirmed(conn, &r).await?;
            }
        }
    }
    let action = match decision {
        Decision::Approve => "invite.approve",
        Decision::Reject => "invite.reject",
    };
    record(conn, who, action, "invite", Some(id), json!({"campaign_id": r.campaign_id, "from": r.state})).await?;
    Ok(Done::plain(db::record(conn, id).await?.ok_or(AppError::NotFound)?))
}

// ---------------------------------------------------------------- a member's progress

/// A member's standing in one campaign.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub campaign_id: i64,
    pub campaign: String,
    pub confirmed: i64,
    /// Pending and flagged (waiting for the hold or a review).
    pub pending: i64,
    /// The next stage not reached yet, and how many more confirmed invites it needs.
    pub next_stage: Option<Stage>,
    pub more_needed: Option<i64>,
    /// The member's personal link (`/l/{slug}?r={code}`), when the campaign has a live code.
    pub link: Option<String>,
    pub poster_template_id: Option<i64>,
    /// The member's own platform links (Telegram, named with their code) for the campaign's
    /// groups they are in; asked for when missing (`app::invite_links`).
    pub platform_links: Vec<super::invite_links::PlatformLink>,
    /// The latest 20 records where the member is the inviter.
    pub records: Vec<RecordRow>,
}

/// A member's invite progress in every active campaign they can invite for (a group of theirs,
/// or records already) — for the member's own page, the bot command and the API. No principal:
/// callers that show it to someone else check their scope first.
pub async fn progress(conn: &mut PgConnection, member: i64, public_base: &str) -> sqlx::Result<Vec<Progress>> {
    let Some(code) = db::code_of(conn, member).await? else { return Ok(vec![]) };
    let mut out = Vec::new();
    for c in db::campaigns_of_member(conn, member).await? {
        let (confirmed, pending) = db::counts_of(conn, c.id, member).await?;
        let next = invite::next_stage(&c.stages.0, confirmed);
        out.push(Progress {
            campaign_id: c.id,
            campaign: c.name.clone(),
            confirmed,
            pending,
            next_stage: next.map(|(s, _)| s.clone()),
            more_needed: next.map(|(_, n)| n),
            link: c.live_code_slug.as_deref().map(|s| invite::personal_link(public_base, s, &code)),
            poster_template_id: c.poster_template_id,
            platform_links: super::invite_links::links_in(conn, member, &c.group_ids).await?,
            records: db::records_of(conn, c.id, member, 20).await?,
        });
    }
    Ok(out)
}

/// The bot's answer to `邀请` / `/invite`: the text, and the addresses of the member's posters
/// (one per campaign with a poster template and a live code) to send with it as pictures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandAnswer {
    pub text: String,
    pub posters: Vec<String>,
}

/// The bot's answer to `邀请` / `/invite` from `member`: their progress in each campaign and
/// their personal link, in `lang` (a campaign's own progress text when it has one), and their
/// poster of each campaign that has a template: a public poster link (`/p/{token}`) whose QR is
/// the member's personal link (`member_poster`). `name` is escaped for the platform already.
/// Asked in `group`: the member's platform link for that group once it is made, else the
/// live-code link (and the platform link is asked for).
pub async fn command_reply(
    conn: &mut PgConnection,
    pages: &super::member_page::MemberPages,
    member: i64,
    name: &str,
    public_base: &str,
    lang: Lang,
    group: Option<i64>,
) -> sqlx::Result<CommandAnswer> {
    let tr = Tr(lang);
    let all = progress(conn, member, public_base).await?;
    if all.is_empty() {
        return Ok(CommandAnswer {
            text: render(tr.t("invites.bot.none"), &[("name", name.to_string())]),
            posters: vec![],
        });
    }
    let mut lines = Vec::new();
    let mut posters = Vec::new();
    for p in &all {
        let more = match (&p.next_stage, p.more_needed) {
            (Some(s), Some(n)) => {
                render(tr.t("invites.bot.more"), &[("more", n.to_string()), ("points", s.points.to_string())])
            }
            _ => tr.t("invites.bot.all_reached").to_string(),
        };
        let own = p.platform_links.iter().find(|l| Some(l.group_id) == group).and_then(|l| l.link.clone());
        let vars = [
            ("name", name.to_string()),
            ("campaign", p.campaign.clone()),
            ("confirmed", p.confirmed.to_string()),
            ("pending", p.pending.to_string()),
            ("more", more),
            ("link", own.or_else(|| p.link.clone()).unwrap_or_default()),
        ];
        lines.push(render(tr.t("invites.bot.progress"), &vars));
        if let Some(url) = member_poster(conn, pages, member, p).await? {
            posters.push(url);
        }
    }
    Ok(CommandAnswer { text: lines.join("\n\n"), posters })
}

/// The address of a member's poster in a campaign (None without a template or a live code, or
/// when an operator revoked the link): `/p/{token}`, the token derived from the member page's
/// key and (campaign, template, member), so that asking again (or a retried delivery) gives the
/// same address; only its hash is stored, like every poster link's. The link's placeholders
/// (`{campaign}`, `{invites}`) are brought up to date on each ask.
async fn member_poster(
    conn: &mut PgConnection,
    pages: &super::member_page::MemberPages,
    member: i64,
    p: &Progress,
) -> sqlx::Result<Option<String>> {
    let (Some(template), Some(link)) = (p.poster_template_id, p.link.as_deref()) else { return Ok(None) };
    let token = poster_token(pages.key(conn).await?, p.campaign_id, template, member);
    let vars = std::collections::BTreeMap::from([
        ("campaign".to_string(), p.campaign.clone()),
        ("invites".to_string(), p.confirmed.to_string()),
    ]);
    let hash = crate::auth::token_hash(&token);
    Ok(db::member_poster_link(conn, &hash, template, member, link, &vars)
        .await?
        .then(|| pages.absolute(&format!("/p/{token}"))))
}

/// A member's poster token in a campaign: HMAC-SHA256 under `key` (the member page's key, in a
/// domain of its own) of (campaign, template, member), 43 characters of URL-safe base64 like
/// every `/p/` token.
fn poster_token(key: &[u8], campaign: i64, template: i64, member: i64) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(format!("invite_poster:{campaign}:{template}:{member}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::poster_token;

    #[test]
    fn a_poster_token_is_stable_per_campaign_template_and_member_and_shaped_like_a_link_token() {
        let t = poster_token(b"key", 1, 2, 3);
        assert_eq!(t, poster_token(b"key", 1, 2, 3));
        assert_eq!(t.len(), 43);
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        for other in [poster_token(b"key", 1, 2, 4), poster_token(b"key", 1, 5, 3), poster_token(b"yek", 1, 2, 3)] {
            assert_ne!(t, other);
        }
    }
}

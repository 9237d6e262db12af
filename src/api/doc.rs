//! What the OpenAPI document says beyond the handlers' annotations, so that it describes the API
//! as it behaves: every error is `application/problem+json`; every operation can answer 400
//! (a query or path value that does not parse, a NUL character) and 401, every write 403, every
//! operation with a body 413, 415 and 422, every operation on a path with an id 404; creating and
//! patching have their own schemas, with the required fields, enums, ranges and patterns that
//! the domain parsing enforces (`domain::group`, `domain::member`, `domain::live_code`).

use serde_json::{json, Map, Value};

use crate::domain::group::GroupStatus;
use crate::domain::live_code::{FallbackKind, LiveCodeStatus, MAX_SCAN_LIMIT};
use crate::domain::member::ROLES;
use crate::domain::points::{LedgerKind, MAX_ADJUSTMENT, MAX_CALLER_KEY, MAX_NOTE, MAX_REFERENCE};
use crate::domain::Platform;

const PROBLEM: &str = "#/components/schemas/Problem";
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn problem(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": PROBLEM}}}})
}

/// Constraints per property of a request body, as the domain parsing checks them.
fn constraints(schema: &str) -> Value {
    let tags = json!({"maxItems": 20, "items": {"type": "string", "minLength": 1, "maxLength": 32},
        "description": "at most 20 tags of at most 32 characters; `,` `;` `|` also separate tags"});
    match schema {
        "GroupBody" => json!({
            "name": {"minLength": 1, "maxLength": 120},
            "platform": {"enum": Platform::NAMES},
            "join_url": {"maxLength": 2048, "pattern": "^https?://[^/?#\\s]+", "description": "an http(s) invite link; empty clears it"},
            "capacity": {"minimum": 1, "maximum": 1_000_000},
            "member_count": {"description": "0 to 1000000, as a number or a string; null or empty clears it"},
            "timezone": {"description": "an IANA time zone such as Asia/Shanghai (default)"},
            "external_chat_id": {"maxLength": 128, "description": "the chat's id on its platform; empty clears it"},
            "status": {"enum": GroupStatus::NAMES},
            "tags": tags,
            "notes": {"maxLength": 4000},
            "qr_expires_at": {"description": "RFC 3339, or YYYY-MM-DDTHH:MM in the group's time zone"},
        }),
        "MemberBody" => json!({
            "platform": {"enum": Platform::NAMES},
            "external_user_id": {"minLength": 1, "maxLength": 128},
            "display_name": {"minLength": 1, "maxLength": 120},
            "tags": tags,
            "notes": {"maxLength": 4000},
            "group_id": {"minimum": 1, "description": "a group the caller may use; unknown: 422 on group_id"},
            "role": {"enum": ROLES},
        }),
        "LiveCodeBody" => json!({
            "name": {"minLength": 1, "maxLength": 120},
            "slug": {"pattern": "^[A-Za-z0-9_-]{3,64}$", "description": "default: random"},
            "status": {"enum": LiveCodeStatus::NAMES},
            "mode": {"enum": ["fill", "balance"]},
            "sticky_days": {"minimum": 0, "maximum": 365},
            "starts_at": {"description": "RFC 3339, or YYYY-MM-DDTHH:MM in the statistics time zone"},
            "ends_at": {"description": "RFC 3339, or YYYY-MM-DDTHH:MM; after starts_at"},
            "fallback_kind": {"enum": FallbackKind::NAMES, "description": "`image` needs an image uploaded in the admin UI"},
            "fallback_url": {"maxLength": 2048, "pattern": "^https?://[^/?#\\s]+", "description": "required when fallback_kind is url"},
            "fallback_message": {"maxLength": 500, "description": "also the landing page's text when every group is full"},
            "page_lang": {"enum": ["zh-CN", "en", ""], "description": "the landing pages' language; empty: the visitor's browser decides"},
            "page_title": {"maxLength": 60, "description": "landing page title, also the link preview's; empty: the code's name"},
            "page_text": {"maxLength": 300},
            "paused_text": {"maxLength": 300, "description": "shown while the code is paused or not started; empty: the default words"},
            "ended_text": {"maxLength": 300, "description": "shown once the code has ended; empty: the default words"},
        }),
        "PointsBody" => json!({
            "delta": {"minimum": -MAX_ADJUSTMENT, "maximum": MAX_ADJUSTMENT, "not": {"const": 0}},
            "kind": {"enum": LedgerKind::ADJUSTABLE, "description": "`api` (default) or `adjustment`, which needs a note (the reason)"},
            "reference": {"maxLength": MAX_REFERENCE},
            "note": {"maxLength": MAX_NOTE},
            "idempotency_key": {"minLength": 1, "maxLength": MAX_CALLER_KEY},
        }),
        "TargetBody" => json!({
            "group_id": {"minimum": 1, "description": "a group the caller may use; unknown: 422 on group_id"},
            "scan_limit": {"minimum": 0, "maximum": MAX_SCAN_LIMIT},
        }),
        "TargetPatch" => json!({
            "scan_limit": {"minimum": 0, "maximum": MAX_SCAN_LIMIT},
            "position": {"description": "1-based; clamped to the targets' count"},
        }),
        "ChannelBody" => json!({
            "key": {"pattern": "^[a-z0-9][a-z0-9_-]{0,47}$"},
            "name": {"minLength": 1, "maxLength": 120},
        }),
        "ScanBody" => json!({"channel": {"maxLength": 48}, "ref": {"maxLength": 64}, "visitor": {"maxLength": 64}}),
        _ => json!({}),
    }
}

/// `base` with the constraints of `name` merged into its properties and `required` set.
fn constrained(base: &Value, name: &str, required: &[&str]) -> Value {
    let mut s = base.clone();
    if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
        if let Value::Object(extra) = constraints(name) {
            for (field, c) in extra {
                if let (Some(Value::Object(p)), Value::Object(c)) = (props.get_mut(&field), c) {
                    p.extend(c);
                }
            }
        }
    }
    if !required.is_empty() {
        s["required"] = json!(required);
    } else if let Some(o) = s.as_object_mut() {
        o.remove("required");
    }
    s
}

/// Completes the generated document (see the module's comment).
pub fn refine(doc: &mut Value) {
    let schemas = doc.pointer("/components/schemas").cloned().unwrap_or_default();
    let mut add: Map<String, Value> = Map::new();
    // Create and patch bodies: one struct in the code (a patch overlays the current values), two
    // schemas in the document.
    for (body, create, patch, required) in [
        ("GroupBody", "GroupCreate", "GroupPatch", &["name"][..]),
        ("MemberBody", "MemberCreate", "MemberPatch", &["platform", "external_user_id", "display_name"][..]),
        ("LiveCodeBody", "LiveCodeCreate", "LiveCodePatch", &["name"][..]),
    ] {
        if let Some(base) = schemas.get(body) {
            add.insert(create.into(), constrained(base, body, required));
            let mut p = constrained(base, body, &[]);
            if body == "MemberBody" {
                if let Some(props) = p.get_mut("properties").and_then(Value::as_object_mut) {
                    props.remove("group_id");
                    props.remove("role");
                }
            }
            add.insert(patch.into(), p);
        }
    }
    for body in ["PointsBody", "TargetBody", "TargetPatch", "ChannelBody", "ScanBody"] {
        if let Some(base) = schemas.get(body) {
            let required: Vec<String> = base["required"]
                .as_array()
                .map(|r| r.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let required: Vec<&str> = required.iter().map(String::as_str).collect();
            add.insert(body.into(), constrained(base, body, &required));
        }
    }
    if let Some(s) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        for old in ["GroupBody", "MemberBody", "LiveCodeBody"] {
            s.remove(old);
        }
        s.extend(add);
    }

    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        let is_api = path.starts_with("/api/");
        let has_path_param = path.contains('{');
        for method in METHODS {
            let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) else { continue };
            // Which schema the body uses, now split in two.
            if let Some(Value::String(r)) =
                op.get_mut("requestBody").and_then(|b| b.pointer_mut("/content/application~1json/schema/$ref"))
            {
                for (body, create, patch) in [
                    ("GroupBody", "GroupCreate", "GroupPatch"),
                    ("MemberBody", "MemberCreate", "MemberPatch"),
                    ("LiveCodeBody", "LiveCodeCreate", "LiveCodePatch"),
                ] {
                    if r.ends_with(&format!("/{body}")) {
                        *r = format!("#/components/schemas/{}", if method == "post" { create } else { patch });
                    }
                }
            }
            let has_body = op.contains_key("requestBody");
            let responses = op.entry("responses").or_insert_with(|| json!({}));
            let Some(responses) = responses.as_object_mut() else { continue };
            // Problem documents are application/problem+json.
            for r in responses.values_mut() {
                if let Some(content) = r.get_mut("content").and_then(Value::as_object_mut) {
                    let is_problem =
                        content.get("application/json").and_then(|c| c.pointer("/schema/$ref")).and_then(Value::as_str)
                            == Some(PROBLEM);
                    if is_problem {
                        if let Some(c) = content.remove("application/json") {
                            content.insert("application/problem+json".into(), c);
                        }
                    }
                }
            }
            let mut standard: Vec<(&str, &str)> = vec![(
                "400",
                "malformed: a query or path value that does not parse, a NUL character in the path, malformed JSON",
            )];
            if is_api {
                standard.push(("401", "no valid bearer token"));
                if method != "get" {
                    standard.push(("403", "the token may not write, or not to this resource"));
                }
            }
            if has_path_param {
                standard.push(("404", "no such resource (in the caller's scope)"));
            }
            if has_body {
                standard.push(("413", "the body is over the size limit"));
            }
            // A scan's optional body and a webhook's signed bytes are read whatever their type.
            if has_body && is_api && !path.ends_with("/scans") {
                standard.push(("415", "the body is not application/json"));
            }
            if has_body || is_api {
                standard.push((
                    "422",
                    "invalid fields (listed in `errors`, with the allowed values of enum fields) or a NUL character in a query parameter",
                ));
            }
            for (status, description) in standard {
                responses.entry(status).or_insert_with(|| problem(description));
            }
            for r in responses.values_mut() {
                if r.get("description").and_then(Value::as_str).is_none() {
                    r["description"] = json!("");
                }
            }
        }
    }
    // An API scan's body is optional.
    if let Some(b) = doc.pointer_mut("/paths/~1api~1v1~1live-codes~1{slug}~1scans/post/requestBody") {
        b["required"] = json!(false);
    }
    if let Some(r) =
        doc.pointer_mut("/paths/~1api~1v1~1live-codes~1{slug}~1scans/post/responses").and_then(Value::as_object_mut)
    {
        r.entry("409").or_insert_with(|| problem("the live code is paused or outside its active window"));
    }
    // The idempotency key of a points change, in a header (or the body's idempotency_key).
    if let Some(params) =
        doc.pointer_mut("/paths/~1api~1v1~1members~1{id}~1points/post/parameters").and_then(Value::as_array_mut)
    {
        params.push(json!({"name": "Idempotency-Key", "in": "header", "required": false,
            "description": "makes the request apply once; required here or as the body's idempotency_key (1 to 200 characters)",
            "schema": {"type": "string", "minLength": 1, "maxLength": 200}}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_become_problem_json_and_every_operation_gets_the_common_errors() {
        let mut doc = json!({
            "paths": {"/api/v1/things/{id}": {"patch": {
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/GroupBody"}}}},
                "responses": {"404": {"description": "", "content": {"application/json": {"schema": {"$ref": PROBLEM}}}}}
            }}},
            "components": {"schemas": {"GroupBody": {"type": "object", "properties": {"name": {"type": ["string", "null"]}, "platform": {"type": ["string", "null"]}}}}}
        });
        refine(&mut doc);
        let op = &doc["paths"]["/api/v1/things/{id}"]["patch"];
        for s in ["400", "401", "403", "404", "413", "415", "422"] {
            assert!(op["responses"][s]["content"]["application/problem+json"].is_object(), "{s}: {op}");
            assert!(op["responses"][s]["content"]["application/json"].is_null(), "{s}");
        }
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/GroupPatch"
        );
        let create = &doc["components"]["schemas"]["GroupCreate"];
        assert_eq!(create["required"], json!(["name"]));
        assert_eq!(create["properties"]["platform"]["enum"], json!(Platform::NAMES));
        assert_eq!(create["properties"]["name"]["maxLength"], 120);
        assert!(doc["components"]["schemas"]["GroupPatch"]["required"].is_null());
    }
}

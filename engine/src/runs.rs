//! Reads of workflow runs: run detail (`GET /workflows/run/:id`) and the
//! run log (`GET /workflows/logs`), scoped to one app.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::apps::LoadedApp;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::model::{WorkflowRunRow, WorkflowVersionRow};
use crate::projection::{secs, trees};
use crate::workflow::pool::py_json;

/// Filters and page of `GET /workflows/logs`.
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    pub keyword: Option<String>,
    pub status: Option<String>,
    pub page: usize,
    pub limit: usize,
    /// Unix microseconds.
    pub created_before: Option<i64>,
    pub created_after: Option<i64>,
    /// The raw `user` string.
    pub session_id: Option<String>,
}

/// Parses an ISO-8601 date-time (`2025-01-16T12:00:00Z`, offsets, or no zone = UTC) to Unix microseconds.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1000) as i64);
    }
    // Without a zone, or with a space instead of `T`: read as UTC.
    let normalised = s.replacen(' ', "T", 1);
    let with_seconds = if normalised.len() == 16 { format!("{normalised}:00") } else { normalised };
    OffsetDateTime::parse(&format!("{with_seconds}Z"), &Rfc3339).ok().map(|t| (t.unix_timestamp_nanos() / 1000) as i64)
}

/// `2025-01-16 12:00:00.000000` (a version's label in the run log).
fn version_label(micros: i64) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1000) else { return String::new() };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

impl Engine {
    fn run_row(&self, app: &LoadedApp, run_id: Uuid) -> Result<WorkflowRunRow> {
        self.store()
            .get_json::<WorkflowRunRow>(trees::WORKFLOW_RUNS, run_id.as_bytes())?
            .filter(|r| r.app_id == app.id())
            .ok_or_else(|| EngineError::NotFound("Workflow run not found.".into()))
    }

    /// `GET /workflows/run/:id`.
    pub fn workflow_run_detail(&self, app: &LoadedApp, run_id: Uuid) -> Result<Value> {
        let r = self.run_row(app, run_id)?;
        let outputs = if r.outputs.is_object() { r.outputs.clone() } else { json!({}) };
        Ok(json!({
            "id": r.id.to_string(),
            "workflow_id": r.workflow_id.map(|w| w.to_string()),
            "status": r.status,
            "inputs": py_json(&r.inputs),
            "outputs": outputs,
            "error": r.error,
            "total_steps": r.total_steps,
            "total_tokens": r.total_tokens,
            "created_at": secs(r.created_at),
            "finished_at": r.finished_at.map(secs),
            "elapsed_time": r.elapsed_time,
        }))
    }

    /// `GET /workflows/logs`: newest first, filtered, one page.
    pub fn workflow_logs(&self, app: &LoadedApp, q: &LogQuery) -> Result<Value> {
        let versions: Vec<WorkflowVersionRow> = self
            .store()
            .scan(trees::WORKFLOWS, app.id().as_bytes(), None, usize::MAX, false)?
            .into_iter()
            .filter_map(|(_, v)| ferrify_store::codec::from_json(&v).ok())
            .collect();
        let keyword = q.keyword.as_ref().map(|k| k.to_lowercase()).filter(|k| !k.is_empty());
        let mut matched = Vec::new();
        for (k, _) in self.store().scan(trees::APP_RUNS, app.id().as_bytes(), None, usize::MAX, true)? {
            let Ok(id) = Uuid::from_slice(&k[k.len().saturating_sub(16)..]) else { continue };
            let Some(r) = self.store().get_json::<WorkflowRunRow>(trees::WORKFLOW_RUNS, id.as_bytes())? else {
                continue;
            };
            if q.status.as_ref().is_some_and(|s| *s != r.status)
                || q.created_before.is_some_and(|t| r.created_at >= t)
                || q.created_after.is_some_and(|t| r.created_at <= t)
                || q.session_id.as_ref().is_some_and(|s| *s != r.user)
            {
                continue;
            }
            if let Some(k) = &keyword {
                // The user's inputs, not the `sys.*` ids (a UUID may spell any hex word).
                let inputs: serde_json::Map<String, Value> = r
                    .inputs
                    .as_object()
                    .map(|m| {
                        m.iter().filter(|(k, _)| !k.starts_with("sys.")).map(|(k, v)| (k.clone(), v.clone())).collect()
                    })
                    .unwrap_or_default();
                let text = format!("{} {} {}", Value::Object(inputs), r.outputs, r.error.clone().unwrap_or_default())
                    .to_lowercase();
                if !text.contains(k.as_str()) {
                    continue;
                }
            }
            matched.push(r);
        }
        let total = matched.len();
        let start = (q.page.max(1) - 1).saturating_mul(q.limit);
        let data: Vec<Value> = matched
            .iter()
            .skip(start)
            .take(q.limit)
            .map(|r| {
                let version = versions
                    .iter()
                    .find(|v| Some(v.id) == r.workflow_id)
                    .map(|v| version_label(v.created_at))
                    .unwrap_or_default();
                json!({
                    "id": r.id.to_string(),
                    "workflow_run": {
                        "id": r.id.to_string(),
                        "version": version,
                        "status": r.status,
                        "error": r.error,
                        "elapsed_time": r.elapsed_time,
                        "total_tokens": r.total_tokens,
                        "total_steps": r.total_steps,
                        "created_at": secs(r.created_at),
                        "finished_at": r.finished_at.map(secs),
                        "exceptions_count": r.exceptions_count,
                        "triggered_from": "app-run",
                    },
                    "created_from": "service-api",
                    "created_by_role": "end_user",
                    "created_by_account": null,
                    "created_by_end_user": {
                        "id": r.end_user_id.to_string(),
                        "type": "service-api",
                        "is_anonymous": false,
                        "session_id": r.user,
                    },
                    "created_at": secs(r.created_at),
                    "details": null,
                })
            })
            .collect();
        Ok(json!({
            "page": q.page.max(1),
            "limit": q.limit,
            "total": total,
            "has_more": start + data.len() < total,
            "data": data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_datetime("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_datetime("1970-01-01 00:01"), Some(60_000_000));
        assert_eq!(parse_datetime("nope"), None);
        assert_eq!(version_label(1_705_406_400_000_000), "2024-01-16 12:00:00.000000");
    }
}

//! The signed file links handed out as `source_url` and `url`:
//! `GET /files/:file_id/file-preview?timestamp&nonce&sign[&as_attachment]`,
//! served at the server's root as Dify serves it, without an API key (the
//! signature is the access; see `ferrify_engine::files::signed`).

use std::collections::HashMap;

use warp::Filter;

use super::files::serve_file;
use super::{respond, with_state, Routes};
use crate::error::ApiError;
use crate::request::{q, query};
use crate::State;

/// `GET /files/:file_id/file-preview?timestamp&nonce&sign[&as_attachment]`,
/// served at the root as Dify serves it.
pub fn routes(state: State) -> Routes {
    warp::path!("files" / String / "file-preview")
        .and(warp::get())
        .and(with_state(state))
        .and(query())
        .and(warp::header::optional::<String>("range"))
        .and_then(|id: String, state: State, query: HashMap<String, String>, range: Option<String>| async move {
            respond(signed_preview(state, id, query, range).await)
        })
        .boxed()
}

async fn signed_preview(
    state: State,
    id: String,
    query: HashMap<String, String>,
    range: Option<String>,
) -> Result<warp::reply::Response, ApiError> {
    let arg = |name: &str| q(&query, name).ok_or_else(|| ApiError::invalid_param(format!("{name} is required")));
    let (timestamp, nonce, sign) = (arg("timestamp")?, arg("nonce")?, arg("sign")?);
    let file = state.engine.signed_file(id.trim(), timestamp, nonce, sign)?;
    serve_file(&state, file, &query, range).await
}

//! Authentication: app API keys for the Service API (§1.2 of the spec), the
//! admin token for the console API.
//!
//! Keys are stored only as SHA-256 hashes (the engine's `api_keys` read
//! model is keyed by them); a presented key is hashed, looked up, and the
//! stored hash compared with it in constant time. Neither keys nor the admin
//! token are ever logged: errors name the failure, not the value. The
//! per-key rate limit is taken here, once a key is known.

use std::sync::Arc;

use ferrify_engine::apps::LoadedApp;
use uuid::Uuid;
use warp::Filter;

use crate::error::ApiError;
use crate::State;

/// Who is calling: the app of the key, and which key.
#[derive(Clone, Debug)]
pub struct Caller {
    pub app: Arc<LoadedApp>,
    pub key_id: Uuid,
}

/// The app of the request's `Authorization: Bearer app-…` key.
pub fn app_key(state: State) -> impl Filter<Extract = (Arc<LoadedApp>,), Error = warp::Rejection> + Clone {
    caller(state).map(|c: Caller| c.app)
}

/// The app and key of the request's `Authorization: Bearer app-…` key.
pub fn caller(state: State) -> impl Filter<Extract = (Caller,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("authorization").and_then(move |header: Option<String>| {
        let state = state.clone();
        async move {
            let caller = authenticate(&state, header).map_err(ApiError::reject)?;
            if let Some(rate) = state.limits.rate_limit {
                state.rate.check(rate, caller.key_id).map_err(ApiError::reject)?;
            }
            Ok::<_, warp::Rejection>(caller)
        }
    })
}

fn authenticate(state: &State, header: Option<String>) -> Result<Caller, ApiError> {
    let header = header.unwrap_or_default();
    let Some((scheme, token)) = header.trim().split_once(' ') else {
        return Err(ApiError::unauthorized("Authorization header must be provided and start with 'Bearer'"));
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized("Authorization scheme must be 'Bearer'"));
    }
    let token = token.trim();
    if !token.starts_with("app-") {
        return Err(ApiError::unauthorized("Access token is invalid"));
    }
    let hash = ferrify_engine::apps::hash_token(token);
    match state.engine.authenticate_key(token) {
        Ok(Some((key, app))) if same_secret(key.token_hash.as_bytes(), hash.as_bytes()) => {
            Ok(Caller { app, key_id: key.id })
        }
        Ok(_) => Err(ApiError::unauthorized("Access token is invalid")),
        Err(e) => Err(e.into()),
    }
}

/// Constant-time comparison of two secrets.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Requires `Authorization: Bearer <admin token>`; without a configured token the console API is closed.
pub fn admin(state: State) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and_then(move |header: Option<String>| {
            let state = state.clone();
            async move {
                let Some(expected) = state.admin_token.as_deref() else {
                    return Err(ApiError::new(
                        403,
                        "forbidden",
                        "The console API is closed: start ferrify with --admin-token.",
                    )
                    .reject());
                };
                let given = header
                    .as_deref()
                    .and_then(|h| h.trim().split_once(' '))
                    .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t.trim());
                match given {
                    Some(t) if same_secret(t.as_bytes(), expected.as_bytes()) => Ok(()),
                    _ => Err(ApiError::unauthorized("Invalid admin token.").reject()),
                }
            }
        })
        .untuple_one()
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare() {
        assert!(super::same_secret(b"abc", b"abc"));
        assert!(!super::same_secret(b"abc", b"abd"));
        assert!(!super::same_secret(b"abc", b"ab"));
    }
}

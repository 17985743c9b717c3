//! `GET /health`: liveness.

use warp::Filter;

pub fn route() -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    warp::path!("health").and(warp::get()).map(|| warp::reply::json(&serde_json::json!({"status": "ok"})))
}

//! `GET /openapi.json`: the Service API's OpenAPI document ([`crate::openapi`]).

use std::sync::OnceLock;

use warp::{Filter, Reply};

pub fn routes() -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("openapi.json").and(warp::get()).map(|| {
        static DOC: OnceLock<String> = OnceLock::new();
        let body = DOC.get_or_init(|| crate::openapi::document().to_string());
        warp::reply::with_header(body.clone(), "content-type", "application/json").into_response()
    })
}

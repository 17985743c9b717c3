//! `GET /openapi.json`: the Service API's OpenAPI document ([`crate::openapi`]).

use super::Routes;
use std::sync::OnceLock;

use warp::{Filter, Reply};

pub fn routes() -> Routes {
    warp::path!("openapi.json")
        .and(warp::get())
        .map(|| {
            static DOC: OnceLock<String> = OnceLock::new();
            let body = DOC.get_or_init(|| crate::openapi::document().to_string());
            warp::reply::with_header(body.clone(), "content-type", "application/json").into_response()
        })
        .boxed()
}

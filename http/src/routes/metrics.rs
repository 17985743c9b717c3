//! `GET /metrics`: Prometheus text.

use warp::Filter;

use crate::State;

pub fn route(state: State) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    warp::path!("metrics").and(warp::get()).map(move || {
        let body = state.metrics.render(&state.engine.store().stats());
        warp::reply::with_header(body, "content-type", "text/plain; version=0.0.4; charset=utf-8")
    })
}

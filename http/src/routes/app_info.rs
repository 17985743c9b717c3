//! `GET /info`, `/parameters`, `/meta`, `/site`, and `GET /` (no key).

use std::sync::Arc;

use ferrify_engine::app::form::to_parameters;
use ferrify_engine::app::AppSpec;
use ferrify_engine::apps::LoadedApp;
use ferrify_engine::files::FileSettings;
use serde_json::{json, Value};
use warp::{Filter, Reply};

use super::{any_of, respond, with_state, Routes};
use crate::auth::app_key;
use crate::State;

pub fn routes(state: State) -> Routes {
    let welcome = warp::path::end().and(warp::get()).map(|| {
        warp::reply::json(
            &json!({"welcome": "Dify OpenAPI", "api_version": "v1", "server_version": env!("CARGO_PKG_VERSION")}),
        )
        .into_response()
    });
    let info =
        warp::path!("info").and(warp::get()).and(app_key(state.clone())).and_then(|app: Arc<LoadedApp>| async move {
            respond(Ok(warp::reply::json(&json!({
                "name": app.spec.name,
                "description": app.spec.description,
                "tags": [],
                "mode": app.mode().as_str(),
                "author_name": "",
            }))
            .into_response()))
        });
    let parameters =
        warp::path!("parameters").and(warp::get()).and(app_key(state.clone())).and(with_state(state.clone())).and_then(
            |app: Arc<LoadedApp>, state: State| async move {
                let spec = state.engine.effective_spec(&app);
                respond(Ok(warp::reply::json(&parameters(&spec, state.engine.file_settings())).into_response()))
            },
        );
    let meta =
        warp::path!("meta").and(warp::get()).and(app_key(state.clone())).and_then(|_app: Arc<LoadedApp>| async move {
            respond(Ok(warp::reply::json(&json!({"tool_icons": {}})).into_response()))
        });
    let site = warp::path!("site").and(warp::get()).and(app_key(state)).and_then(|app: Arc<LoadedApp>| async move {
        let s = &app.spec;
        respond(Ok(warp::reply::json(&json!({
            "title": s.name,
            "chat_color_theme": null,
            "chat_color_theme_inverted": false,
            "icon_type": s.icon_type,
            "icon": s.icon,
            "icon_background": s.icon_background,
            "icon_url": null,
            "description": s.description,
            "copyright": null,
            "privacy_policy": null,
            "input_placeholder": null,
            "custom_disclaimer": "",
            "default_language": "en-US",
            "show_workflow_steps": true,
            "use_icon_as_answer_icon": s.use_icon_as_answer_icon,
        }))
        .into_response()))
    });
    any_of([welcome.boxed(), info.boxed(), parameters.boxed(), meta.boxed(), site.boxed()])
}

/// `GET /parameters` (§2.25): the app's front-end configuration, with Dify's defaults.
pub fn parameters(spec: &AppSpec, files: &FileSettings) -> Value {
    let mb = |bytes: u64| bytes / (1024 * 1024);
    let features = &spec.features;
    let suggested = features.get("suggested_questions").filter(|v| v.is_array()).cloned().unwrap_or(json!([]));
    let file_upload = features.get("file_upload").filter(|v| v.is_object()).cloned().unwrap_or_else(|| {
        json!({"image": {"enabled": false, "number_limits": 3, "detail": "high", "transfer_methods": ["remote_url", "local_file"]}})
    });
    let tts = match features.get("text_to_speech") {
        Some(v) if v.is_object() => v.clone(),
        _ => json!({"enabled": false, "voice": "", "language": "", "autoPlay": "disabled"}),
    };
    let swa = match features.get("sensitive_word_avoidance") {
        Some(v) if v.is_object() => v.clone(),
        _ => json!({"enabled": false, "type": "", "configs": []}),
    };
    json!({
        "opening_statement": spec.opening_statement(),
        "suggested_questions": suggested,
        "suggested_questions_after_answer": spec.feature("suggested_questions_after_answer"),
        "speech_to_text": spec.feature("speech_to_text"),
        "text_to_speech": tts,
        "retriever_resource": spec.feature("retriever_resource"),
        "annotation_reply": spec.feature("annotation_reply"),
        "more_like_this": spec.feature("more_like_this"),
        "sensitive_word_avoidance": swa,
        "user_input_form": to_parameters(&spec.form),
        "file_upload": file_upload,
        "system_parameters": {
            "image_file_size_limit": mb(files.image_limit),
            "video_file_size_limit": mb(files.video_limit),
            "audio_file_size_limit": mb(files.audio_limit),
            "file_size_limit": mb(files.file_limit),
            "workflow_file_upload_limit": 10,
        },
    })
}

//! `routes/audio.rs`: speech to text, text to speech.

use serde_json::json;

use super::{json_body, responses, schema, Paths};

pub fn paths(p: &mut Paths) {
    p.add(
        "post",
        "/audio-to-text",
        json!({
            "operationId": "audioToText",
            "summary": "Transcribe an audio file (the app's speech_to_text must be enabled; at most 30 MB)",
            "requestBody": {
                "required": true,
                "content": {"multipart/form-data": {"schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "The audio, with an audio/<ext> MIME type (mp3, mp4, mpeg, mpga, m4a, wav, webm, amr)."},
                        "user": {"type": "string", "description": "The end user (optional)."},
                    },
                }}},
            },
            "responses": responses(
                &[(200, "The transcription", json!({
                    "type": "object",
                    "required": ["text"],
                    "properties": {"text": {"type": "string"}},
                }))],
                &[400, 401, 413, 415, 429],
            ),
        }),
    );
    let mut r = responses(&[], &[400, 401, 404, 413, 429]);
    r["200"] = json!({
        "description": "The spoken text, streamed as the audio provider sends it (audio/mpeg, or its own type)",
        "content": {"audio/mpeg": {"schema": {"type": "string", "format": "binary"}}},
    });
    p.add(
        "post",
        "/text-to-audio",
        json!({
            "operationId": "textToAudio",
            "summary": "Speak a message's answer or a text (the app's text_to_speech must be enabled)",
            "requestBody": json_body(json!({
                "type": "object",
                "properties": {
                    "message_id": {"type": ["string", "null"], "description": "A message of this user; its answer is spoken (wins over text)."},
                    "text": {"type": ["string", "null"]},
                    "voice": {"type": ["string", "null"], "description": "Default: the app's text_to_speech voice, else [audio] voice."},
                    "user": schema("User"),
                    "streaming": {"type": ["boolean", "null"], "description": "Accepted, no effect: the audio is always streamed."},
                },
            })),
            "responses": r,
        }),
    );
}

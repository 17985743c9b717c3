//! `routes/files.rs`: upload and preview.

use serde_json::json;

use super::{path_param, query_param, responses, Paths};

pub fn paths(p: &mut Paths) {
    p.add(
        "post",
        "/files/upload",
        json!({
            "operationId": "uploadFile",
            "summary": "Upload a file for later use in a request (streamed to storage)",
            "requestBody": {
                "required": true,
                "content": {"multipart/form-data": {
                    "schema": {
                    "type": "object",
                    // Other fields are ignored; a name with control characters breaks the part's header.
                    "propertyNames": {"pattern": "^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f]*$"},
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "Exactly one file part, with a file name and a MIME type."},
                        // A form field is text whatever it looks like: any value is read as the user's name.
                        "user": {"description": "The end user, as text (absent or empty: the shared anonymous user)."},
                    },
                    },
                    // A file part without a Content-Type is refused (415 unsupported_file_type).
                    "encoding": {"file": {"contentType": "application/octet-stream, text/plain, image/png, audio/mpeg, video/mp4"}},
                }},
            },
            "responses": responses(
                &[(201, "The stored file", json!({
                    "type": "object",
                    "required": ["id", "name", "size", "extension", "mime_type", "created_by", "created_at"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "name": {"type": "string"},
                        "size": {"type": "integer"},
                        "extension": {"type": "string"},
                        "mime_type": {"type": "string"},
                        "created_by": {"type": "string"},
                        "created_at": {"type": "integer"},
                        "preview_url": {"type": ["string", "null"]},
                        "source_url": {"type": ["string", "null"]},
                        "original_url": {"type": ["string", "null"]},
                        "user_id": {"type": ["string", "null"]},
                        "tenant_id": {"type": ["string", "null"]},
                        "conversation_id": {"type": ["string", "null"]},
                        "file_key": {"type": ["string", "null"]},
                        "reference": {"type": ["string", "null"]},
                    },
                }))],
                &[400, 401, 413, 415, 429],
            ),
        }),
    );
    let mut r = responses(&[], &[400, 401, 403, 404, 429]);
    r["200"] = json!({
        "description": "The file's bytes (Accept-Ranges: bytes for audio and video)",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    });
    r["206"] = json!({
        "description": "The requested byte range",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    });
    r["416"] = json!({"description": "The range lies outside the file"});
    p.add(
        "get",
        "/files/{file_id}/preview",
        json!({
            "operationId": "previewFile",
            "summary": "A file's content, once a message of this app references it",
            "parameters": [
                path_param("file_id", "An uploaded file (a UUID)."),
                query_param("as_attachment", json!({"type": "string"}), "true: served with Content-Disposition: attachment."),
                {"name": "Range", "in": "header", "required": false, "schema": {"type": "string"}, "description": "bytes=START-END"},
            ],
            "responses": r,
        }),
    );
}

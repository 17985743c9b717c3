//! File categories (§3.4 of the API spec) and the few MIME types ferrify
//! needs to know: by extension first, then by MIME type.

/// Extensions of each category (lower case, no dot). Documents include the
/// formats Dify's Unstructured ETL reads.
const IMAGE: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "svg"];
const VIDEO: &[&str] = &["mp4", "mov", "mpeg", "webm"];
const AUDIO: &[&str] = &["mp3", "m4a", "wav", "amr", "mpga"];
const DOCUMENT: &[&str] = &[
    "txt",
    "markdown",
    "md",
    "mdx",
    "pdf",
    "html",
    "htm",
    "xlsx",
    "xls",
    "docx",
    "csv",
    "vtt",
    "properties",
    "doc",
    "eml",
    "msg",
    "pptx",
    "ppt",
    "xml",
    "epub",
];

/// A file's category.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Image,
    Document,
    Audio,
    Video,
    Custom,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Image => "image",
            Category::Document => "document",
            Category::Audio => "audio",
            Category::Video => "video",
            Category::Custom => "custom",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Some(match s {
            "image" => Category::Image,
            "document" => Category::Document,
            "audio" => Category::Audio,
            "video" => Category::Video,
            "custom" => Category::Custom,
            _ => return None,
        })
    }
}

/// The category of a file by extension (no dot, any case), else by MIME type.
pub fn category(extension: &str, mime_type: &str) -> Category {
    let ext = extension.trim_start_matches('.').to_ascii_lowercase();
    if IMAGE.contains(&ext.as_str()) {
        return Category::Image;
    }
    if VIDEO.contains(&ext.as_str()) {
        return Category::Video;
    }
    if AUDIO.contains(&ext.as_str()) {
        return Category::Audio;
    }
    if DOCUMENT.contains(&ext.as_str()) {
        return Category::Document;
    }
    let mime = essence(mime_type);
    if mime.contains("image") {
        Category::Image
    } else if mime.contains("video") {
        Category::Video
    } else if mime.contains("audio") {
        Category::Audio
    } else if mime.contains("text") || mime.contains("pdf") {
        Category::Document
    } else {
        Category::Custom
    }
}

/// A MIME type without its parameters, lower case (`text/plain; charset=utf-8` → `text/plain`).
pub fn essence(mime: &str) -> String {
    mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Extension ↔ MIME type, for files whose name or type is unknown.
const TYPES: &[(&str, &str)] = &[
    ("txt", "text/plain"),
    ("md", "text/markdown"),
    ("markdown", "text/markdown"),
    ("mdx", "text/markdown"),
    ("html", "text/html"),
    ("htm", "text/html"),
    ("csv", "text/csv"),
    ("vtt", "text/vtt"),
    ("xml", "application/xml"),
    ("json", "application/json"),
    ("yaml", "application/yaml"),
    ("pdf", "application/pdf"),
    ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
    ("doc", "application/msword"),
    ("xls", "application/vnd.ms-excel"),
    ("ppt", "application/vnd.ms-powerpoint"),
    ("epub", "application/epub+zip"),
    ("eml", "message/rfc822"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("svg", "image/svg+xml"),
    ("mp3", "audio/mpeg"),
    ("mpga", "audio/mpeg"),
    ("m4a", "audio/mp4"),
    ("wav", "audio/wav"),
    ("amr", "audio/amr"),
    ("mp4", "video/mp4"),
    ("mov", "video/quicktime"),
    ("mpeg", "video/mpeg"),
    ("webm", "video/webm"),
];

/// The usual MIME type of an extension.
pub fn mime_for_extension(extension: &str) -> Option<&'static str> {
    let ext = extension.trim_start_matches('.').to_ascii_lowercase();
    TYPES.iter().find(|(e, _)| *e == ext).map(|(_, m)| *m)
}

/// The usual extension of a MIME type.
pub fn extension_for_mime(mime: &str) -> Option<&'static str> {
    let m = essence(mime);
    TYPES.iter().find(|(_, t)| *t == m).map(|(e, _)| *e)
}

/// The extension of a file name: lower case, without the dot, empty when none.
pub fn extension_of(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((_, ext)) => ext.trim().to_ascii_lowercase(),
        None => String::new(),
    }
}

/// Whether a preview of this MIME type supports byte ranges (audio and video).
pub fn is_media(mime: &str) -> bool {
    let m = essence(mime);
    m.starts_with("audio/") || m.starts_with("video/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_by_extension_then_mime() {
        assert_eq!(category("PNG", ""), Category::Image);
        assert_eq!(category(".mp4", "application/octet-stream"), Category::Video);
        assert_eq!(category("m4a", ""), Category::Audio);
        assert_eq!(category("pdf", ""), Category::Document);
        assert_eq!(category("", "image/heic"), Category::Image);
        assert_eq!(category("bin", "text/x-log; charset=utf-8"), Category::Document);
        assert_eq!(category("exe", "application/octet-stream"), Category::Custom);
        assert_eq!(Category::parse("video"), Some(Category::Video));
        assert_eq!(Category::parse("zip"), None);
    }

    #[test]
    fn types() {
        assert_eq!(mime_for_extension(".SVG"), Some("image/svg+xml"));
        assert_eq!(extension_for_mime("text/csv; charset=utf-8"), Some("csv"));
        assert_eq!(extension_of("a.tar.GZ"), "gz");
        assert_eq!(extension_of("README"), "");
        assert!(is_media("audio/mpeg") && is_media("video/webm") && !is_media("image/png"));
    }
}

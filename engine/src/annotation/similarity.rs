//! How close a query is to an annotation question: cosine similarity of
//! embeddings, or — without an embedding model — normalised text similarity.
//!
//! Text similarity: both texts are lower-cased and cut into tokens (runs of
//! letters and digits; every CJK, kana or hangul character is a token of its
//! own; everything else separates tokens); the score is the Jaccard index of
//! the two token sets, |A ∩ B| / |A ∪ B|, in [0, 1]. Identical texts up to
//! case, punctuation and spacing score 1.

use std::collections::HashSet;

/// Cosine similarity of two vectors (0 when either is empty, zero or of another length).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 || !dot.is_finite() {
        return 0.0;
    }
    (dot / (na.sqrt() * nb.sqrt())).clamp(-1.0, 1.0)
}

/// Whether a character is a token by itself (scripts written without spaces).
fn stands_alone(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF          // hiragana, katakana
        | 0x3400..=0x4DBF        // CJK extension A
        | 0x4E00..=0x9FFF        // CJK unified ideographs
        | 0xAC00..=0xD7AF        // hangul syllables
        | 0xF900..=0xFAFF        // CJK compatibility ideographs
        | 0x20000..=0x2FA1F) // CJK extensions B–F, compatibility supplement
}

/// The normalised token set of a text.
pub fn tokens(text: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut word = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if stands_alone(c) {
            if !word.is_empty() {
                out.insert(std::mem::take(&mut word));
            }
            out.insert(c.to_string());
        } else if c.is_alphanumeric() {
            word.push(c);
        } else if !word.is_empty() {
            out.insert(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.insert(word);
    }
    out
}

/// Jaccard index of the token sets of two texts (0 when both are empty).
pub fn text_similarity(a: &str, b: &str) -> f64 {
    let (a, b) = (tokens(a), tokens(b));
    let union = a.union(&b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(&b).count() as f64 / union as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text() {
        assert_eq!(text_similarity("What is Ferrify?", "  what IS ferrify "), 1.0);
        assert_eq!(text_similarity("a b c d", "a b c e"), 3.0 / 5.0);
        assert_eq!(text_similarity("", "?!"), 0.0);
        assert_eq!(text_similarity("hello", "goodbye"), 0.0);
        assert_eq!(text_similarity("你好世界", "你好"), 0.5);
        assert_eq!(text_similarity("Ünïcode wörds", "ünïcode WÖRDS."), 1.0);
    }

    #[test]
    fn vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-9);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-9);
        assert_eq!(cosine(&[1.0], &[1.0, 2.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
        assert_eq!(cosine(&[], &[]), 0.0);
    }
}

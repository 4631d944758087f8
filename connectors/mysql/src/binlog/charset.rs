//! Column character sets: collation ids from the table map, and decoding text to UTF-8.

use mysql_common::collations::{Collation, CollationId};

/// How a text column's bytes become UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// utf8mb4, utf8mb3/utf8, ascii: validated, no conversion.
    Utf8,
    /// Any charset encoding_rs converts (latin1 = windows-1252, as MySQL defines it; cp1250,
    /// gbk, big5, sjis, …).
    Encoded(&'static encoding_rs::Encoding),
    /// ucs2 / utf16 (big-endian).
    Utf16Be,
    /// utf16le.
    Utf16Le,
    /// utf32 (big-endian).
    Utf32,
}

impl Charset {
    /// The charset of a MySQL/MariaDB charset name, or `None` when binlake cannot convert it.
    pub fn from_name(name: &str) -> Option<Charset> {
        use encoding_rs as e;
        Some(match name {
            "utf8mb4" | "utf8mb3" | "utf8" | "ascii" => Charset::Utf8,
            "latin1" => Charset::Encoded(e::WINDOWS_1252),
            "latin2" => Charset::Encoded(e::ISO_8859_2),
            "latin5" => Charset::Encoded(e::WINDOWS_1254),
            "latin7" => Charset::Encoded(e::ISO_8859_13),
            "greek" => Charset::Encoded(e::ISO_8859_7),
            "hebrew" => Charset::Encoded(e::ISO_8859_8),
            "cp1250" => Charset::Encoded(e::WINDOWS_1250),
            "cp1251" => Charset::Encoded(e::WINDOWS_1251),
            "cp1256" => Charset::Encoded(e::WINDOWS_1256),
            "cp1257" => Charset::Encoded(e::WINDOWS_1257),
            "cp866" => Charset::Encoded(e::IBM866),
            "koi8r" => Charset::Encoded(e::KOI8_R),
            "koi8u" => Charset::Encoded(e::KOI8_U),
            "gbk" | "gb2312" => Charset::Encoded(e::GBK),
            "gb18030" => Charset::Encoded(e::GB18030),
            "big5" => Charset::Encoded(e::BIG5),
            "sjis" | "cp932" => Charset::Encoded(e::SHIFT_JIS),
            "ujis" | "eucjpms" => Charset::Encoded(e::EUC_JP),
            "euckr" => Charset::Encoded(e::EUC_KR),
            "tis620" => Charset::Encoded(e::WINDOWS_874),
            "ucs2" | "utf16" => Charset::Utf16Be,
            "utf16le" => Charset::Utf16Le,
            "utf32" => Charset::Utf32,
            _ => return None,
        })
    }

    /// Decodes `raw` to UTF-8; an invalid byte sequence is an error, never replaced.
    pub fn decode(self, raw: &[u8]) -> Result<String, String> {
        match self {
            Charset::Utf8 => std::str::from_utf8(raw)
                .map(str::to_owned)
                .map_err(|e| format!("invalid UTF-8 in a utf8 column: {e}")),
            Charset::Encoded(enc) => enc
                .decode_without_bom_handling_and_without_replacement(raw)
                .map(|s| s.into_owned())
                .ok_or_else(|| format!("bytes that are not valid {}", enc.name())),
            Charset::Utf16Be | Charset::Utf16Le => {
                if !raw.len().is_multiple_of(2) {
                    return Err("odd number of bytes in a UTF-16 column".into());
                }
                let units = raw.chunks_exact(2).map(|c| match self {
                    Charset::Utf16Le => u16::from_le_bytes([c[0], c[1]]),
                    _ => u16::from_be_bytes([c[0], c[1]]),
                });
                char::decode_utf16(units)
                    .collect::<Result<String, _>>()
                    .map_err(|e| format!("invalid UTF-16: {e}"))
            }
            Charset::Utf32 => {
                if !raw.len().is_multiple_of(4) {
                    return Err("byte count not a multiple of 4 in a UTF-32 column".into());
                }
                raw.chunks_exact(4)
                    .map(|c| {
                        char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                            .ok_or_else(|| "invalid UTF-32 code point".to_string())
                    })
                    .collect()
            }
        }
    }
}

/// The charset name of a collation id, as the table map's optional metadata gives it.
/// `binary` (63) means a binary string.
pub fn charset_name_of_collation(id: u16) -> Option<String> {
    // MariaDB 10.10+ numbers its UCA-14.0.0 collations by charset: 2048 + 256 * k.
    match id {
        2048..=2303 => return Some("utf8mb3".into()),
        2304..=2559 => return Some("utf8mb4".into()),
        2560..=2815 => return Some("ucs2".into()),
        2816..=3071 => return Some("utf16".into()),
        3072..=3327 => return Some("utf32".into()),
        _ => {}
    }
    let cid = CollationId::from(id);
    if cid == CollationId::UNKNOWN_COLLATION_ID {
        return None;
    }
    let name = Collation::from(cid).charset().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_collations() {
        assert_eq!(charset_name_of_collation(45).as_deref(), Some("utf8mb4"));
        assert_eq!(charset_name_of_collation(8).as_deref(), Some("latin1"));
        assert_eq!(charset_name_of_collation(63).as_deref(), Some("binary"));
        assert_eq!(charset_name_of_collation(2305).as_deref(), Some("utf8mb4"));
    }

    #[test]
    fn decoding() {
        assert_eq!(
            Charset::from_name("latin1").map(|c| c.decode(b"caf\xe9")),
            Some(Ok("café".into()))
        );
        assert!(Charset::Utf8.decode(b"\xff").is_err());
        assert_eq!(
            Charset::Utf16Be.decode(&[0, b'a', 0xd8, 0x3e, 0xdd, 0x80]),
            Ok("a🦀".into())
        );
    }
}

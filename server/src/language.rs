//! Language tags, as hands, CART captioners and the config name them: one validator for all
//! three, so a tag the floor accepts is one the captions accept too.
//!
//! The rule is the practical subset of BCP 47 that the pages, Zoom's CART API and the
//! recognizers use: a letter first, then letters, digits and `-`, at most
//! [`MAX_LANGUAGE_CHARS`] characters. Case is kept: tags are compared by their primary
//! subtag elsewhere. The CART API alone also reads `en_US` (which captioning software
//! sends) as `en-US`, before this check: that is a spelling of its input, not another rule.

/// Longest language tag accepted (BCP 47 tags in practice stay far below).
pub const MAX_LANGUAGE_CHARS: usize = 35;

/// Why a string is not a language tag; callers say it in their own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a language tag such as \"en\" or \"pt-BR\" (a letter, then letters, digits and '-', \
     at most {MAX_LANGUAGE_CHARS} characters)"
)]
pub struct InvalidLanguage;

/// `Ok` if `tag` is a language tag. An empty string is not one (callers that treat a blank
/// field as "not given" check that first).
pub fn check_language_tag(tag: &str) -> Result<(), InvalidLanguage> {
    let ok = tag.len() <= MAX_LANGUAGE_CHARS
        && tag.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok { Ok(()) } else { Err(InvalidLanguage) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_pass() {
        let longest = "a".repeat(MAX_LANGUAGE_CHARS);
        for good in ["en", "pt-BR", "zh-Hant-TW", "es-419", longest.as_str()] {
            assert_eq!(check_language_tag(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let too_long = "a".repeat(MAX_LANGUAGE_CHARS + 1);
        for bad in [
            "", "1en", "-en", "en_US", "en US", "en;", "é", "en\n", &too_long,
        ] {
            assert_eq!(check_language_tag(bad), Err(InvalidLanguage), "{bad:?}");
        }
    }
}

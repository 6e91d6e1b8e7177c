//! AMQP topic-exchange matching: words separated by `.`, `*` matches exactly
//! one word and `#` matches zero or more words.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingPattern {
    words: Vec<Word>,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Exact(String),
    One,
    Many,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoutingPatternError {
    #[error("routing pattern is empty")]
    Empty,
    #[error("routing pattern {0:?} has an empty word")]
    EmptyWord(String),
    #[error("routing pattern {0:?}: `*` and `#` must stand alone as a word")]
    MixedWildcard(String),
}

impl RoutingPattern {
    pub fn parse(text: &str) -> Result<RoutingPattern, RoutingPatternError> {
        if text.is_empty() {
            return Err(RoutingPatternError::Empty);
        }
        let words = text
            .split('.')
            .map(|word| match word {
                "" => Err(RoutingPatternError::EmptyWord(text.to_owned())),
                "*" => Ok(Word::One),
                "#" => Ok(Word::Many),
                w if w.contains(['*', '#']) => {
                    Err(RoutingPatternError::MixedWildcard(text.to_owned()))
                }
                w => Ok(Word::Exact(w.to_owned())),
            })
            .collect::<Result<_, _>>()?;
        Ok(RoutingPattern {
            words,
            source: text.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, routing_key: &str) -> bool {
        let key: Vec<&str> = routing_key.split('.').collect();
        matches_words(&self.words, &key)
    }
}

fn matches_words(pattern: &[Word], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((Word::Many, rest)) => (0..=key.len()).any(|skip| matches_words(rest, &key[skip..])),
        Some((Word::One, rest)) => !key.is_empty() && matches_words(rest, &key[1..]),
        Some((Word::Exact(word), rest)) => {
            key.first().is_some_and(|k| k == word) && matches_words(rest, &key[1..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqp_topic_semantics() {
        let cases = [
            ("ticket.#", "ticket", true),
            ("ticket.#", "ticket.created", true),
            ("ticket.#", "ticket.created.sales", true),
            ("ticket.#", "tickets.created", false),
            ("ticket.*", "ticket.created", true),
            ("ticket.*", "ticket", false),
            ("ticket.*", "ticket.created.sales", false),
            ("#", "anything.at.all", true),
            ("*.created", "ticket.created", true),
            ("#.created", "a.b.created", true),
            ("#.created", "created", true),
            ("status.#", "status.agent", true),
            ("call_form_result", "call_form_result", true),
            ("call_form_result", "call_form_results", false),
            ("a.#.z", "a.z", true),
            ("a.#.z", "a.b.c.z", true),
            ("a.#.z", "a.b.c", false),
        ];
        for (pattern, key, want) in cases {
            assert_eq!(
                RoutingPattern::parse(pattern).unwrap().matches(key),
                want,
                "{pattern} ~ {key}"
            );
        }
    }

    #[test]
    fn rejects_bad_patterns() {
        assert_eq!(RoutingPattern::parse(""), Err(RoutingPatternError::Empty));
        assert!(matches!(
            RoutingPattern::parse("a..b"),
            Err(RoutingPatternError::EmptyWord(_))
        ));
        assert!(matches!(
            RoutingPattern::parse("a.b*"),
            Err(RoutingPatternError::MixedWildcard(_))
        ));
    }
}

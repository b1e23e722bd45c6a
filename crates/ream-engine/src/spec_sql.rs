//! A database's refusal of the spec's own SQL, told at the spec key the SQL came from
//! (`source.where`, with its line and column) and with the fragment shown once, a caret
//! under the name the database stumbled on, instead of the generated statement and an
//! offset into it.

use ream_core::load::LoadedSpec;
use ream_core::{Spec, SpecError};
use ream_sources::SourceError;

use crate::EngineError;

/// `e` as a located spec error when it is a statement the database refused and the name
/// it refused is in one of the spec's SQL fragments; anything else as it was.
pub(crate) fn in_spec(loaded: &LoadedSpec, e: EngineError) -> EngineError {
    let EngineError::Source { source: SourceError::Prepare { sql, message, at }, .. } = &e else {
        return e;
    };
    let Some(Culprit { word, context }) = culprit(sql, message, *at) else { return e };
    for (key, text) in fragments(loaded.spec()) {
        if let Some(i) = find_word(text, &word, context) {
            let message = shorter(message, &word);
            let error =
                SpecError { excerpt: Some(excerpt(text, i, word.chars().count())), ..SpecError::new(key, message) };
            return EngineError::Spec(loaded.locate(vec![error]));
        }
    }
    e
}

/// MySQL's syntax message quotes the rest of the generated statement ("… to use near
/// 'AND status = 1) ORDER BY …' at line 1"): the excerpt shows the place, once.
fn shorter(message: &str, word: &str) -> String {
    match (message.find("You have an error in your SQL syntax"), message.rfind(" (error ")) {
        (Some(_), Some(code)) => format!("syntax error near `{word}`{}", &message[code..]),
        _ => message.to_string(),
    }
}

/// The spec's SQL, by key, in the order a name is looked for.
fn fragments(spec: &Spec) -> Vec<(String, &str)> {
    let src = &spec.source;
    let mut out: Vec<(String, &str)> = Vec::new();
    out.extend(src.filter.as_deref().map(|w| ("source.where".to_string(), w)));
    out.extend(src.sql.as_deref().map(|s| ("source.sql".to_string(), s)));
    out.extend(src.joins.iter().enumerate().map(|(i, j)| (format!("source.joins[{i}]"), j.as_str())));
    out.extend(src.columns.iter().map(|(name, c)| (format!("source.columns.{name}"), c.expr())));
    out.extend(src.table.as_deref().map(|t| ("source.table".to_string(), t)));
    out
}

/// The name the database stumbled on, and the statement's text from there on when known
/// (it tells apart two `AND`s of one fragment).
struct Culprit<'a> {
    word: String,
    context: &'a str,
}

/// The word at the offset the database pointed at, else the first quoted name in its
/// message (`column "totl" does not exist`, `Unknown column 'totl'`, MySQL's `near 'AND
/// …'`), else what follows SQLite's `no such …: `.
fn culprit<'a>(sql: &'a str, message: &'a str, at: Option<usize>) -> Option<Culprit<'a>> {
    let word = |text: &'a str| Culprit { word: text.chars().take_while(|c| is_word(*c)).collect(), context: text };
    let at_offset = at.and_then(|i| sql.get(i..)).map(word);
    let quoted = || {
        let open = message.find(['"', '\''])?;
        let quote = message[open..].chars().next()?;
        message[open + 1..].split(quote).next().map(word)
    };
    let named = || message.rsplit_once(": ").map(|(_, n)| word(n)).map(|c| Culprit { context: "", ..c });
    [at_offset, quoted(), named()].into_iter().flatten().find(|c| !c.word.is_empty())
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.' || c == '$'
}

/// The byte offset of `word` in `text` as a whole word, case ignored: of the places it
/// stands, the one followed by the most of `context`, the first among equals.
fn find_word(text: &str, word: &str, context: &str) -> Option<usize> {
    let (hay, needle, context) = (text.to_lowercase(), word.to_lowercase(), context.to_lowercase());
    // Lowercasing can change byte lengths outside ASCII: search only where it did not.
    if hay.len() != text.len() {
        return None;
    }
    let whole = |&i: &usize| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    };
    let shared = |i: usize| hay[i..].chars().zip(context.chars()).take_while(|(a, b)| a == b).count();
    let places = hay.match_indices(&needle).map(|(i, _)| i).filter(whole);
    places
        .map(|i| (shared(i), i))
        .fold(None, |best: Option<(usize, usize)>, (n, i)| match best {
            Some((m, _)) if m >= n => best,
            _ => Some((n, i)),
        })
        .map(|(_, i)| i)
}

/// The line of `text` holding byte `at`, and a caret line under the `len` characters there.
fn excerpt(text: &str, at: usize, len: usize) -> String {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let pad: String = text[start..at].chars().map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
    format!("{}\n{pad}{}", &text[start..end], "^".repeat(len.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_comes_from_the_offset_then_the_quotes_then_the_colon() {
        let sql = "SELECT a FROM t WHERE (totl > ?)";
        let word = |m, at| culprit(sql, m, at).map(|c| c.word);
        assert_eq!(word("no such column: totl", Some(23)).as_deref(), Some("totl"));
        assert_eq!(word("column \"c.nme\" does not exist", None).as_deref(), Some("c.nme"));
        assert_eq!(word("Unknown column 'totl' in 'where clause' (error 1054)", None).as_deref(), Some("totl"));
        assert_eq!(word("no such function: frob", None).as_deref(), Some("frob"));
        assert_eq!(word("syntax error", None), None);
    }

    #[test]
    fn of_two_equal_words_the_one_the_statement_goes_on_from_is_shown() {
        let text = "a > :min AND AND b = 1";
        let sql = "SELECT x FROM t WHERE (a > ? AND AND b = 1)";
        let c = culprit(sql, "syntax error at or near \"AND\"", sql.find("AND AND b").map(|i| i + 4)).unwrap();
        assert_eq!(
            excerpt(text, find_word(text, &c.word, c.context).unwrap(), 3),
            "a > :min AND AND b = 1\n             ^^^"
        );
        let mysql = "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server \
                     version for the right syntax to use near 'AND b = 1) ORDER BY t.`id`' at line 1 (error 1064)";
        let c = culprit(sql, mysql, None).unwrap();
        assert_eq!(find_word(text, &c.word, c.context), Some(13));
        assert_eq!(shorter(mysql, "AND"), "syntax error near `AND` (error 1064)");
    }

    #[test]
    fn a_word_is_found_whole_and_shown_with_a_caret_under_it() {
        let text = "date >= :since\n  AND totl > :min";
        let i = find_word(text, "TOTL", "").unwrap();
        assert_eq!(excerpt(text, i, 4), "  AND totl > :min\n      ^^^^");
        assert_eq!(find_word("totals > 1", "totl", ""), None);
        assert_eq!(find_word("x.totl_2 = totl", "totl", ""), Some(11));
    }
}

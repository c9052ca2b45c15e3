//! Suggestions for misspelt names.

/// The known name closest to a misspelt one: a few edits away, or one that
/// contains it.
pub fn nearest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= limit || (word.len() >= 4 && k.contains(word)))
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance, in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut diagonal = row[0];
        row[0] = i;
        for j in 1..=b.len() {
            let above = row[j];
            row[j] = (row[j] + 1)
                .min(row[j - 1] + 1)
                .min(diagonal + usize::from(a[i - 1] != b[j - 1]));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_a_few_edits_away_finds_its_word() {
        let known = ["visibility_timeout_seconds", "delay_seconds"];
        assert_eq!(nearest("visibilty_timeout_seconds", &known), Some(known[0]));
        assert_eq!(nearest("delay", &known), Some(known[1]));
        assert_eq!(nearest("policy", &known), None);
    }

    #[test]
    fn edit_distance_counts_characters_not_bytes() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("µs", "ms"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}

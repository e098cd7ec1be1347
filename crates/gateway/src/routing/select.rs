//! Choosing a channel: the highest priority tier that still has a channel
//! to try, and within it a weighted draw. Each request keeps the set of
//! channels it already tried, so a retry never picks the same one while
//! another is available, and never skips a tier that still has one.

/// Where a channel stands: its tier, and its share of the tier's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight {
    pub priority: i64,
    pub weight: u32,
}

/// The index of the channel to try next, or `None` when every channel was
/// tried. `roll` is any random number: the draw is `roll` modulo the
/// tier's total weight, so every roll picks a channel, each in proportion
/// to its weight.
pub fn select<T>(
    channels: &[T],
    weight_of: impl Fn(&T) -> Weight,
    tried: &[usize],
    roll: u64,
) -> Option<usize> {
    let untried = || {
        channels
            .iter()
            .enumerate()
            .filter(|(i, _)| !tried.contains(i))
            .map(|(i, c)| (i, weight_of(c)))
    };
    let tier = untried().map(|(_, w)| w.priority).max()?;
    let in_tier = || untried().filter(move |(_, w)| w.priority == tier);
    let total: u64 = in_tier().map(|(_, w)| u64::from(w.weight.max(1))).sum();
    let mut pick = roll % total;
    for (i, w) in in_tier() {
        let weight = u64::from(w.weight.max(1));
        if pick < weight {
            return Some(i);
        }
        pick -= weight;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(priority: i64, weight: u32) -> Weight {
        Weight { priority, weight }
    }

    fn pick(channels: &[Weight], tried: &[usize], roll: u64) -> Option<usize> {
        select(channels, |c| *c, tried, roll)
    }

    #[test]
    fn the_highest_tier_serves_in_proportion_to_weight() {
        let channels = [w(0, 5), w(10, 3), w(10, 1), w(-1, 9)];
        let mut counts = [0; 4];
        for roll in 0..4_000 {
            counts[pick(&channels, &[], roll).unwrap()] += 1;
        }
        assert_eq!(counts, [0, 3_000, 1_000, 0]);
    }

    #[test]
    fn a_retry_never_repeats_a_channel_nor_skips_a_tier() {
        let channels = [w(0, 1), w(10, 1), w(10, 1), w(5, 1)];
        for roll in 0..100 {
            let first = pick(&channels, &[], roll).unwrap();
            assert!(first == 1 || first == 2);
            let second = pick(&channels, &[first], roll).unwrap();
            assert_eq!(second, 3 - first, "the other channel of the top tier");
            assert_eq!(pick(&channels, &[1, 2], roll), Some(3));
            assert_eq!(pick(&channels, &[1, 2, 3], roll), Some(0));
            assert_eq!(pick(&channels, &[0, 1, 2, 3], roll), None);
        }
    }

    #[test]
    fn one_channel_is_always_the_one() {
        for roll in [0, 1, u64::MAX] {
            assert_eq!(pick(&[w(0, 1)], &[], roll), Some(0));
        }
        assert_eq!(pick(&[], &[], 7), None);
    }
}

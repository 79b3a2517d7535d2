//! Sharded stock (docs/api.md §19): a hot product's stock split across several stock items, so that a
//! flash sale's orders do not all write one item. These are the domain's rules for it; the stores only
//! hold the figures and report them.
//!
//! Shard 0 is the product's own stock figure; shards 1..N-1 are separate items (DynamoDB) or rows
//! (SQLite) holding a copy of the product's description beside their figure, so an order's write checks
//! price and availability on the one item it decrements. A product with one shard is not sharded.

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::ids::OrderId;

/// The most shards a product may have: every shard is written when the catalogue loader sets the
/// product (one DynamoDB transaction of at most 100 items).
pub const MAX_SHARDS: u16 = 32;

/// How many times one create request plans its sharded lines again after a shard it took from turned
/// out short (another order took those units first), each time from figures read afresh, before it
/// answers `503 SERVICE_BUSY`.
pub const SHARD_PLANS: usize = 8;

/// Units one order took from one shard of its product, recorded on the order so that cancelling it
/// gives them back to that shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardTake {
    /// The shard, from 0.
    pub shard: u16,
    /// Units taken from it.
    pub quantity: u32,
}

/// Why a sharded line cannot be planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unplanned {
    /// The shards together hold fewer units than it asks for: what they hold.
    Short {
        /// What all shards hold together.
        available: u32,
    },
    /// The units are there, but spread over more shards than the write has room to take from (a
    /// batch's transaction holds at most 100 actions): an operator's rebalance mends it.
    TooThin,
}

/// The stock a loader writes: `stock` split as evenly as possible over `shards` (the first shards take
/// the remainder, one unit each).
pub fn split(stock: u32, shards: u16) -> Vec<u32> {
    let n = u32::from(shards.max(1));
    (0..n).map(|k| stock / n + u32::from(k < stock % n)).collect()
}

/// A number from the order id, so an order's choice of shard is spread evenly and repeatable.
fn spread(order: &OrderId, salt: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    order.as_str().hash(&mut hasher);
    salt.hash(&mut hasher);
    hasher.finish() as usize
}

/// The first try of a line on a sharded product, before any figure is read: all of it from the shard its
/// order id picks.
pub fn first_take(order: &OrderId, shards: u16, quantity: u32) -> Vec<ShardTake> {
    let shard = (spread(order, 0) % usize::from(shards.max(1))) as u16;
    vec![ShardTake { shard, quantity }]
}

/// Plans a line from the figures read: one shard that holds the whole quantity, picked by the order id
/// among those that can (so buyers spread over what is left); else the fullest shards, each taken empty
/// but the last, if that is at most `max_takes` shards; else, when all shards together hold less, the
/// summed figure.
pub fn plan(
    figures: &[u32],
    order: &OrderId,
    attempt: usize,
    quantity: u32,
    max_takes: usize,
) -> Result<Vec<ShardTake>, Unplanned> {
    let available = figures.iter().fold(0u32, |sum, f| sum.saturating_add(*f));
    if available < quantity {
        return Err(Unplanned::Short { available });
    }
    let whole: Vec<usize> = (0..figures.len()).filter(|k| figures[*k] >= quantity).collect();
    if !whole.is_empty() {
        let shard = whole[spread(order, attempt) % whole.len()] as u16;
        return Ok(vec![ShardTake { shard, quantity }]);
    }
    let mut fullest: Vec<usize> = (0..figures.len()).filter(|k| figures[*k] > 0).collect();
    fullest.sort_by_key(|k| std::cmp::Reverse(figures[*k]));
    let mut left = quantity;
    let mut takes = Vec::new();
    for k in fullest {
        let take = left.min(figures[k]);
        takes.push(ShardTake {
            shard: k as u16,
            quantity: take,
        });
        left -= take;
        if left == 0 {
            break;
        }
    }
    if takes.len() > max_takes {
        return Err(Unplanned::TooThin);
    }
    Ok(takes)
}

/// What a rebalance did to a product's shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rebalanced {
    /// The figures it found, shard 0 first.
    pub before: Vec<u32>,
    /// The figures it wrote.
    pub after: Vec<u32>,
}

/// The figures a rebalance writes: the same total, split evenly as the loader splits it.
pub fn rebalance(figures: &[u32]) -> Vec<u32> {
    let total = figures.iter().sum();
    split(total, figures.len() as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> OrderId {
        OrderId::generate()
    }

    #[test]
    fn split_keeps_every_unit_and_differs_by_at_most_one() {
        assert_eq!(split(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(split(3, 8), vec![1, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(split(7, 1), vec![7]);
        for (stock, shards) in [(0, 8), (1_000, 8), (999, 32), (5, 3)] {
            let figures = split(stock, shards);
            assert_eq!(figures.len(), usize::from(shards));
            assert_eq!(figures.iter().sum::<u32>(), stock);
            assert!(figures.iter().max().unwrap() - figures.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn the_first_take_is_one_shard_spread_by_order_id() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..400 {
            let takes = first_take(&order(), 8, 2);
            assert_eq!(takes.len(), 1);
            assert!(takes[0].shard < 8);
            assert_eq!(takes[0].quantity, 2);
            seen.insert(takes[0].shard);
        }
        assert_eq!(seen.len(), 8, "400 orders reach every shard");
    }

    #[test]
    fn a_plan_takes_one_shard_that_holds_the_whole_quantity() {
        for _ in 0..50 {
            let takes = plan(&[0, 1, 3, 0, 5], &order(), 1, 3, 1).unwrap();
            assert_eq!(takes.len(), 1);
            assert!([2, 4].contains(&takes[0].shard));
        }
    }

    #[test]
    fn a_plan_splits_over_the_fullest_shards_when_none_holds_it_all() {
        let takes = plan(&[2, 0, 3, 1], &order(), 1, 5, 8).unwrap();
        assert_eq!(
            takes,
            vec![ShardTake { shard: 2, quantity: 3 }, ShardTake { shard: 0, quantity: 2 }]
        );
        assert_eq!(plan(&[2, 0, 3, 1], &order(), 1, 6, 3).unwrap().len(), 3);
        assert_eq!(plan(&[2, 0, 3, 1], &order(), 1, 6, 2), Err(Unplanned::TooThin));
    }

    #[test]
    fn a_plan_refuses_with_the_sum_when_all_shards_hold_less() {
        assert_eq!(
            plan(&[2, 0, 3, 1], &order(), 1, 7, 8),
            Err(Unplanned::Short { available: 6 })
        );
        assert_eq!(plan(&[0; 8], &order(), 1, 1, 8), Err(Unplanned::Short { available: 0 }));
    }

    #[test]
    fn a_rebalance_keeps_the_total() {
        assert_eq!(rebalance(&[0, 0, 9, 1]), vec![3, 3, 2, 2]);
        assert_eq!(rebalance(&[5]), vec![5]);
    }
}

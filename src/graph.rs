//! The dependency graph of a stack: an edge from A to B when B refers to A or
//! lists it in `depends_on`. Creation follows the topological order; deletion
//! runs it backwards.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::tarjan_scc;
use petgraph::graphmap::DiGraphMap;
use petgraph::Direction;

#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Logical ids, every dependency before its dependents.
    pub order: Vec<String>,
    /// id → the ids it depends on.
    pub deps: BTreeMap<String, BTreeSet<String>>,
}

/// A dependency cycle, as a closed path `a -> b -> a`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle(pub Vec<String>);

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.join(" -> "))
    }
}

#[cfg(test)]
impl Graph {
    /// Whether `first` is made before `then`.
    pub fn orders(&self, first: &str, then: &str) -> bool {
        let at = |id| {
            self.order
                .iter()
                .position(|x| x == id)
                .expect("in the graph")
        };
        at(first) < at(then)
    }
}

impl Graph {
    /// `deps` must only name ids that are keys of `deps`. Among resources that
    /// could go in any order, the one with the lower `rank` (its line in the
    /// file) comes first, so plans read in file order.
    pub fn build(
        deps: BTreeMap<String, BTreeSet<String>>,
        rank: &dyn Fn(&str) -> usize,
    ) -> Result<Graph, Cycle> {
        let mut g: DiGraphMap<&str, ()> = DiGraphMap::new();
        for (id, ds) in &deps {
            g.add_node(id.as_str());
            for d in ds {
                g.add_edge(d.as_str(), id.as_str(), ());
            }
        }
        // Kahn's algorithm with a rank-ordered ready set.
        let mut waiting: BTreeMap<&str, usize> = g
            .nodes()
            .map(|n| (n, g.neighbors_directed(n, Direction::Incoming).count()))
            .collect();
        let mut ready: BTreeSet<(usize, &str)> = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(id, _)| (rank(id), *id))
            .collect();
        let mut order = Vec::with_capacity(waiting.len());
        while let Some(next) = ready.pop_first() {
            let id = next.1;
            order.push(id.to_string());
            for dependent in g.neighbors_directed(id, Direction::Outgoing) {
                if let Some(n) = waiting.get_mut(dependent) {
                    *n -= 1;
                    if *n == 0 {
                        ready.insert((rank(dependent), dependent));
                    }
                }
            }
        }
        if order.len() < g.node_count() {
            return Err(find_cycle(&g, &deps));
        }
        Ok(Graph { order, deps })
    }

    /// Ids that depend on `id`, directly.
    pub fn dependents<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.deps
            .iter()
            .filter(move |(_, ds)| ds.contains(id))
            .map(|(k, _)| k)
    }
}

fn find_cycle(g: &DiGraphMap<&str, ()>, deps: &BTreeMap<String, BTreeSet<String>>) -> Cycle {
    // The smallest strongly connected component with a loop in it, walked from
    // its alphabetically first member, gives a stable message.
    let mut sccs: Vec<Vec<&str>> = tarjan_scc(g)
        .into_iter()
        .filter(|c| c.len() > 1 || g.contains_edge(c[0], c[0]))
        .collect();
    sccs.sort_by_key(|c| (c.len(), c.iter().min().copied()));
    let Some(scc) = sccs.into_iter().next() else {
        return Cycle(Vec::new());
    };
    let members: BTreeSet<&str> = scc.iter().copied().collect();
    let start = *members.iter().next().unwrap_or(&"");
    // Follow "depends on" edges inside the component until a node repeats.
    let mut path = vec![start.to_string()];
    let mut current = start;
    loop {
        let next = deps
            .get(current)
            .and_then(|ds| ds.iter().find(|d| members.contains(d.as_str())))
            .map(String::as_str)
            .unwrap_or(start);
        if let Some(pos) = path.iter().position(|p| p == next) {
            let mut cycle = path.split_off(pos);
            cycle.push(next.to_string());
            return Cycle(cycle);
        }
        path.push(next.to_string());
        current = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn order_puts_dependencies_first() {
        let g = Graph::build(
            deps(&[
                ("sub", &["topic", "queue"]),
                ("topic", &[]),
                ("queue", &[]),
                ("policy", &["queue", "topic"]),
            ]),
            &|_| 0,
        )
        .unwrap();
        let pos = |id: &str| g.order.iter().position(|x| x == id).unwrap();
        assert!(pos("topic") < pos("sub"));
        assert!(pos("queue") < pos("sub"));
        assert!(pos("queue") < pos("policy"));
        let mut dependents: Vec<_> = g.dependents("topic").cloned().collect();
        dependents.sort();
        assert_eq!(dependents, vec!["policy", "sub"]);
    }

    #[test]
    fn independent_resources_keep_their_rank_order() {
        let ranks = |id: &str| match id {
            "z" => 1,
            "a" => 2,
            _ => 3,
        };
        let g = Graph::build(deps(&[("a", &[]), ("z", &[]), ("m", &["a"])]), &ranks).unwrap();
        assert_eq!(g.order, vec!["z", "a", "m"]);
    }

    #[test]
    fn cycles_are_reported_as_a_path() {
        let err = Graph::build(
            deps(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]),
            &|_| 0,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "a -> b -> c -> a");
    }

    #[test]
    fn self_reference_is_a_cycle() {
        let err = Graph::build(deps(&[("a", &["a"])]), &|_| 0).unwrap_err();
        assert_eq!(err.to_string(), "a -> a");
    }
}

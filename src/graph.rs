//! The dependency graph of a stack: an edge from A to B when B refers to A or
//! lists it in `depends_on`. Creation follows the topological order; deletion
//! runs it backwards.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graphmap::DiGraphMap;

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

impl Graph {
    /// `deps` must only name ids that are keys of `deps`.
    pub fn build(deps: BTreeMap<String, BTreeSet<String>>) -> Result<Graph, Cycle> {
        let mut g: DiGraphMap<&str, ()> = DiGraphMap::new();
        for (id, ds) in &deps {
            g.add_node(id.as_str());
            for d in ds {
                g.add_edge(d.as_str(), id.as_str(), ());
            }
        }
        match toposort(&g, None) {
            Ok(order) => {
                let order = order.into_iter().map(str::to_string).collect();
                Ok(Graph { order, deps })
            }
            Err(_) => Err(find_cycle(&g, &deps)),
        }
    }

    /// Ids that depend on `id`, directly.
    pub fn dependents<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.deps.iter().filter(move |(_, ds)| ds.contains(id)).map(|(k, _)| k)
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
        let g = Graph::build(deps(&[("sub", &["topic", "queue"]), ("topic", &[]), ("queue", &[]), ("policy", &["queue", "topic"])])).unwrap();
        let pos = |id: &str| g.order.iter().position(|x| x == id).unwrap();
        assert!(pos("topic") < pos("sub"));
        assert!(pos("queue") < pos("sub"));
        assert!(pos("queue") < pos("policy"));
        let mut dependents: Vec<_> = g.dependents("topic").cloned().collect();
        dependents.sort();
        assert_eq!(dependents, vec!["policy", "sub"]);
    }

    #[test]
    fn cycles_are_reported_as_a_path() {
        let err = Graph::build(deps(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])])).unwrap_err();
        assert_eq!(err.to_string(), "a -> b -> c -> a");
    }

    #[test]
    fn self_reference_is_a_cycle() {
        let err = Graph::build(deps(&[("a", &["a"])])).unwrap_err();
        assert_eq!(err.to_string(), "a -> a");
    }
}

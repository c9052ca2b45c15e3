//! Shrinking a failing seed's schedule: which of its faulted runs, and which
//! kinds of fault, it needs to fail. The seed's stack, edits and draws stay
//! as they are; what is not kept is turned off after it is drawn.

use super::cloud::{Faults, Rules};
use super::{run_seed_under, SCHEDULES_PER_SEED};

/// The kinds of fault, by the names `DST_KEEP` takes.
const KINDS: [&str; 10] = [
    "down", "refuse", "lose", "outage", "throttle", "crash", "stall", "lag", "s3", "slow",
];
const RUNS: usize = SCHEDULES_PER_SEED as usize;

/// What a seed's faulted runs (its edits' applies, then its destroy,
/// numbered from 0) keep of the faults drawn for them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Keep {
    kinds: [bool; KINDS.len()],
    runs: [bool; RUNS],
}

impl Keep {
    pub(super) const ALL: Keep = Keep {
        kinds: [true; KINDS.len()],
        runs: [true; RUNS],
    };

    /// The faults drawn for faulted run `run`, less what is not kept.
    pub(super) fn of(&self, run: usize, drawn: Faults) -> Faults {
        if !self.runs[run] {
            return Faults::default();
        }
        let mut f = drawn;
        let fields = [
            &mut f.down,
            &mut f.refuse,
            &mut f.lose,
            &mut f.outage,
            &mut f.throttle,
            &mut f.crash,
            &mut f.stall,
            &mut f.lag,
            &mut f.s3,
            &mut f.slow,
        ];
        for (field, kept) in fields.into_iter().zip(self.kinds) {
            if !kept {
                *field = 0;
            }
        }
        f
    }

    pub(super) fn keeps(&self, kind: &str) -> bool {
        KINDS
            .iter()
            .zip(self.kinds)
            .any(|(k, kept)| *k == kind && kept)
    }

    /// From `DST_KEEP=stall,s3` (kinds) and `DST_RUNS=3,5` (faulted runs);
    /// all of either when it is unset.
    pub(super) fn from_env() -> Result<Keep, String> {
        let var = |name| std::env::var(name).ok();
        Keep::parse(var("DST_KEEP").as_deref(), var("DST_RUNS").as_deref())
    }

    fn parse(kinds: Option<&str>, runs: Option<&str>) -> Result<Keep, String> {
        let mut keep = Keep::ALL;
        if let Some(kinds) = kinds {
            let names: Vec<&str> = kinds.split(',').filter(|k| !k.is_empty()).collect();
            if let Some(bad) = names.iter().find(|k| !KINDS.contains(k)) {
                return Err(format!("DST_KEEP: no fault `{bad}`; there are {KINDS:?}"));
            }
            keep.kinds = KINDS.map(|k| names.contains(&k));
        }
        if let Some(runs) = runs {
            let mut kept = [false; RUNS];
            for run in runs.split(',').filter(|r| !r.is_empty()) {
                match run.parse::<usize>() {
                    Ok(n) if n < RUNS => kept[n] = true,
                    _ => return Err(format!("DST_RUNS: `{run}` is not a run of 0..{RUNS}")),
                }
            }
            keep.runs = kept;
        }
        Ok(keep)
    }

    /// The environment that replays exactly this (empty for everything).
    pub(super) fn env(&self) -> String {
        let listed = |kept: &[bool], name: &dyn Fn(usize) -> String| {
            let on: Vec<String> = (0..kept.len()).filter(|&i| kept[i]).map(name).collect();
            on.join(",")
        };
        let mut env = String::new();
        if self.kinds != Keep::ALL.kinds {
            let kinds = listed(&self.kinds, &|i| KINDS[i].to_string());
            env += &format!("DST_KEEP={kinds} ");
        }
        if self.runs != Keep::ALL.runs {
            env += &format!("DST_RUNS={} ", listed(&self.runs, &|i| i.to_string()));
        }
        env
    }
}

/// The smallest schedule found that still fails, and how it fails: each
/// faulted run, then each kind of fault, turned off in turn and left off
/// while the seed still fails.
pub(super) fn shrink(seed: u64, rules: Rules, from: Keep, failure: String) -> (Keep, String) {
    let (mut kept, mut failure) = (from, failure);
    let mut fewer = |off: &dyn Fn(&mut Keep)| {
        let mut tried = kept;
        off(&mut tried);
        if tried != kept {
            if let Err(e) = run_seed_under(seed, rules, &tried) {
                (kept, failure) = (tried, e);
            }
        }
    };
    for run in 0..RUNS {
        fewer(&|k: &mut Keep| k.runs[run] = false);
    }
    for kind in 0..KINDS.len() {
        fewer(&|k: &mut Keep| k.kinds[kind] = false);
    }
    (kept, failure)
}

#[test]
fn the_replay_environment_reads_back_as_the_schedule_it_names() {
    let mut keep = Keep::ALL;
    keep.kinds[6] = false;
    keep.runs[2] = false;
    let env = keep.env();
    assert_eq!(
        env,
        "DST_KEEP=down,refuse,lose,outage,throttle,crash,lag,s3,slow DST_RUNS=0,1,3,4,5 "
    );
    let value = |name: &str| env.split(' ').find_map(|v| v.strip_prefix(name));
    assert_eq!(
        Keep::parse(value("DST_KEEP="), value("DST_RUNS=")),
        Ok(keep)
    );
    assert_eq!(Keep::parse(None, None), Ok(Keep::ALL));
    assert!(Keep::parse(Some("stal"), None)
        .unwrap_err()
        .contains("no fault `stal`"));
    assert!(Keep::parse(None, Some("6"))
        .unwrap_err()
        .contains("not a run of 0..6"));
}

//! CloudWatch alarm evaluation (`../shared/spec/alarms.md`): one datapoint
//! per period from the metric's samples with the alarm's statistic; M of N
//! breaching datapoints alarm; missing datapoints follow treat_missing_data,
//! the premature-alarm rule included; actions run only on a transition.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum State {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "ALARM")]
    Alarm,
    #[serde(rename = "INSUFFICIENT_DATA")]
    InsufficientData,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Alarm => "ALARM",
            State::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    Sum,
    Average,
    Minimum,
    Maximum,
    SampleCount,
    /// pNN: the NNth percentile.
    Percentile(f64),
}

impl Statistic {
    pub fn parse(statistic: Option<&str>, extended: Option<&str>) -> Option<Statistic> {
        match (statistic, extended) {
            (Some("Sum"), _) => Some(Statistic::Sum),
            (Some("Average"), _) => Some(Statistic::Average),
            (Some("Minimum"), _) => Some(Statistic::Minimum),
            (Some("Maximum"), _) => Some(Statistic::Maximum),
            (Some("SampleCount"), _) => Some(Statistic::SampleCount),
            (None, Some(p)) => p.strip_prefix('p')?.parse().ok().map(Statistic::Percentile),
            _ => None,
        }
    }

    /// The datapoint of one period's samples; None when it has none.
    pub fn of(self, samples: &[f64]) -> Option<f64> {
        if samples.is_empty() {
            return None;
        }
        let n = samples.len() as f64;
        Some(match self {
            Statistic::Sum => samples.iter().sum(),
            Statistic::Average => samples.iter().sum::<f64>() / n,
            Statistic::Minimum => samples.iter().copied().fold(f64::INFINITY, f64::min),
            Statistic::Maximum => samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Statistic::SampleCount => n,
            Statistic::Percentile(p) => {
                let mut sorted = samples.to_vec();
                sorted.sort_by(f64::total_cmp);
                // Nearest rank.
                let rank = ((p / 100.0) * n).ceil().max(1.0) as usize;
                sorted[rank.min(sorted.len()) - 1]
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Comparison {
    GreaterThan,
    GreaterThanOrEqual,
    LessThan,
    LessThanOrEqual,
}

impl Comparison {
    pub fn parse(op: &str) -> Option<Comparison> {
        Some(match op {
            "GreaterThanThreshold" => Comparison::GreaterThan,
            "GreaterThanOrEqualToThreshold" => Comparison::GreaterThanOrEqual,
            "LessThanThreshold" => Comparison::LessThan,
            "LessThanOrEqualToThreshold" => Comparison::LessThanOrEqual,
            _ => return None,
        })
    }

    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::GreaterThan => value > threshold,
            Comparison::GreaterThanOrEqual => value >= threshold,
            Comparison::LessThan => value < threshold,
            Comparison::LessThanOrEqual => value <= threshold,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::GreaterThan => ">",
            Comparison::GreaterThanOrEqual => ">=",
            Comparison::LessThan => "<",
            Comparison::LessThanOrEqual => "<=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Missing {
    Missing,
    Ignore,
    Breaching,
    NotBreaching,
}

impl Missing {
    pub fn parse(mode: &str) -> Missing {
        match mode {
            "ignore" => Missing::Ignore,
            "breaching" => Missing::Breaching,
            "notBreaching" => Missing::NotBreaching,
            _ => Missing::Missing,
        }
    }
}

/// How one datapoint of the evaluation range stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Point {
    Breaching,
    NotBreaching,
    Missing,
}

/// The state after evaluating the last R = N + 2 datapoints (oldest first),
/// following the algorithm and reference tables of the spec.
pub fn evaluate(points: &[Point], n: usize, m: usize, missing: Missing, current: State) -> State {
    let last = &points[points.len().saturating_sub(n)..];
    let real: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| *p != Point::Missing)
        .collect();
    let breaching = |v: &[Point]| v.iter().filter(|p| **p == Point::Breaching).count();
    let decide = |v: &[Point]| {
        if breaching(v) >= m {
            State::Alarm
        } else {
            State::Ok
        }
    };
    if !last.contains(&Point::Missing) {
        return decide(last);
    }
    if real.len() >= n {
        return decide(&real[real.len() - n..]);
    }
    let fill = |with: Point| {
        let mut v = real.clone();
        v.resize(n, with);
        decide(&v)
    };
    let some_ok = real.contains(&Point::NotBreaching);
    match missing {
        Missing::Breaching => fill(Point::Breaching),
        Missing::NotBreaching => fill(Point::NotBreaching),
        Missing::Missing => {
            // The premature-alarm rule applies even with fewer than M real points.
            let premature = real.len() < m && premature(last, m);
            if real.is_empty() {
                State::InsufficientData
            } else if breaching(&real) >= m || premature {
                State::Alarm
            } else if some_ok {
                State::Ok
            } else {
                current
            }
        }
        Missing::Ignore => {
            if breaching(&real) >= m {
                State::Alarm
            } else if some_ok {
                State::Ok
            } else {
                current
            }
        }
    }
}

/// An alarm's settings, as its evaluation needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub statistic: Statistic,
    pub period_ms: i64,
    /// N: evaluation_periods.
    pub n: usize,
    /// M: datapoints_to_alarm.
    pub m: usize,
    pub threshold: f64,
    pub comparison: Comparison,
    pub missing: Missing,
}

/// A state change, at the evaluation that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub t_ms: i64,
    pub from: State,
    pub to: State,
    /// The newest real datapoint of the range, if any.
    pub value: Option<f64>,
}

impl Rule {
    /// The evaluation range at `tick`: R = N + 2 datapoints, oldest first,
    /// each the statistic of one period of `samples` (sorted by time), None
    /// when the period holds none. The periods slide with the evaluation
    /// (the newest ends at `tick`), spaced one period apart. When the newest
    /// period holds no data, "the most recent real datapoints" CloudWatch
    /// falls back on are the periods ending where the metric's data last was:
    /// the range is re-anchored there, so a look-back never reaches behind
    /// data the alarm has already seen newer (a burst followed by quiet
    /// periods and then silence does not come back as a fresh datapoint).
    pub fn datapoints(&self, samples: &[(i64, f64)], tick: i64, step: i64) -> Vec<Option<f64>> {
        let (r, p) = (self.n + 2, self.period_ms);
        let from = tick - r as i64 * p;
        let before = samples.partition_point(|(t, _)| *t < tick);
        let anchor = samples[..before]
            .last()
            .filter(|(t, _)| *t >= from)
            .map_or(tick, |(t, _)| tick.min(t - t.rem_euclid(step) + p));
        let empty = ((tick - anchor + p - 1) / p) as usize;
        let mut points = vec![None; r];
        for j in 0..r.saturating_sub(empty) {
            let end = anchor - j as i64 * p;
            if end - p < from {
                break;
            }
            let lo = samples.partition_point(|(t, _)| *t < end - p);
            let hi = samples.partition_point(|(t, _)| *t < end);
            let values: Vec<f64> = samples[lo..hi].iter().map(|(_, v)| *v).collect();
            points[r - 1 - empty - j] = self.statistic.of(&values);
        }
        points
    }

    pub fn point(&self, value: Option<f64>) -> Point {
        match value {
            Some(v) if self.comparison.breaches(v, self.threshold) => Point::Breaching,
            Some(_) => Point::NotBreaching,
            None => Point::Missing,
        }
    }

    /// Every state change of an alarm created at `start` (in
    /// INSUFFICIENT_DATA), evaluated every `step` ms until `end`.
    pub fn changes(&self, samples: &[(i64, f64)], start: i64, end: i64, step: i64) -> Vec<Change> {
        let mut state = State::InsufficientData;
        let mut out = Vec::new();
        let mut tick = start + step;
        while tick <= end {
            let datapoints = self.datapoints(samples, tick, step);
            let points: Vec<Point> = datapoints.iter().map(|v| self.point(*v)).collect();
            let next = evaluate(&points, self.n, self.m, self.missing, state);
            if next != state {
                out.push(Change {
                    t_ms: tick,
                    from: state,
                    to: next,
                    value: datapoints.iter().rev().find_map(|v| *v),
                });
                state = next;
            }
            tick += step;
        }
        out
    }
}

/// The premature-alarm rule: the oldest breaching point of the last N is at
/// least M from the newest, and nothing newer cancels it.
fn premature(last: &[Point], m: usize) -> bool {
    let Some(oldest) = last.iter().position(|p| *p == Point::Breaching) else {
        return false;
    };
    let from_newest = last.len() - oldest;
    from_newest >= m && last[oldest..].iter().all(|p| *p != Point::NotBreaching)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `0 - X - X` as points.
    fn points(s: &str) -> Vec<Point> {
        s.split_whitespace()
            .map(|p| match p {
                "X" => Point::Breaching,
                "0" => Point::NotBreaching,
                _ => Point::Missing,
            })
            .collect()
    }

    /// One row of a reference table: the state under missing, ignore,
    /// breaching, notBreaching (from INSUFFICIENT_DATA... "keep" kept as given).
    fn row(m: usize, datapoints: &str, expected: [&str; 4]) {
        let modes = [
            Missing::Missing,
            Missing::Ignore,
            Missing::Breaching,
            Missing::NotBreaching,
        ];
        for (mode, want) in modes.iter().zip(expected) {
            let got = evaluate(&points(datapoints), 3, m, *mode, State::Ok);
            let want = match want {
                "keep" => State::Ok,
                "ALARM" => State::Alarm,
                "OK" => State::Ok,
                _ => State::InsufficientData,
            };
            assert_eq!(got, want, "M={m} `{datapoints}` under {mode:?}");
        }
        // "keep current" really keeps: from ALARM it stays ALARM.
        for (mode, want) in modes.iter().zip(expected) {
            if want == "keep" {
                assert_eq!(
                    evaluate(&points(datapoints), 3, m, *mode, State::Alarm),
                    State::Alarm
                );
            }
        }
    }

    /// The spec's reference tables 1 (three of three) and 2 (two of three).
    #[test]
    fn the_reference_tables() {
        row(3, "0 - X - X", ["OK", "OK", "OK", "OK"]);
        row(3, "0 - - - -", ["OK", "OK", "OK", "OK"]);
        row(3, "- - - - -", ["INSUFFICIENT_DATA", "keep", "ALARM", "OK"]);
        row(3, "0 X X - X", ["ALARM", "ALARM", "ALARM", "ALARM"]);
        row(3, "- - X - -", ["ALARM", "keep", "ALARM", "OK"]);

        row(2, "0 - X - X", ["ALARM", "ALARM", "ALARM", "ALARM"]);
        row(2, "0 0 X 0 X", ["ALARM", "ALARM", "ALARM", "ALARM"]);
        row(2, "0 - X - -", ["OK", "OK", "ALARM", "OK"]);
        row(2, "- - - - 0", ["OK", "OK", "ALARM", "OK"]);
        row(2, "- - - X -", ["ALARM", "keep", "ALARM", "OK"]);
    }

    /// Each case: the datapoints (oldest first), the treatment of missing
    /// data, the state before and the state after an evaluation of N of M.
    fn evaluations(n: usize, m: usize, cases: &[(&str, Missing, State, State)]) {
        for &(datapoints, missing, before, after) in cases {
            let got = evaluate(&points(datapoints), n, m, missing, before);
            assert_eq!(got, after, "{datapoints} under {missing:?} from {before:?}");
        }
    }

    #[test]
    fn late_breaches_do_not_alarm_early_under_missing() {
        evaluations(
            3,
            3,
            &[
                ("- - - - X", Missing::Missing, State::Ok, State::Ok),
                ("- - - X -", Missing::Missing, State::Ok, State::Ok),
            ],
        );
    }

    #[test]
    fn one_of_one_follows_the_newest_period() {
        evaluations(
            1,
            1,
            &[
                ("- - X", Missing::NotBreaching, State::Ok, State::Alarm),
                // The newest real point.
                ("- X -", Missing::NotBreaching, State::Alarm, State::Alarm),
                ("- - -", Missing::NotBreaching, State::Alarm, State::Ok),
                // Stuck in ALARM.
                ("- - -", Missing::Ignore, State::Alarm, State::Alarm),
                (
                    "- - -",
                    Missing::Missing,
                    State::Alarm,
                    State::InsufficientData,
                ),
            ],
        );
    }

    #[test]
    fn statistics_of_a_period() {
        let s = [1.0, 4.0, 2.0, 3.0];
        assert_eq!(Statistic::Sum.of(&s), Some(10.0));
        assert_eq!(Statistic::Average.of(&s), Some(2.5));
        assert_eq!(Statistic::Minimum.of(&s), Some(1.0));
        assert_eq!(Statistic::Maximum.of(&s), Some(4.0));
        assert_eq!(Statistic::SampleCount.of(&s), Some(4.0));
        assert_eq!(Statistic::Percentile(50.0).of(&s), Some(2.0));
        assert_eq!(Statistic::Percentile(99.0).of(&s), Some(4.0));
        assert_eq!(Statistic::Sum.of(&[]), None);
        assert_eq!(
            Statistic::parse(None, Some("p90")),
            Some(Statistic::Percentile(90.0))
        );
    }
}

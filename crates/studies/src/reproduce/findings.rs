//! The findings file (`configs/studies/reproduction/findings.ron`): findings as claims over study
//! files, and the budget a reproduction runs them with.

use crate::stats::Bootstrap;
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;

pub use crate::rules::Verdict;

/// The findings file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FindingsFile {
    /// Shown at the top of the report: the scale and why it was chosen.
    pub preamble: String,
    /// The bootstrap of every interval (default: 10,000 resamples, seed 2021, 95%).
    #[serde(default)]
    pub bootstrap: Bootstrap,
    pub findings: Vec<Finding>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Short name (`--only`, the report's folder).
    pub name: String,
    /// The claim in words.
    pub title: String,
    /// Where the paper shows it.
    pub paper: String,
    pub claim: Claim,
    /// The equivalence margin of the verdict, in units of the study metric (0.01 = one point of
    /// accuracy): *matches* allows the candidate to fall this far below the reference, a
    /// training gap needs validation accuracies within it. Fixed before the runs it judges.
    pub delta: f64,
    /// When and how `delta` was set (printed beside the verdict).
    #[serde(default)]
    pub delta_note: String,
    /// The choices made for this finding and why.
    #[serde(default)]
    pub notes: String,
    /// How the setting here departs from the paper's (printed as a table beside the verdict).
    #[serde(default)]
    pub deviations: Vec<Deviation>,
    /// How the target is set: fixed from the reference study's own trials once they have run and
    /// before any rerun ([`TargetRule`]); recorded in `<out>/targets.json`. Without it, the
    /// studies' own `target` fields apply.
    #[serde(default)]
    pub target: Option<TargetRule>,
}

/// One departure from the paper's setting.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Deviation {
    /// What (e.g. "steps", "batch", "search dimensions").
    pub what: String,
    /// The paper's value.
    pub paper: String,
    /// The value here.
    pub here: String,
}

/// A target fixed the paper's way: a value the reference optimizer reaches on most seeds (the
/// paper's LARS reaches 75.9% on 35 of 50), taken before the final runs from the reference's
/// tuning trials: the `rank`-th best feasible trial's final metric (the best one is the most
/// flattered by seed luck), rounded down to `round_to` (e.g. 0.001, a tenth of a point).
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetRule {
    /// The reference study file (relative to the findings file).
    pub reference: PathBuf,
    /// 1 for the best trial (at least 1).
    pub rank: usize,
    pub round_to: f64,
}

/// A target as fixed (`<out>/targets.json`, finding name -> this).
#[derive(serde::Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FixedTarget {
    pub value: f64,
    /// How it was set, in words (the rule, the trial it came from, its value and when).
    pub how: String,
}

/// A claim over study files (relative to the findings file).
#[derive(Deserialize, Debug, Clone)]
pub enum Claim {
    Matches {
        candidate: PathBuf,
        reference: PathBuf,
    },
    Beats {
        better: PathBuf,
        worse: PathBuf,
    },
    TrainGap {
        higher: PathBuf,
        lower: PathBuf,
    },
    BestValue {
        path: String,
        expected: Vec<(PathBuf, Value)>,
    },
}

impl Claim {
    pub(super) fn tuned(&self) -> Vec<&PathBuf> {
        match self {
            Claim::Matches {
                candidate,
                reference,
            } => vec![candidate, reference],
            Claim::Beats { better, worse } => vec![better, worse],
            Claim::TrainGap { higher, lower } => vec![higher, lower],
            Claim::BestValue { .. } => vec![],
        }
    }
}

/// How much to run. `reproduce` records it per finding in `<out>/budget.json`; the report judges
/// a finding only once its studies have all of it (defaults when none is recorded, as the
/// command's: 20 trials, 10 seeds).
#[derive(serde::Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Budget {
    /// Feasible quasi-random trials per tuned study.
    pub trials: u64,
    /// Fresh seeds of each rerun (and runs of each value of a `BestValue` sweep).
    pub seeds: u64,
    /// Trials or seeds run at the same time (not recorded).
    #[serde(skip, default = "one")]
    pub workers: usize,
    /// Earlier looks: the fresh seeds at which the finding had been judged (its runs complete)
    /// before its seeds were raised, recorded by `reproduce` when they are. The verdict at the
    /// final seeds is then a second (or later) look at the data, which the report says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub looked_at: Vec<u64>,
}

fn one() -> usize {
    1
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            trials: 20,
            seeds: 10,
            workers: 1,
            looked_at: Vec::new(),
        }
    }
}

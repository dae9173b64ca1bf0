//! Studies: a search space over run-config paths applied to base configs ([`study`]: trials,
//! reruns over seeds, the study directory), Slurm array scripts ([`slurm`]), the report of a set
//! of studies ([`report`]: tables, statistics, charts) and the paper's reproduction
//! ([`reproduce`]: findings, verdict rules, pages). [`stats`] holds the comparison statistics
//! (bootstrap intervals with and without tuning noise, probability of improvement, expected best
//! of k trials) and [`rules`] the calibrated decision rules on them.
//!
//! Depends on the engine (it runs trials with `bigbatch_engine::train::run`), core and plots;
//! must not depend on clap, on optimizer math or on any workload's code: the binary that runs
//! studies links the workloads and optimizers it needs.

pub mod diagnostics;
pub mod report;
pub mod reproduce;
pub mod rules;
pub mod slurm;
pub mod stats;
pub mod study;

//! The reproduction's pages: `README.md` (a verdict per finding with its numbers, tables and
//! charts), `results.csv`, and per finding `report.md` with the protocol and charts.

use super::Reproduction;
use super::findings::{Claim, Finding, Verdict};
use super::judge::{by_value, fresh_by_value, judge};
use crate::report::name;
use anyhow::Result;
use bigbatch_core::config::write_atomic;
use bigbatch_plots::{BoxGroup, box_plot};
use std::fmt::Write;
use std::path::PathBuf;

/// What [`Reproduction::report`] wrote, and its summary table for another page.
pub struct Report {
    pub files: Vec<PathBuf>,
    /// The summary as a markdown table with a header, one row per finding: `| title (paper) |
    /// verdict | numbers |` (what `--summary-into` puts in the README's Results).
    pub summary: String,
}

impl Reproduction {
    /// Writes the report of every finding (those whose studies are not finished as pending).
    pub fn report(&self) -> Result<Report> {
        let findings = self.selected(&[])?;
        let boot = self.file.bootstrap;
        let mut written = Vec::new();
        let mut md = String::from("# The paper's findings at CPU scale\n\n");
        md += "Written by `cargo xtask reproduce` (`bigbatch reproduce`); every number below comes \
               from the per-trial result files in `studies/`, from which `cargo xtask reproduce \
               --report-only` writes this page again.\n\n";
        md += self.file.preamble.trim();
        md += "\n\n## Summary\n\n| finding | paper | verdict | numbers |\n|---|---|---|---|\n";
        let mut summary = String::from(
            "| finding (paper) | verdict | numbers (points of accuracy; intervals 95%) |\n|---|---|---|\n",
        );
        let mut sections = String::new();
        let mut csv = String::new();
        let mut csv_studies = std::collections::BTreeSet::new();
        let targets = self.targets()?;
        // Compute seconds of every study shown, by directory (findings share studies).
        let mut seconds: std::collections::BTreeMap<PathBuf, f64> = Default::default();
        for f in &findings {
            if let Some(waiting) = self.waiting_for(f)? {
                writeln!(
                    md,
                    "| {} | {} | **{}** | waiting for {waiting} |",
                    f.title,
                    f.paper,
                    Verdict::Pending.words()
                )?;
                writeln!(
                    summary,
                    "| {} ({}) | {} | waiting for {waiting} |",
                    f.title,
                    f.paper,
                    Verdict::Pending.words()
                )?;
                continue;
            }
            let studies = self.studies_of(f)?;
            let mut finding_seconds = 0.0;
            for study in &studies {
                // Findings share studies (F1 and F2): each is measured once.
                let s = match seconds.get(&study.dir) {
                    Some(&s) => s,
                    None => study.compute_seconds()?,
                };
                seconds.insert(study.dir.clone(), s);
                finding_seconds += s;
            }
            let budget = self.budget(&f.name)?;
            let judged = judge(f, &studies, &budget, &boot)?;
            // A pending finding whose seeds were raised after a look: what that look said.
            let look = self.earlier_look(f, &budget, &judged.verdict)?;
            let look_words = |bold: &str| match &look {
                Some((seeds, then)) => format!(
                    ". At the earlier look ({seeds} fresh seeds per study): {bold}{}{bold}; {}",
                    then.verdict.words(),
                    then.numbers
                ),
                None => String::new(),
            };
            writeln!(
                md,
                "| [{}](#{}) | {} | **{}** | {}{} |",
                f.title,
                anchor(&f.title),
                f.paper,
                judged.verdict.words(),
                judged.numbers,
                look_words("**")
            )?;
            writeln!(
                summary,
                "| {} ({}) | {} | {}{} |",
                f.title,
                f.paper,
                judged.verdict.words(),
                judged.numbers,
                look_words("")
            )?;
            writeln!(sections, "\n## {}\n", f.title)?;
            writeln!(
                sections,
                "Paper: {}. Verdict: **{}**. {}\n",
                f.paper,
                judged.verdict.words(),
                judged.numbers
            )?;
            if let Some((seeds, then)) = &look {
                writeln!(
                    sections,
                    "Earlier look: at {seeds} fresh seeds per study (each study's reruns of its best point with the {seeds} lowest seeds, judged again from the result files) the verdict was **{}**. {} The raised seeds' verdict replaces it when their runs have finished.\n",
                    then.verdict.words(),
                    then.numbers
                )?;
            }
            if !f.notes.trim().is_empty() {
                writeln!(sections, "{}\n", f.notes.trim())?;
            }
            sections += &judged.table;
            for study in &studies {
                for warning in study.edge_warnings()? {
                    writeln!(sections, "\n**Warning** ({}): {warning}.", name(study))?;
                }
            }
            if !judged.details.is_empty() {
                writeln!(sections, "\n{}\n", judged.details.trim())?;
            }
            writeln!(sections, "{}", robustness_line(&judged.robustness))?;
            if !budget.looked_at.is_empty() {
                let pending = judged.verdict == Verdict::Pending;
                writeln!(sections, "{}", looks_line(&budget, &f.claim, pending))?;
            }
            if let Some(rule) = &f.target {
                match targets.get(&f.name) {
                    Some(t) => writeln!(
                        sections,
                        "Target: {} ({}).\n",
                        crate::report::pct(t.value),
                        t.how
                    )?,
                    None => writeln!(
                        sections,
                        "Target: not fixed yet (it will be the {} best feasible trial of {}, rounded down to a multiple of {}, once those trials have run).\n",
                        super::ordinal(rule.rank),
                        rule.reference.display(),
                        rule.round_to
                    )?,
                }
            }
            let hours = finding_seconds / 3600.0;
            writeln!(
                sections,
                "Compute: {hours:.1} CPU-hours (the recorded wall time of every trial and rerun of these studies, each run on one process, over every process that ran it; a run resumed from a checkpoint that did not record the time adds its earlier steps' times from metrics.jsonl).\n"
            )?;
            if !f.deviations.is_empty() {
                writeln!(
                    sections,
                    "Deviations from the paper's setting:\n\n| | paper | here |\n|---|---|---|"
                )?;
                for d in &f.deviations {
                    writeln!(sections, "| {} | {} | {} |", d.what, d.paper, d.here)?;
                }
                writeln!(sections)?;
            }
            writeln!(
                sections,
                "Margin delta: {:.2} points of the study metric.{}\n",
                100.0 * f.delta,
                if f.delta_note.trim().is_empty() {
                    String::new()
                } else {
                    format!(" {}", f.delta_note.trim())
                }
            )?;
            // Protocol, search spaces, best points and charts of the finding's studies.
            let folder = self.out.join(&f.name);
            let inside = crate::report::best_point_diagnostics(&studies)?;
            let (study_md, study_csv) = crate::report::tables(&studies, &inside)?;
            let report_md = folder.join("report.md");
            write_atomic(&report_md, study_md.as_bytes())?;
            written.push(report_md);
            append_csv(&mut csv, &study_csv, &mut csv_studies);
            let mut charts = crate::report::plots(&studies, &inside, &folder)?;
            if let Claim::BestValue { path, .. } = &f.claim {
                let mut groups = Vec::new();
                for study in &studies {
                    let values = by_value(study, path)?;
                    let fresh = fresh_by_value(study, &values)?;
                    for ((value, _), fresh) in values.into_iter().zip(fresh) {
                        groups.push(BoxGroup {
                            label: format!("{} {}", name(study), value),
                            values: fresh,
                        });
                    }
                }
                if groups.iter().any(|g| !g.values.is_empty()) {
                    charts.extend(box_plot(
                        &folder.join("by_value"),
                        &format!("Final validation accuracy over fresh seeds by {path}"),
                        "validation accuracy",
                        &groups,
                        None,
                    )?);
                }
            }
            writeln!(
                sections,
                "\nProtocol, search spaces and best points: [{0}/report.md]({0}/report.md).\n",
                f.name
            )?;
            if !inside.is_empty() {
                writeln!(
                    sections,
                    "Inside training, at the best points (per kind of parameter at the first and last diagnosed steps; a trust ratio of \"none\" means the kind's optimizer applies none, i.e. 1; charts `diagnostics-*` over steps):\n\n{}",
                    crate::diagnostics::summary_table(&inside)?
                )?;
            }
            for chart in charts
                .iter()
                .filter(|c| c.extension().is_some_and(|e| e == "png"))
            {
                let rel = chart.strip_prefix(&self.out).unwrap_or(chart);
                let stem = chart.file_stem().unwrap_or_default().to_string_lossy();
                writeln!(sections, "![{stem}]({})\n", rel.display())?;
            }
            written.extend(charts);
            writeln!(sections, "Commands:\n\n```sh\n{}```", self.commands(f))?;
        }
        write!(
            md,
            "\nVerdict rules (`crates/studies/src/rules.rs`), on {}; over fresh seeds only (a \
             rerun whose seed a tuning trial used is left out, so the selected trial is never \
             counted as its own rerun): *matches*: the interval of the difference of means \
             (candidate - reference, with the tuning noise of both studies) lies above -delta \
             (reproduced) or below it (not reproduced); *beats*: the same interval (better - \
             worse) lies above 0 (reproduced) or below it (not reproduced); *training gap*: \
             judged only when the validation interval lies within (-delta, delta) (untestable at \
             this scale when wholly outside), then the training interval decides as *beats*; \
             *best value*: a study clearly prefers a value when every interval of (best - \
             other) lies above 0 at the Bonferroni level; reproduced when every study clearly \
             prefers the paper's value and the preferences differ. Anything between is \
             inconclusive, with the side the data lean to and the seeds that would decide it \
             (or, where seed noise alone is clear of the boundary, that seeds would not). \
             Simulated on identical groups of 5, 10 and 20 seeds (normal and skewed), no rule \
             declares a difference more than 5% of the time (`rules::tests::calibration_*`). The \
             margin delta of each finding is given with it.\n",
            boot.method()
        )?;
        writeln!(
            md,
            "\nCompute: {:.1} CPU-hours in total over the studies above (per finding with each finding).",
            seconds.values().sum::<f64>() / 3600.0
        )?;
        md += &sections;
        let readme = self.out.join("README.md");
        write_atomic(&readme, md.as_bytes())?;
        written.push(readme);
        let results = self.out.join("results.csv");
        write_atomic(&results, csv.as_bytes())?;
        written.push(results);
        Ok(Report {
            files: written,
            summary,
        })
    }

    fn commands(&self, f: &Finding) -> String {
        format!(
            "cargo xtask reproduce --only {name}                # runs what is missing, then the report\n\
             cargo xtask reproduce --only {name} --report-only  # the report from the result files\n",
            name = f.name
        )
    }
}

/// A verdict after raised seeds in words: when the earlier looks were, and what a second look
/// does to the rules' false-positive rates (`rules::tests::calibration_with_a_second_look`).
fn looks_line(budget: &super::findings::Budget, claim: &Claim, pending: bool) -> String {
    let at: Vec<String> = budget.looked_at.iter().map(u64::to_string).collect();
    let rate = match claim {
        Claim::Beats { .. } | Claim::BestValue { .. } => {
            "for *beats* a second look raises the rate at which identical groups are declared different above 5% (to at most 10%, the sum of both looks' 5%)"
        }
        _ => {
            "for this rule a second look keeps the rate at which identical groups are declared different within 5%"
        }
    };
    let verdict = if pending {
        "the verdict to come will be"
    } else {
        "this verdict is"
    };
    format!(
        "Looks: the finding was judged at {} fresh seeds before its seeds were raised to {}, so {verdict} a later look at the data; simulated with a look at 10 seeds and another at 20 or 30 when the first was undecided, {rate} (`rules::tests::calibration_with_a_second_look`).\n",
        at.join(" and "),
        budget.seeds
    )
}

/// The half-trials check in words.
fn robustness_line(r: &std::result::Result<(usize, usize), String>) -> String {
    match r {
        Ok((agree, halves)) => format!(
            "Robustness: the same verdict from a random half of each study's trials in {agree} of {halves} halves ({:.0}%; each half's best trial shifts the study's values by its distance from the best of all).\n",
            100.0 * *agree as f64 / (*halves).max(1) as f64
        ),
        Err(why) => format!("Robustness (half of the trials): {why}.\n"),
    }
}

/// GitHub's heading anchor: lower case, spaces to dashes, other punctuation dropped.
fn anchor(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Appends a tidy CSV table, keeping one header line and each study's rows once (two findings
/// over the same studies list them twice).
fn append_csv(all: &mut String, table: &str, studies: &mut std::collections::BTreeSet<String>) {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    if all.is_empty() {
        all.push_str(header);
        all.push('\n');
    }
    let mut added = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let study = line.split(',').next().unwrap_or_default().to_string();
        if studies.contains(&study) {
            continue;
        }
        added.push(study);
        all.push_str(line);
        all.push('\n');
    }
    studies.extend(added);
}

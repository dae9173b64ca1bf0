//! The reproduction's pages: `README.md` (a verdict per finding with its numbers, tables and
//! charts), `results.csv`, and per finding `report.md` with the protocol and charts.

use super::Reproduction;
use super::findings::{Claim, Finding, Verdict};
use super::judge::{by_value, judge, metric_values};
use crate::report::name;
use anyhow::Result;
use bigbatch_core::config::write_atomic;
use bigbatch_plots::{BoxGroup, box_plot};
use std::fmt::Write;
use std::path::PathBuf;

impl Reproduction {
    /// Writes the report of every finding (those whose studies are not finished as pending);
    /// returns the files written.
    pub fn report(&self) -> Result<Vec<PathBuf>> {
        let findings = self.selected(&[])?;
        let budget = self.budget()?;
        let mut written = Vec::new();
        let mut md = String::from("# The paper's findings at CPU scale\n\n");
        md += "Written by `cargo xtask reproduce` (`bigbatch reproduce`); every number below comes \
               from the per-trial result files in `studies/`, from which `cargo xtask reproduce \
               --report-only` writes this page again.\n\n";
        md += self.file.preamble.trim();
        md += "\n\n## Summary\n\n| finding | paper | verdict | numbers |\n|---|---|---|---|\n";
        let mut sections = String::new();
        let mut csv = String::new();
        for f in &findings {
            if let Some(waiting) = self.waiting_for(f)? {
                writeln!(
                    md,
                    "| {} | {} | **{}** | waiting for {waiting} |",
                    f.title,
                    f.paper,
                    Verdict::Pending.words()
                )?;
                continue;
            }
            let studies = self.studies_of(f)?;
            let judged = judge(f, &studies, &budget)?;
            writeln!(
                md,
                "| [{}](#{}) | {} | **{}** | {} |",
                f.title,
                anchor(&f.title),
                f.paper,
                judged.verdict.words(),
                judged.numbers
            )?;
            writeln!(sections, "\n## {}\n", f.title)?;
            writeln!(
                sections,
                "Paper: {}. Verdict: **{}**. {}\n",
                f.paper,
                judged.verdict.words(),
                judged.numbers
            )?;
            if !f.notes.trim().is_empty() {
                writeln!(sections, "{}\n", f.notes.trim())?;
            }
            sections += &judged.table;
            // Protocol, search spaces, best points and charts of the finding's studies.
            let folder = self.out.join(&f.name);
            let (study_md, study_csv) = crate::report::tables(&studies)?;
            let report_md = folder.join("report.md");
            write_atomic(&report_md, study_md.as_bytes())?;
            written.push(report_md);
            append_csv(&mut csv, &study_csv);
            let mut charts = crate::report::plots(&studies, &folder)?;
            if let Claim::BestValue { path, .. } = &f.claim {
                let mut groups = Vec::new();
                for study in &studies {
                    for (value, runs) in by_value(study, path)? {
                        groups.push(BoxGroup {
                            label: format!("{} {}", name(study), value),
                            values: metric_values(&runs, study.file.metric),
                        });
                    }
                }
                if groups.iter().any(|g| !g.values.is_empty()) {
                    charts.extend(box_plot(
                        &folder.join("by_value"),
                        &format!("Final validation accuracy over seeds by {path}"),
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
        md += "\nVerdict rules, fixed before any study ran (`crates/studies/src/reproduce/judge.rs`): \
               *matches*: the candidate's median is at least the reference's first quartile \
               (reproduced) or below its worst seed (not reproduced); *beats*: the interquartile \
               ranges are apart (reproduced) or the better one's median is not above (not \
               reproduced); *training gap*: the higher one's median training accuracy is above \
               the other's third quartile and the training gap exceeds the validation gap \
               (reproduced) or it is not above the other's median (not reproduced); *best value*: \
               every optimizer clearly prefers (median above every other value's third quartile) \
               the paper's value (reproduced) or they all clearly prefer values against the paper \
               (not reproduced). Anything between is inconclusive at this scale.\n";
        md += &sections;
        let readme = self.out.join("README.md");
        write_atomic(&readme, md.as_bytes())?;
        written.push(readme);
        let results = self.out.join("results.csv");
        write_atomic(&results, csv.as_bytes())?;
        written.push(results);
        Ok(written)
    }

    fn commands(&self, f: &Finding) -> String {
        format!(
            "cargo xtask reproduce --only {name}                # runs what is missing, then the report\n\
             cargo xtask reproduce --only {name} --report-only  # the report from the result files\n",
            name = f.name
        )
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

/// Appends a CSV table, keeping one header line.
fn append_csv(all: &mut String, table: &str) {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    if all.is_empty() {
        all.push_str(header);
        all.push('\n');
    }
    for line in lines {
        all.push_str(line);
        all.push('\n');
    }
}

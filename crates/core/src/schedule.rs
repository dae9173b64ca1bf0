//! Learning-rate schedules. No upper bound on the learning rate (LARS peaks at 29).
//!
//! `lr(t)` is the learning rate used by update `t`, counted from 0.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// A learning-rate schedule, written in RON as e.g.
/// `PiecewisePolynomial(eta_init: 0.0, eta_peak: 29.0, eta_final: 1e-4, p_warmup: 1.0,
/// p_decay: 2.0, t_warmup: 706, total_steps: 2512)`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub enum Schedule {
    /// `lr(t) = lr`.
    Constant { lr: f64 },
    /// The paper's piecewise polynomial (Nado et al. 2021, section 2.1.4):
    /// `eta_init + (eta_peak - eta_init) (t / t_warmup)^p_warmup` for `t <= t_warmup`, else
    /// `eta_final + (eta_peak - eta_final) ((T - t) / (T - t_warmup))^p_decay`.
    PiecewisePolynomial {
        eta_init: f64,
        eta_peak: f64,
        eta_final: f64,
        p_warmup: f64,
        p_decay: f64,
        t_warmup: u64,
        total_steps: u64,
    },
    /// The MLPerf ResNet LARS reference schedule (mlcommons/training, `lars_util.py`
    /// `poly_rate_scheduler`): `base t / W` for `t <= W`, else
    /// `end + (base - end) (1 - min(t - W, D) / D)^power` with `D = T - W + 1`.
    MlperfPolynomial {
        base: f64,
        end: f64,
        warmup_steps: u64,
        total_steps: u64,
        #[serde(default = "two")]
        power: f64,
    },
    /// Cosine decay (Loshchilov & Hutter 2017) with optional polynomial warmup:
    /// `peak (t / W)^warmup_power` for `t < W`, else
    /// `eta_final + (peak - eta_final) (1 + cos(pi (t - W) / (T - W))) / 2`.
    Cosine {
        peak: f64,
        #[serde(default)]
        warmup_steps: u64,
        #[serde(default = "one")]
        warmup_power: f64,
        total_steps: u64,
        #[serde(default)]
        eta_final: f64,
    },
    /// Linear decay of Shallue et al. (2019), the paper's Tables 10-20: from `eta0` down to
    /// `eta0 * decay_factor` at `t_decay`, constant afterwards:
    /// `eta0 (1 - (1 - decay_factor) min(t, t_decay) / t_decay)`.
    LinearDecay {
        eta0: f64,
        decay_factor: f64,
        t_decay: u64,
    },
    /// The schedule of the paper's Tables 13-20: warmup `eta_peak (t / t_warmup)^p_warmup` for
    /// `t <= t_warmup`, then `f + (eta_peak - f) ((t_decay - t) / (t_decay - t_warmup))^p_decay`
    /// until `t_decay`, then constant at `f = eta_peak * decay_factor`.
    PolynomialWarmupDecay {
        eta_peak: f64,
        decay_factor: f64,
        t_warmup: u64,
        #[serde(default = "one")]
        p_warmup: f64,
        t_decay: u64,
        #[serde(default = "two")]
        p_decay: f64,
    },
    /// google-research/bert `optimization.py` `create_optimizer` (the paper's Figure 2 and Tables
    /// 7-8, where `p` is both powers): for `t < W` the warmup `peak (t / W)^warmup_power`, else
    /// `tf.train.polynomial_decay` counted from step 0, not from the end of warmup:
    /// `end + (peak - end) (1 - min(t, T) / T)^power`, so the rate drops at `t = W` from `peak`
    /// to `peak (1 - W / T)^power` (the "sudden drop" the paper points out).
    BertPolynomial {
        peak: f64,
        warmup_steps: u64,
        total_steps: u64,
        #[serde(default = "one")]
        power: f64,
        #[serde(default = "one")]
        warmup_power: f64,
        #[serde(default)]
        end: f64,
    },
}

fn one() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}

impl Schedule {
    /// The step count the schedule is written for (its `total_steps`), where it has one;
    /// `None` for `Constant`, `LinearDecay` and `PolynomialWarmupDecay`, which end in a constant
    /// rate and fit any run length.
    pub fn total_steps(&self) -> Option<u64> {
        match self {
            Schedule::PiecewisePolynomial { total_steps, .. }
            | Schedule::MlperfPolynomial { total_steps, .. }
            | Schedule::Cosine { total_steps, .. }
            | Schedule::BertPolynomial { total_steps, .. } => Some(*total_steps),
            Schedule::Constant { .. }
            | Schedule::LinearDecay { .. }
            | Schedule::PolynomialWarmupDecay { .. } => None,
        }
    }

    /// The learning rate of update `t` (0-based).
    pub fn lr(&self, t: u64) -> f64 {
        let tf = t as f64;
        match *self {
            Schedule::Constant { lr } => lr,
            Schedule::PiecewisePolynomial {
                eta_init,
                eta_peak,
                eta_final,
                p_warmup,
                p_decay,
                t_warmup,
                total_steps,
            } => {
                if t <= t_warmup {
                    if t_warmup == 0 {
                        return eta_peak;
                    }
                    eta_init + (eta_peak - eta_init) * (tf / t_warmup as f64).powf(p_warmup)
                } else {
                    let remaining = total_steps.saturating_sub(t) as f64;
                    let span = (total_steps - t_warmup) as f64;
                    eta_final + (eta_peak - eta_final) * (remaining / span).powf(p_decay)
                }
            }
            Schedule::MlperfPolynomial {
                base,
                end,
                warmup_steps,
                total_steps,
                power,
            } => {
                if t <= warmup_steps && warmup_steps > 0 {
                    base * tf / warmup_steps as f64
                } else {
                    let d = (total_steps - warmup_steps + 1) as f64;
                    let progressed = (tf - warmup_steps as f64).min(d);
                    end + (base - end) * (1.0 - progressed / d).powf(power)
                }
            }
            Schedule::Cosine {
                peak,
                warmup_steps,
                warmup_power,
                total_steps,
                eta_final,
            } => {
                if t < warmup_steps {
                    peak * (tf / warmup_steps as f64).powf(warmup_power)
                } else {
                    let span = (total_steps - warmup_steps).max(1) as f64;
                    let progress = ((tf - warmup_steps as f64) / span).min(1.0);
                    eta_final + (peak - eta_final) * 0.5 * (1.0 + (PI * progress).cos())
                }
            }
            Schedule::LinearDecay {
                eta0,
                decay_factor,
                t_decay,
            } => {
                let progress = if t_decay == 0 {
                    1.0
                } else {
                    (tf / t_decay as f64).min(1.0)
                };
                eta0 * (1.0 - (1.0 - decay_factor) * progress)
            }
            Schedule::PolynomialWarmupDecay {
                eta_peak,
                decay_factor,
                t_warmup,
                p_warmup,
                t_decay,
                p_decay,
            } => {
                let eta_final = eta_peak * decay_factor;
                if t <= t_warmup {
                    if t_warmup == 0 {
                        return eta_peak;
                    }
                    eta_peak * (tf / t_warmup as f64).powf(p_warmup)
                } else if t >= t_decay {
                    eta_final
                } else {
                    let frac = (t_decay - t) as f64 / (t_decay - t_warmup) as f64;
                    eta_final + (eta_peak - eta_final) * frac.powf(p_decay)
                }
            }
            Schedule::BertPolynomial {
                peak,
                warmup_steps,
                total_steps,
                power,
                warmup_power,
                end,
            } => {
                if t < warmup_steps {
                    peak * (tf / warmup_steps as f64).powf(warmup_power)
                } else {
                    let progress = tf.min(total_steps as f64) / total_steps as f64;
                    end + (peak - end) * (1.0 - progress).powf(power)
                }
            }
        }
    }

    /// Checks the schedule's own consistency; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let finite = |name: &str, v: f64| -> Result<()> {
            if !v.is_finite() {
                bail!("schedule.{name}: expected a finite number, got {v}");
            }
            Ok(())
        };
        // A negative rate would turn descent into ascent: refused.
        let rate = |name: &str, v: f64| -> Result<()> {
            if !v.is_finite() || v < 0.0 {
                bail!("schedule.{name}: expected a finite non-negative learning rate, got {v}");
            }
            Ok(())
        };
        let powers = |names: &str, values: [f64; 2]| -> Result<()> {
            if !values.iter().all(|p| *p > 0.0 && p.is_finite()) {
                bail!("schedule.{names}: expected positive powers, got {values:?}");
            }
            Ok(())
        };
        match *self {
            Schedule::Constant { lr } => rate("lr", lr)?,
            Schedule::PiecewisePolynomial {
                eta_init,
                eta_peak,
                eta_final,
                p_warmup,
                p_decay,
                t_warmup,
                total_steps,
            } => {
                for (n, v) in [
                    ("eta_init", eta_init),
                    ("eta_peak", eta_peak),
                    ("eta_final", eta_final),
                ] {
                    rate(n, v)?;
                }
                powers("p_warmup/p_decay", [p_warmup, p_decay])?;
                if t_warmup >= total_steps {
                    bail!(
                        "schedule.t_warmup: expected fewer warmup steps ({t_warmup}) than total_steps ({total_steps})"
                    );
                }
            }
            Schedule::MlperfPolynomial {
                base,
                end,
                warmup_steps,
                total_steps,
                power,
            } => {
                rate("base", base)?;
                rate("end", end)?;
                finite("power", power)?;
                if warmup_steps >= total_steps {
                    bail!(
                        "schedule.warmup_steps: expected fewer warmup steps ({warmup_steps}) than total_steps ({total_steps})"
                    );
                }
            }
            Schedule::Cosine {
                peak,
                warmup_steps,
                warmup_power,
                total_steps,
                eta_final,
            } => {
                rate("peak", peak)?;
                rate("eta_final", eta_final)?;
                if warmup_power <= 0.0 || !warmup_power.is_finite() {
                    bail!("schedule.warmup_power: expected a positive power, got {warmup_power}");
                }
                if warmup_steps >= total_steps {
                    bail!(
                        "schedule.warmup_steps: expected fewer warmup steps ({warmup_steps}) than total_steps ({total_steps})"
                    );
                }
            }
            Schedule::LinearDecay {
                eta0, decay_factor, ..
            } => {
                rate("eta0", eta0)?;
                rate("decay_factor", decay_factor)?;
            }
            Schedule::PolynomialWarmupDecay {
                eta_peak,
                decay_factor,
                t_warmup,
                p_warmup,
                t_decay,
                p_decay,
            } => {
                rate("eta_peak", eta_peak)?;
                rate("decay_factor", decay_factor)?;
                powers("p_warmup/p_decay", [p_warmup, p_decay])?;
                if t_warmup >= t_decay {
                    bail!(
                        "schedule.t_decay: expected a step ({t_decay}) after the warmup ({t_warmup})"
                    );
                }
            }
            Schedule::BertPolynomial {
                peak,
                warmup_steps,
                total_steps,
                power,
                warmup_power,
                end,
            } => {
                rate("peak", peak)?;
                rate("end", end)?;
                powers("power/warmup_power", [power, warmup_power])?;
                if total_steps == 0 || warmup_steps >= total_steps {
                    bail!(
                        "schedule.warmup_steps: expected fewer warmup steps ({warmup_steps}) than total_steps ({total_steps})"
                    );
                }
            }
        }
        Ok(())
    }

    /// Writes `step,lr` CSV lines for `t` in `0..steps`, with a header, to `out` row by row (any
    /// number of steps in constant memory; a closed pipe ends it with the error).
    pub fn write_csv(&self, steps: u64, out: &mut impl std::io::Write) -> std::io::Result<()> {
        writeln!(out, "step,lr")?;
        for t in 0..steps {
            writeln!(out, "{t},{}", self.lr(t))?;
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes `left` bytes, then answers like a closed pipe.
    struct ClosesAfter {
        left: usize,
    }

    impl std::io::Write for ClosesAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// `bigbatch schedule --steps 18446744073709551615 | head`: rows are streamed, so the write
    /// fails at the closed pipe after a few rows instead of building the whole CSV first.
    #[test]
    fn csv_streams_rows() {
        let s = Schedule::Constant { lr: 0.5 };
        let mut sink = ClosesAfter { left: 100 };
        let e = s.write_csv(u64::MAX, &mut sink).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
        let mut out = Vec::new();
        s.write_csv(3, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "step,lr\n0,0.5\n1,0.5\n2,0.5\n"
        );
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
    }

    /// The LARS schedule of the paper's Table 1 / section 2.1.4, values worked by hand.
    #[test]
    fn piecewise_polynomial_matches_paper_formula() {
        let s = Schedule::PiecewisePolynomial {
            eta_init: 0.0,
            eta_peak: 29.0,
            eta_final: 1e-4,
            p_warmup: 1.0,
            p_decay: 2.0,
            t_warmup: 706,
            total_steps: 2512,
        };
        close(s.lr(0), 0.0);
        close(s.lr(353), 14.5);
        close(s.lr(706), 29.0);
        // t = 1609: (2512-1609)/(2512-706) = 903/1806 = 0.5 -> 1e-4 + (29 - 1e-4) * 0.25
        close(s.lr(1609), 1e-4 + (29.0 - 1e-4) * 0.25);
        close(s.lr(2512), 1e-4);
        // Nesterov configuration B: p_warmup = 2, peak 7.05: at half warmup 7.05/4.
        let b = Schedule::PiecewisePolynomial {
            eta_init: 0.0,
            eta_peak: 7.05,
            eta_final: 6e-6,
            p_warmup: 2.0,
            p_decay: 2.0,
            t_warmup: 706,
            total_steps: 2512,
        };
        close(b.lr(353), 7.05 / 4.0);
    }

    #[test]
    fn mlperf_polynomial() {
        let s = Schedule::MlperfPolynomial {
            base: 10.0,
            end: 1e-4,
            warmup_steps: 10,
            total_steps: 109,
            power: 2.0,
        };
        close(s.lr(5), 5.0);
        close(s.lr(10), 10.0);
        // D = 100; t = 60: 1 - 50/100 = 0.5 -> end + (base-end)/4
        close(s.lr(60), 1e-4 + (10.0 - 1e-4) * 0.25);
        close(s.lr(500), 1e-4);
    }

    #[test]
    fn cosine_and_linear() {
        let c = Schedule::Cosine {
            peak: 2.0,
            warmup_steps: 10,
            warmup_power: 2.0,
            total_steps: 110,
            eta_final: 0.0,
        };
        close(c.lr(5), 0.5);
        close(c.lr(10), 2.0);
        close(c.lr(60), 1.0);
        close(c.lr(110), 0.0);
        let l = Schedule::LinearDecay {
            eta0: 1.0,
            decay_factor: 0.01,
            t_decay: 100,
        };
        close(l.lr(50), 1.0 - 0.99 * 0.5);
        close(l.lr(100), 0.01);
        close(l.lr(1000), 0.01);
    }

    /// Tables 13-20: 500 warmup steps, quadratic decay to t_decay, then constant.
    #[test]
    fn polynomial_warmup_decay() {
        let s = Schedule::PolynomialWarmupDecay {
            eta_peak: 4.118,
            decay_factor: 8.144e-5,
            t_warmup: 500,
            p_warmup: 1.0,
            t_decay: 2250,
            p_decay: 2.0,
        };
        let f = 4.118 * 8.144e-5;
        close(s.lr(250), 4.118 / 2.0);
        close(s.lr(500), 4.118);
        // (2250 - 1375) / 1750 = 0.5 -> f + (peak - f) / 4
        close(s.lr(1375), f + (4.118 - f) * 0.25);
        close(s.lr(2250), f);
        close(s.lr(2815), f);
        s.validate().unwrap();
    }

    /// google-research/bert optimization.py, worked by hand: peak 1e-3, W = 100, T = 1000,
    /// power 1: warmup 5e-4 at step 50, then the decay counted from step 0 jumps to
    /// 1e-3 (1 - 100/1000) = 9e-4 at step 100, and reaches 0 at T.
    #[test]
    fn bert_polynomial_has_the_reference_drop() {
        let s = Schedule::BertPolynomial {
            peak: 1e-3,
            warmup_steps: 100,
            total_steps: 1000,
            power: 1.0,
            warmup_power: 1.0,
            end: 0.0,
        };
        close(s.lr(50), 5e-4);
        close(s.lr(99), 1e-3 * 0.99);
        close(s.lr(100), 9e-4);
        close(s.lr(550), 4.5e-4);
        close(s.lr(1000), 0.0);
        close(s.lr(2000), 0.0);
        // p = 2 (Table 8, batch 65,536): warmup (t/W)^2 and decay (1 - t/T)^2.
        let q = Schedule::BertPolynomial {
            peak: 1.0,
            warmup_steps: 2000,
            total_steps: 7037,
            power: 2.0,
            warmup_power: 2.0,
            end: 0.0,
        };
        close(q.lr(1000), 0.25);
        close(q.lr(2000), (1.0 - 2000.0 / 7037.0f64).powi(2));
    }

    #[test]
    fn no_upper_bound_and_validation() {
        let s = Schedule::Constant { lr: 29.0 };
        assert_eq!(s.lr(3), 29.0);
        s.validate().unwrap();
        let bad = Schedule::Cosine {
            peak: 1.0,
            warmup_steps: 10,
            warmup_power: 1.0,
            total_steps: 5,
            eta_final: 0.0,
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("warmup_steps")
        );
    }
}

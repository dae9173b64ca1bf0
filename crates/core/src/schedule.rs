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
}

fn one() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}

impl Schedule {
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
        match *self {
            Schedule::Constant { lr } => finite("lr", lr)?,
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
                    ("p_warmup", p_warmup),
                    ("p_decay", p_decay),
                ] {
                    finite(n, v)?;
                }
                if p_warmup <= 0.0 || p_decay <= 0.0 {
                    bail!("schedule.p_warmup/p_decay: expected positive powers");
                }
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
                finite("base", base)?;
                finite("end", end)?;
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
                finite("peak", peak)?;
                finite("eta_final", eta_final)?;
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
                finite("eta0", eta0)?;
                finite("decay_factor", decay_factor)?;
            }
        }
        Ok(())
    }

    /// `step,lr` CSV lines for `t` in `0..steps`, with a header.
    pub fn to_csv(&self, steps: u64) -> String {
        let mut out = String::from("step,lr\n");
        for t in 0..steps {
            out.push_str(&format!("{t},{}\n", self.lr(t)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

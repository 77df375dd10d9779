//! The statistics of a randomised holdout, with no I/O: score intervals for two
//! proportions (Newcombe's hybrid score for the difference, the log-adjusted ratio for
//! relative lift) widened by the variance of the differential-privacy noise on the
//! counts, and the pre-campaign sample-size / minimum-detectable-effect calculator
//! (Cohen's h). Checked against the golden vectors in REFERENCE.md (statsmodels).

use serde::Serialize;

use crate::{Error, Result};

/// The standard normal quantile function (Wichura 1988, algorithm AS 241, PPND16;
/// about 16 significant digits) for `p` in (0, 1). The coefficients are written as
/// published.
#[allow(clippy::excessive_precision)]
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 8] = [
        3.387_132_872_796_366_5,
        133.141_667_891_784_38,
        1_971.590_950_306_551_3,
        13_731.693_765_509_461,
        45_921.953_931_549_87,
        67_265.770_927_008_7,
        33_430.575_583_588_13,
        2_509.080_928_730_122_7,
    ];
    const B: [f64; 8] = [
        1.0,
        42.313_330_701_600_91,
        687.187_007_492_057_9,
        5_394.196_021_424_751,
        21_213.794_301_586_597,
        39_307.895_800_092_71,
        28_729.085_735_721_943,
        5_226.495_278_852_545,
    ];
    const C: [f64; 8] = [
        1.423_437_110_749_683_5,
        4.630_337_846_156_546,
        5.769_497_221_460_691,
        3.647_848_324_763_204_5,
        1.270_458_252_452_368_4,
        0.241_780_725_177_450_6,
        0.022_723_844_989_269_184,
        0.000_774_545_014_278_341_4,
    ];
    const D: [f64; 8] = [
        1.0,
        2.053_191_626_637_759,
        1.676_384_830_183_803_8,
        0.689_767_334_985_1,
        0.148_103_976_427_480_08,
        0.015_198_666_563_616_457,
        0.000_547_593_808_499_534_5,
        1.050_750_071_644_416_9e-9,
    ];
    const E: [f64; 8] = [
        6.657_904_643_501_103,
        5.463_784_911_164_114,
        1.784_826_539_917_291_3,
        0.296_560_571_828_504_9,
        0.026_532_189_526_576_124,
        0.001_242_660_947_388_078_4,
        0.000_027_115_555_687_434_876,
        2.010_334_399_292_288_1e-7,
    ];
    const F: [f64; 8] = [
        1.0,
        0.599_832_206_555_888,
        0.136_929_880_922_735_8,
        0.014_875_361_290_850_615,
        0.000_786_869_131_145_613_3,
        0.000_018_463_183_175_100_548,
        1.421_511_758_316_446e-7,
        2.044_263_103_389_939_8e-15,
    ];
    fn poly(c: &[f64; 8], x: f64) -> f64 {
        c.iter().rev().fold(0.0, |acc, &k| acc * x + k)
    }
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180_625 - q * q;
        return q * poly(&A, r) / poly(&B, r);
    }
    let r = if q < 0.0 { p } else { 1.0 - p };
    let r = (-r.ln()).sqrt();
    let x = if r <= 5.0 {
        let r = r - 1.6;
        poly(&C, r) / poly(&D, r)
    } else {
        let r = r - 5.0;
        poly(&E, r) / poly(&F, r)
    };
    if q < 0.0 { -x } else { x }
}

/// `z` of a two-sided interval of confidence `level` (0.95 → 1.959964).
pub fn z_two_sided(level: f64) -> f64 {
    normal_quantile(1.0 - (1.0 - level) / 2.0)
}

/// Successes out of trials, as released: possibly with discrete Laplace noise on
/// either count (its scale; 0 for exact counts).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Proportion {
    /// Successes (conversions).
    pub successes: f64,
    /// Trials (people in the group).
    pub trials: f64,
    /// Scale `b` of the discrete Laplace noise on `successes` (variance ≈ 2b²).
    pub successes_noise: f64,
    /// Scale of the noise on `trials`.
    pub trials_noise: f64,
}

impl Proportion {
    /// Exact counts.
    pub fn exact(successes: u64, trials: u64) -> Self {
        Self {
            successes: successes as f64,
            trials: trials as f64,
            successes_noise: 0.0,
            trials_noise: 0.0,
        }
    }

    /// The rate; noisy counts are clamped to 0 ≤ successes ≤ trials first.
    pub fn rate(&self) -> f64 {
        let (x, n) = self.clamped();
        if n > 0.0 { x / n } else { f64::NAN }
    }

    fn clamped(&self) -> (f64, f64) {
        let n = self.trials.max(0.0);
        (self.successes.clamp(0.0, n), n)
    }

    /// Variance of the rate due to the noise alone (delta method on x/n):
    /// (2b_x² + p²·2b_n²) / n².
    pub fn noise_variance(&self) -> f64 {
        let (_, n) = self.clamped();
        if n <= 0.0 {
            return 0.0;
        }
        let p = self.rate();
        let vx = 2.0 * self.successes_noise * self.successes_noise;
        let vn = 2.0 * self.trials_noise * self.trials_noise;
        (vx + p * p * vn) / (n * n)
    }

    /// Wilson score interval of the rate at `z`, widened by the noise variance (the
    /// half-widths on either side of the rate are lengthened to
    /// √(w² + z²·var_noise)), clipped to [0, 1].
    pub fn wilson(&self, z: f64) -> (f64, f64) {
        let (x, n) = self.clamped();
        if n <= 0.0 {
            return (0.0, 1.0);
        }
        let p = x / n;
        let z2 = z * z;
        let denom = n + z2;
        let center = (x + z2 / 2.0) / denom;
        let half = z * (n * p * (1.0 - p) + z2 / 4.0).sqrt() / denom;
        let (lo, hi) = (center - half, center + half);
        let extra = z2 * self.noise_variance();
        let lo = p - ((p - lo).powi(2) + extra).sqrt();
        let hi = p + ((hi - p).powi(2) + extra).sqrt();
        (lo.max(0.0), hi.min(1.0))
    }
}

/// An estimate with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The point estimate.
    pub estimate: f64,
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// Newcombe's hybrid score interval (his method 10) for `test.rate − control.rate`,
/// from the two Wilson intervals (each widened by its noise variance).
pub fn newcombe_difference(test: &Proportion, control: &Proportion, z: f64) -> Interval {
    let (p1, p2) = (test.rate(), control.rate());
    let (l1, u1) = test.wilson(z);
    let (l2, u2) = control.wilson(z);
    let d = p1 - p2;
    Interval {
        estimate: d,
        low: d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
        high: d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
    }
}

/// The log-adjusted (Katz, with 0.5 added to every count, as statsmodels'
/// `log-adjusted`) interval for `test.rate / control.rate`; the noise adds
/// var_noise(p)/p² per group to the variance of the log. The estimate is the
/// unadjusted ratio.
pub fn log_ratio(test: &Proportion, control: &Proportion, z: f64) -> Interval {
    let (x1, n1) = test.clamped();
    let (x2, n2) = control.clamped();
    let (x1a, n1a, x2a, n2a) = (x1 + 0.5, n1 + 0.5, x2 + 0.5, n2 + 0.5);
    let ratio_adj = (x1a / n1a) / (x2a / n2a);
    let mut var = 1.0 / x1a - 1.0 / n1a + 1.0 / x2a - 1.0 / n2a;
    for (g, xa, na) in [(test, x1a, n1a), (control, x2a, n2a)] {
        let p = xa / na;
        var += g.noise_variance() / (p * p);
    }
    let se = var.max(0.0).sqrt();
    Interval {
        estimate: test.rate() / control.rate(),
        low: (ratio_adj.ln() - z * se).exp(),
        high: (ratio_adj.ln() + z * se).exp(),
    }
}

/// Cohen's h between two rates: 2·asin√p2 − 2·asin√p1.
pub fn cohens_h(p1: f64, p2: f64) -> f64 {
    2.0 * p2.sqrt().asin() - 2.0 * p1.sqrt().asin()
}

/// A planned test: what a campaign with a holdout needs to detect its effect.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SampleSize {
    /// People needed in the test group.
    pub test: u64,
    /// People needed in the control group.
    pub control: u64,
}

fn check_rate(name: &str, p: f64) -> Result<()> {
    if p > 0.0 && p < 1.0 {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "{name} is {p}; it must be between 0 and 1"
        )))
    }
}

/// People needed per group to detect a change of the conversion rate from `baseline`
/// to `target` with a two-sided test of level `alpha` and `power`, with
/// `control_share` of the people held out (0.5 for equal groups). Arcsine
/// transformation: Var(2·asin√p̂) ≈ 1/n, so n_total = ((z₁₋α/₂ + z_power)/h)² ·
/// (1/s_test + 1/s_control).
pub fn sample_size(
    baseline: f64,
    target: f64,
    alpha: f64,
    power: f64,
    control_share: f64,
) -> Result<SampleSize> {
    check_rate("the baseline rate", baseline)?;
    check_rate("the target rate", target)?;
    check_rate("alpha", alpha)?;
    check_rate("power", power)?;
    check_rate("the control share", control_share)?;
    let h = cohens_h(baseline, target).abs();
    if h == 0.0 {
        return Err(Error::Input(
            "the target rate equals the baseline: there is nothing to detect".into(),
        ));
    }
    let z = normal_quantile(1.0 - alpha / 2.0) + normal_quantile(power);
    let total = (z / h).powi(2) * (1.0 / (1.0 - control_share) + 1.0 / control_share);
    Ok(SampleSize {
        test: (total * (1.0 - control_share)).ceil() as u64,
        control: (total * control_share).ceil() as u64,
    })
}

/// The smallest conversion rate above `baseline` that groups of `test` and `control`
/// people detect with a two-sided test of level `alpha` and `power`.
pub fn minimum_detectable_rate(
    baseline: f64,
    test: u64,
    control: u64,
    alpha: f64,
    power: f64,
) -> Result<f64> {
    check_rate("the baseline rate", baseline)?;
    check_rate("alpha", alpha)?;
    check_rate("power", power)?;
    if test == 0 || control == 0 {
        return Err(Error::Input("both groups need people".into()));
    }
    let z = normal_quantile(1.0 - alpha / 2.0) + normal_quantile(power);
    let h = z * (1.0 / test as f64 + 1.0 / control as f64).sqrt();
    let phi = baseline.sqrt().asin() + h / 2.0;
    if phi >= std::f64::consts::FRAC_PI_2 {
        return Ok(1.0);
    }
    Ok(phi.sin().powi(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn normal_quantiles() {
        assert!(close(normal_quantile(0.975), 1.959_963_984_540_054, 1e-12));
        assert!(close(normal_quantile(0.8), 0.841_621_233_572_914_3, 1e-12));
        assert!(close(normal_quantile(0.5), 0.0, 1e-15));
        assert!(close(normal_quantile(1e-10), -6.361_340_902_404_056, 1e-9));
        assert!(normal_quantile(0.0).is_nan());
    }

    /// REFERENCE.md's golden vector (statsmodels 0.15): 56/70 vs 48/80.
    #[test]
    fn golden_vector_newcombe_and_log_ratio() {
        let z = z_two_sided(0.95);
        let (t, c) = (Proportion::exact(56, 70), Proportion::exact(48, 80));
        let d = newcombe_difference(&t, &c, z);
        assert!(close(d.estimate, 0.2, 1e-12));
        assert!(close(d.low, 0.0524, 5e-5), "{d:?}");
        assert!(close(d.high, 0.3339, 5e-5), "{d:?}");
        let r = log_ratio(&t, &c, z);
        assert!(close(r.estimate, 4.0 / 3.0, 1e-12));
        assert!(close(r.low, 1.0760, 5e-5), "{r:?}");
        assert!(close(r.high, 1.6445, 5e-5), "{r:?}");
    }

    #[test]
    fn noise_widens_both_intervals() {
        let z = z_two_sided(0.95);
        let (t, c) = (Proportion::exact(560, 7000), Proportion::exact(480, 8000));
        let noisy = |p: Proportion| Proportion {
            successes_noise: 20.0,
            trials_noise: 20.0,
            ..p
        };
        let (a, b) = (newcombe_difference(&t, &c, z), log_ratio(&t, &c, z));
        let (an, bn) = (
            newcombe_difference(&noisy(t), &noisy(c), z),
            log_ratio(&noisy(t), &noisy(c), z),
        );
        assert!(an.low < a.low && an.high > a.high);
        assert!(bn.low < b.low && bn.high > b.high);
        assert_eq!(a.estimate, an.estimate);
    }

    /// REFERENCE.md: 1.0% → 1.1% at α 0.05, power 0.8 needs ≈ 163,000 per arm.
    #[test]
    fn sample_size_reference() {
        let n = sample_size(0.010, 0.011, 0.05, 0.8, 0.5).unwrap();
        assert_eq!(n.test, n.control);
        assert!((162_000..=164_000).contains(&n.test), "{n:?}");
        // The MDE of that design is the 1.1% we asked for.
        let p = minimum_detectable_rate(0.010, n.test, n.control, 0.05, 0.8).unwrap();
        assert!(close(p, 0.011, 1e-6), "{p}");
        // Holding out 10% needs more people in all.
        let m = sample_size(0.010, 0.011, 0.05, 0.8, 0.1).unwrap();
        assert!(m.test + m.control > n.test + n.control);
        assert!(sample_size(0.01, 0.01, 0.05, 0.8, 0.5).is_err());
        assert!(sample_size(0.0, 0.01, 0.05, 0.8, 0.5).is_err());
    }
}
